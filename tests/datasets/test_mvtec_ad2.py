"""MVTec AD 2 on a miniature tree written from the dataset's published layout: the
public and private test sets, validation images, detection by `adbench data check`,
a private set scored with every metric undefined, and the submission folder."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dsbuild import mask, png
from PIL import Image

from iadbench.cli import main
from iadbench.cli.data import reader_of
from iadbench.errors import DatasetError
from iadbench.model.evaluate import evaluate
from iadbench.plugins import get_registry
from iadbench.types import Prediction
from iadbench.visual.png import write_map_png
from iadbench_mvtec_ad2.plugin import MVTecAD2


def make_ad2(root, categories=("can",), n_train=3, n_val=2, n_good=2, n_bad=2, n_private=3):
    for cat in categories:
        c = root / cat
        for i in range(n_train):
            png(c / "train" / "good" / f"{i:03d}_regular.png", value=100 + i)
        for i in range(n_val):
            png(c / "validation" / "good" / f"{i:03d}_regular.png", value=110 + i)
        for i in range(n_good):
            png(c / "test_public" / "good" / f"{i:03d}_regular.png", value=120 + i)
        for i in range(n_bad):
            png(c / "test_public" / "bad" / f"{i:03d}_regular.png", value=200)
            mask(c / "test_public" / "ground_truth" / "bad" / f"{i:03d}_regular_mask.png")
        for i in range(n_private):
            png(c / "test_private" / f"{i:03d}.png", value=130 + i)
            png(c / "test_private_mixed" / f"{i:03d}.png", value=140 + i)
    return root


def test_public_test_set_has_labels_masks_and_leaves_validation_out(tmp_path):
    root = make_ad2(tmp_path / "mvtec_ad2", categories=("can", "walnuts"))
    ds = MVTecAD2(root)
    assert ds.categories() == ["can", "walnuts"]
    split = ds.split("can")
    assert len(split.train) == 3
    assert [s.label for s in split.test] == [0, 0, 1, 1]
    assert {s.defect_type for s in split.test if s.label} == {"bad"}
    assert all(s.mask_path.name == f"{s.path.stem}_mask.png" for s in split.test if s.label)
    assert split.has_masks
    assert split.notes["validation_good"] == 2 and split.notes["validation"] == "held out, not used"
    assert "unlabelled_test" not in split.notes
    both = MVTecAD2(root, train_on_validation="true").split("can")
    assert len(both.train) == 5 and any("validation" in str(s.path) for s in both.train)
    assert MVTecAD2(root / "can").categories() == ["can"]  # one category folder works too


@pytest.mark.parametrize("test_set", ["test_private", "test_private_mixed"])
def test_private_test_sets_are_unlabelled(tmp_path, test_set):
    split = MVTecAD2(make_ad2(tmp_path / "ad2"), test_set=test_set).split("can")
    assert len(split.test) == 3
    assert {s.label for s in split.test} == {0} and {s.defect_type for s in split.test} == {"unlabelled"}
    assert all(test_set in str(s.path) for s in split.test)
    assert not split.has_masks
    assert test_set in split.notes["unlabelled_test"]


def test_bad_parameters_and_trees_are_one_line_errors(tmp_path):
    root = make_ad2(tmp_path / "ad2")
    with pytest.raises(DatasetError, match="test_set 'test_secret' is not one of"):
        MVTecAD2(root, test_set="test_secret")
    with pytest.raises(DatasetError, match="train_on_validation must be true or false, got 'maybe'"):
        MVTecAD2(root, train_on_validation="maybe")
    (root / "can" / "test_public" / "ground_truth" / "bad" / "001_regular_mask.png").unlink()
    with pytest.raises(DatasetError, match="defect image without its mask"):
        MVTecAD2(root).split("can")
    with pytest.raises(DatasetError, match="no MVTec AD 2 category"):
        MVTecAD2(tmp_path / "ad2" / "can" / "train")


def test_data_check_reads_an_ad2_tree_with_its_plugin_only(tmp_path, capsys, isolated_env):
    root = make_ad2(tmp_path / "mvtec_ad2")
    datasets = get_registry().datasets
    for path in (root, root / "can"):
        claims = {n for n, s in datasets.items() if s.detect is not None and s.detect(path)}
        assert claims == {"mvtec_ad2"}  # no test/ folder: not MVTec-like
        assert reader_of(path, datasets).name == "mvtec_ad2"
    main(["data", "check", str(root)])  # returns on success
    out = " ".join(capsys.readouterr().out.split())
    assert "ok: mvtec_ad2: 1 category, 3 train, 4 test (2 defective, 2 masks)" in out


class BrightnessModel:
    """A fitted-model double: the map is the image's brightness, the score its maximum."""

    input_size = (12, 16)
    threshold = 0.5
    threshold_rule = "fpr:0.05"
    threshold_note = None
    calibration_scores = np.linspace(0.0, 0.4, 20)
    pixel_threshold = 0.6

    def score(self, images):
        maps = images.astype(np.float32).mean(axis=3) / 255.0
        return Prediction(maps.reshape(len(maps), -1).max(axis=1), maps)


