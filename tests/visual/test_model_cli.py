"""The model folder, `adbench fit` and `adbench predict`, on a tiny synthetic
MVTec-like category and the cheap pixel_gaussian detector (32 px)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from iadbench.errors import InputError
from iadbench.model import load_model, predict_images
from iadbench.visual import OUTLINE_RGB
from testkit import cli

SIZE = 48  # images on disk; the detector works at 32




def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def category(tmp_path_factory) -> Path:
    """parts/widget: 12 good training images, 3 good and 3 'spot' test images with masks."""
    root = tmp_path_factory.mktemp("data") / "parts" / "widget"
    rng = np.random.default_rng(0)

    def good() -> np.ndarray:
        return np.clip(rng.normal(100, 4, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)

    for i in range(12):
        _save(root / "train" / "good" / f"{i:03d}.png", good())
    for i in range(3):
        _save(root / "test" / "good" / f"{i:03d}.png", good())
        img, mask = good(), np.zeros((SIZE, SIZE), np.uint8)
        mask[14:30, 16:34] = 255
        img[mask > 0] = 250
        _save(root / "test" / "spot" / f"{i:03d}.png", img)
        _save(root / "ground_truth" / "spot" / f"{i:03d}_mask.png", mask)
    return root


@pytest.fixture(scope="module")
def model_dir(category, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "m"
    rc = cli("fit", "pixel_gaussian", "--dataset", "folder", "--dataset-path", f"folder={category.parent}",
             "--category", "widget", "--set", "pixel_gaussian.input_size=32", "--threshold", "max",
             "--calibration", "holdout", "--out", str(out), "--threads", "1")
    assert rc == 0
    return out


def test_fit_writes_a_model_folder_whose_threshold_comes_from_held_out_images(model_dir, category):
    model = load_model(model_dir)
    assert model.input_size == (32, 32) and model.threshold_rule == "max"
    assert model.info["holdout_images"] == 1 and model.info["train_images"] == 11  # 10% of 12, rounded
    assert model.display_range[0] < model.display_range[1]
    # with rule `max` over the one held-out image, that image's score is the threshold:
    # exactly one training image scores it
    train = sorted((category / "train" / "good").glob("*.png"))
    scores = [r.score for r in predict_images(model, [np.asarray(Image.open(p)) for p in train])]
    assert sum(np.isclose(s, model.threshold, rtol=1e-6) for s in scores) == 1


def test_predict_images_any_size_and_mode(model_dir):
    model = load_model(model_dir)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (50, 70, 3)).astype(np.uint8)
    gray = rgb[..., 0]
    results = predict_images(model, [rgb, gray])
    assert results[0].map.shape == (50, 70) and results[1].map.shape == (50, 70)
    assert results[0].map_input.shape == (32, 32)
    # the detector on a PIL-resized copy gives the same score
    resized = np.array(Image.fromarray(rgb).resize((32, 32), Image.BILINEAR))
    assert np.isclose(results[0].score, model.detector.predict(resized[None]).scores[0])


def test_predict_folder_with_a_corrupt_file(model_dir, category, tmp_path, capsys):
    folder = tmp_path / "in"
    shutil.copytree(category / "test", folder)
    (folder / "spot" / "broken.png").write_bytes(b"not a png")
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "notes.txt").write_text("skip me")
    out = tmp_path / "out"
    assert cli("predict", str(model_dir), str(folder), "--format", "json", "--out", str(out)) == 1
    captured = capsys.readouterr()
    lines = [json.loads(x) for x in captured.out.splitlines() if x.startswith("{")]
    assert len(lines) == 6  # the six real images, the corrupt one named on stderr
    assert "broken.png" in captured.err and "not an image" in captured.err
    verdicts = {Path(r["file"]).parent.name: set() for r in lines}
    for r in lines:
        verdicts[Path(r["file"]).parent.name].add(r["verdict"])
    assert verdicts["spot"] == {"defective"}
    # the spot overlay outlines a region around the ground truth (pixel_gaussian's
    # blurred squared z-scores spread past the spot, so the region is larger)
    overlay_png = out / "spot" / "000_overlay.png"
    pic = np.asarray(Image.open(overlay_png))
    assert pic.shape == (SIZE, SIZE, 3)
    region = ndimage.binary_fill_holes((pic == OUTLINE_RGB).all(axis=2))
    truth = np.asarray(Image.open(category / "ground_truth" / "spot" / "000_mask.png")) > 0
    assert (region & truth).sum() / truth.sum() > 0.9
    centre = np.array(ndimage.center_of_mass(region)) - np.array(ndimage.center_of_mass(truth))
    assert np.abs(centre).max() < 4
    assert (out / "good" / "000_map.png").is_file()


@pytest.mark.parametrize("damage", ["missing", "corrupt", "unknown"])
def test_damaged_model_folder_is_one_line_naming_it(model_dir, tmp_path, damage, capsys):
    broken = tmp_path / f"model_{damage}"
    shutil.copytree(model_dir, broken)
    if damage == "missing":
        (broken / "model.json").unlink()
    elif damage == "corrupt":
        (broken / "model.safetensors").write_bytes(b"\x10\x00garbage")
    else:
        config = json.loads((broken / "config.json").read_text())
        config["detector"] = "no_such_detector"
        (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=str(broken)):
        load_model(broken)
    assert cli("predict", str(broken), str(model_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(broken) in err.replace("\n", "")
