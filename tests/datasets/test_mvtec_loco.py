"""MVTec LOCO on a miniature tree written from the dataset's published layout: the
structural/logical split, per-region masks with their saturations, detection by
`adbench data check`, and AUsPRO on a scored test set."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from dsbuild import mask, png

from iadbench.cli import main
from iadbench.cli.data import reader_of
from iadbench.errors import DatasetError
from iadbench.model.evaluate import evaluate
from iadbench.plugins import get_registry
from iadbench.types import Prediction
from iadbench_mvtec_loco.plugin import MVTecLOCO

CONFIG = [
    {"defect_name": "missing_banana", "pixel_value": 255, "saturation_threshold": 0.5, "relative_saturation": True},
    {"defect_name": "extra_nut", "pixel_value": 254, "saturation_threshold": 10, "relative_saturation": False},
]


def make_loco(root, categories=("breakfast_box",), n_train=3, n_val=2, n_good=2, n_structural=1, n_logical=2):
    """Defect images are bright inside their regions; logical image 0 has two regions."""
    for cat in categories:
        c = root / cat
        (c).mkdir(parents=True, exist_ok=True)
        (c / "defects_config.json").write_text(json.dumps(CONFIG))
        for i in range(n_train):
            png(c / "train" / "good" / f"{i:03d}.png", value=100 + i)
        for i in range(n_val):
            png(c / "validation" / "good" / f"{i:03d}.png", value=110 + i)
        for i in range(n_good):
            png(c / "test" / "good" / f"{i:03d}.png", value=120 + i)
        for kind, n in (("structural_anomalies", n_structural), ("logical_anomalies", n_logical)):
            for i in range(n):
                png(c / "test" / kind / f"{i:03d}.png", value=200)
                mask(c / "ground_truth" / kind / f"{i:03d}" / "000.png", box=(0, 0, 8, 8), value=255)
                if kind == "logical_anomalies" and i == 0:
                    mask(c / "ground_truth" / kind / f"{i:03d}" / "001.png", box=(16, 8, 24, 16), value=254)
    return root


def test_layout_keeps_structural_and_logical_apart(tmp_path):
    root = make_loco(tmp_path / "mvtec_loco", categories=("breakfast_box", "pushpins"))
    ds = MVTecLOCO(root)
    assert ds.categories() == ["breakfast_box", "pushpins"]
    split = ds.split("breakfast_box")
    assert len(split.train) == 3 and split.notes["validation_good"] == 2
    kinds = [s.defect_type for s in split.test]
    assert kinds == ["good", "good", "structural_anomalies", "logical_anomalies", "logical_anomalies"]
    first_logical = split.test[3]
    assert [r.path.name for r in first_logical.regions] == ["000.png", "001.png"]
    assert first_logical.mask_path == first_logical.regions[0].path
    assert first_logical.regions[1].saturations == ((255, 0.5, True), (254, 10.0, False))
    assert split.has_masks
    for anomalies, kind in (("structural", "structural_anomalies"), ("logical", "logical_anomalies")):
        only = MVTecLOCO(root, anomalies=anomalies).split("breakfast_box")
        assert {s.defect_type for s in only.test if s.label} == {kind}
        assert sum(s.label == 0 for s in only.test) == 2  # good test images in every run
    assert len(MVTecLOCO(root, train_on_validation=True).split("breakfast_box").train) == 5


def test_bad_parameters_configs_and_trees_are_one_line_errors(tmp_path):
    root = make_loco(tmp_path / "loco")
    cat = root / "breakfast_box"
    with pytest.raises(DatasetError, match="anomalies 'semantic' is not one of both, structural, logical"):
        MVTecLOCO(root, anomalies="semantic")
    (cat / "ground_truth" / "structural_anomalies" / "000" / "000.png").unlink()
    (cat / "ground_truth" / "structural_anomalies" / "000").rmdir()
    with pytest.raises(DatasetError, match="defect image without its masks"):
        MVTecLOCO(root).split("breakfast_box")
    assert MVTecLOCO(root, anomalies="logical").split("breakfast_box")  # the other kind still loads
    bad = [{**CONFIG[0]}, {**CONFIG[1], "pixel_value": 255}]
    (cat / "defects_config.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match="share pixel_value 255"):
        MVTecLOCO(root, anomalies="logical").split("breakfast_box")
    (cat / "defects_config.json").write_text(json.dumps([{"defect_name": "x", "pixel_value": 1}]))
    with pytest.raises(DatasetError, match="lacks saturation_threshold, relative_saturation"):
        MVTecLOCO(root, anomalies="logical").split("breakfast_box")


def test_data_check_reads_a_loco_tree_with_its_plugin_only(tmp_path, capsys, isolated_env):
    root = make_loco(tmp_path / "mvtec_loco")
    datasets = get_registry().datasets
    for path in (root, root / "breakfast_box"):
        claims = {n for n, s in datasets.items() if s.detect is not None and s.detect(path)}
        assert claims == {"mvtec_loco"}  # masks in per-image folders: not MVTec-like
        assert reader_of(path, datasets).name == "mvtec_loco"
    main(["data", "check", str(root)])
    out = " ".join(capsys.readouterr().out.split())
    assert "ok: mvtec_loco: 1 category, 3 train, 5 test (3 defective, 3 masks)" in out


def only(*names):
    """Some registered metrics: the test skips the others' bootstrap intervals (seconds)."""
    metrics = get_registry().metrics
    return {name: metrics[name] for name in names}


class BrightnessModel:
    """A fitted-model double: the map is the image's brightness, the score its maximum."""

    input_size = (24, 32)  # the native size: regions keep their pixel counts
    threshold = 0.5
    threshold_rule = "fpr:0.05"
    threshold_note = None
    calibration_scores = np.linspace(0.0, 0.4, 20)
    pixel_threshold = 0.6

    def score(self, images):
        maps = images.astype(np.float32).mean(axis=3) / 255.0
        return Prediction(maps.reshape(len(maps), -1).max(axis=1), maps)


def test_auspro_of_a_scored_test_set(tmp_path):
    split = MVTecLOCO(make_loco(tmp_path / "loco")).split("breakfast_box")
    ev = evaluate(BrightnessModel(), split, metrics=only("auspro", "aupro"))
    regions = ev.data.regions
    assert [(r.image, r.pixels.size) for r in regions] == [(2, 64), (3, 64), (3, 64), (4, 64)]
    # 0.5 relative; 10 pixels of 64 absolute
    assert [r.saturation for r in regions] == pytest.approx([0.5, 0.5, 10 / 64, 0.5])
    assert ev.masks[3].sum() == 128  # the union of the two regions
    # defect images are brighter than every good one: each region found in full before a false alarm
    assert ev.metrics["auspro"] == pytest.approx(1.0)
    assert not math.isnan(ev.metrics["aupro"])


def test_auspro_is_undefined_on_datasets_without_regions(tmp_path):
    from dsbuild import make_mvtec_category

    from iadbench.layouts import parse_mvtec

    split = parse_mvtec(make_mvtec_category(tmp_path / "bottle"), dataset="mvtec", category="bottle")
    ev = evaluate(BrightnessModel(), split, metrics=only("auspro"))
    assert math.isnan(ev.metrics["auspro"])
    assert "per-region ground truth" in ev.metric_notes["auspro"]
    assert ev.data.regions is None