def test_a_private_test_set_is_scored_with_every_metric_undefined(tmp_path):
    split = MVTecAD2(make_ad2(tmp_path / "ad2"), test_set="test_private").split("can")
    ev = evaluate(BrightnessModel(), split)
    assert len(ev.prediction.scores) == 3 and np.isfinite(ev.prediction.scores).all()
    assert ev.metrics and all(math.isnan(v) for v in ev.metrics.values())
    assert all(note.startswith("no test labels: MVTec AD 2 test_private") for note in ev.metric_notes.values())
    assert ev.verdicts["fpr"]["n"] == 0 and ev.verdicts["recall"]["n"] == 0


def test_the_public_test_set_gets_seg_f1_at_the_models_pixel_threshold(tmp_path):
    split = MVTecAD2(make_ad2(tmp_path / "ad2")).split("can")
    ev = evaluate(BrightnessModel(), split, metrics={"seg_f1": get_registry().metrics["seg_f1"]})
    # bad images are brightness 200/255 = 0.78 everywhere (> 0.6), good ones under 0.6:
    # every pixel of a bad image is flagged, its mask covers 64 of 32x24 pixels (12x16 here)
    flagged = ev.masks[2:].size
    truth = int(ev.masks.sum())
    assert ev.metrics["seg_f1"] == pytest.approx(2 * truth / (2 * truth + (flagged - truth)))
    assert ev.data.pixel_threshold == 0.6


def test_submission_folder_from_predict_maps(tmp_path, capsys):
    maps_dir = tmp_path / "maps"
    rng = np.random.default_rng(0)
    maps = {f"{i:03d}": rng.random((6, 8)).astype(np.float32) for i in range(2)}
    for stem, amap in maps.items():
        maps_dir.mkdir(exist_ok=True)
        write_map_png(maps_dir / f"{stem}_map.png", amap)
    out = tmp_path / "submission"
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text('{"pixel_threshold": 0.5, "threshold": 0.9}')  # the model folder's field
    main(["data", "ad2-submission", str(maps_dir), "--out", str(out), "-c", "can", "--model", str(model)])
    for stem, amap in maps.items():
        tiff = np.asarray(Image.open(out / "anomaly_images" / "can" / "test_private" / f"{stem}.tiff"))
        assert tiff.dtype == np.float32
        np.testing.assert_allclose(tiff, amap, atol=1.0 / 65535 + 1e-6)  # 16-bit levels in between
        binary = np.asarray(Image.open(out / "anomaly_images_thresholded" / "can" / "test_private" / f"{stem}.png"))
        assert set(np.unique(binary)) <= {0, 255}
        np.testing.assert_array_equal(binary == 255, tiff > 0.5)
    main(["data", "ad2-submission", str(maps_dir), "--out", str(tmp_path / "s2"), "-c", "can", "--pixel-threshold", "2"])
    assert not np.asarray(Image.open(tmp_path / "s2" / "anomaly_images_thresholded" / "can" / "test_private" / "000.png")).any()
    with pytest.raises(SystemExit) as exc:
        main(["data", "ad2-submission", str(maps_dir), "--out", str(out), "-c", "can"])
    assert exc.value.code == 2
    assert "exactly one of --model and --pixel-threshold" in capsys.readouterr().err
