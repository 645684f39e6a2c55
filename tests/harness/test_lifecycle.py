"""A model's life through iadbench.model: a fit and a run cell give the same model, an
opened model evaluates to the cell's scores, open_model's refusals, the one image
preparation path, and predict's litter rule."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from iadbench.errors import InputError
from iadbench.images import decode_image, decode_image_bytes, load_image, prepare_image
from iadbench.model import evaluate, open_model
from testkit import cli

SIZE = 40  # on disk; the detector works at 32


@pytest.fixture(scope="module")
def category(tmp_path_factory) -> Path:
    """parts/widget: 10 good training images, 2 good and 2 'spot' test images with masks."""
    root = tmp_path_factory.mktemp("data") / "parts" / "widget"
    rng = np.random.default_rng(1)

    def save(path: Path, array: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)

    def good() -> np.ndarray:
        return np.clip(rng.normal(100, 6, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)

    for i in range(10):
        save(root / "train" / "good" / f"{i:03d}.png", good())
    for i in range(2):
        save(root / "test" / "good" / f"{i:03d}.png", good())
        img, mask = good(), np.zeros((SIZE, SIZE), np.uint8)
        mask[10:22, 12:26] = 255
        img[mask > 0] = 240
        save(root / "test" / "spot" / f"{i:03d}.png", img)
        save(root / "ground_truth" / "spot" / f"{i:03d}_mask.png", mask)
    return root


GRID = ["pixel_gaussian", "--dataset", "folder", "--category", "widget", "--set", "pixel_gaussian.input_size=32",
        "--threshold", "max", "--seed", "3"]


@pytest.fixture(scope="module")
def cell_model(category, tmp_path_factory) -> Path:
    """The model folder a run cell writes for GRID."""
    run_dir = tmp_path_factory.mktemp("run") / "r"
    cli("run", "-d", *GRID, "--dataset-path", f"folder={category.parent}", "--workers", "1", "--run-dir", str(run_dir))
    (model,) = run_dir.glob("cells/*/model")
    return model


def test_a_fit_and_a_run_cell_give_the_same_model(category, cell_model, tmp_path):
    out = tmp_path / "fitted"
    assert cli("fit", *GRID, "--dataset-path", f"folder={category.parent}", "--out", str(out), "--threads", "1") == 0
    fit_json, cell_json = (json.loads((d / "model.json").read_text()) for d in (out, cell_model))
    # the cell key names the cell's folder; the fit records the same key
    assert fit_json["info"]["cell_key"] == cell_json["info"]["cell_key"] == cell_model.parent.name
    for field in ("threshold", "threshold_rule", "pixel_threshold", "display_range", "calibration", "input_size"):
        assert fit_json[field] == cell_json[field], field
    fit_tensors, cell_tensors = load_file(out / "model.safetensors"), load_file(cell_model / "model.safetensors")
    assert fit_tensors.keys() == cell_tensors.keys() and fit_tensors
    for name in fit_tensors:
        np.testing.assert_array_equal(fit_tensors[name], cell_tensors[name])


def test_an_opened_model_evaluates_to_the_cells_scores(category, cell_model):
    import csv

    from iadbench.datasets import resolve_dataset
    from iadbench.plugins import get_registry

    with (cell_model.parent / "scores.csv").open(newline="") as f:
        recorded = {row["path"]: float(row["score"]) for row in csv.DictReader(f)}
    split = resolve_dataset(get_registry(), "folder", path=category.parent).split("widget")
    model = open_model(cell_model, "eager")
    ev = evaluate(model, split, predict_batch=3)
    assert [recorded[str(t.path)] for t in split.test] == pytest.approx(ev.prediction.scores.tolist(), rel=1e-6)
    assert ev.images.shape == (4, 32, 32, 3) and ev.masks is not None and ev.labels.tolist().count(1) == 2
    assert ev.metrics["image_auroc"] == 1.0  # bright spots on grey noise are easy
    assert ev.verdicts and "image_auroc" in ev.intervals


def test_open_model_refuses_other_devices_and_runtimes(cell_model):
    with pytest.raises(InputError, match="'tpu' is not a device") as err:
        open_model(cell_model, device="tpu")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="runtime must be one of"):
        open_model(cell_model, runtime="tensorrt")
    model = open_model(cell_model, "auto", device="CPU")
    assert model.runtime_name == "eager"  # pixel_gaussian has no export graph
    (result,) = model.predict([np.full((50, 70), 100, np.uint8)])  # any size, greyscale
    assert result.map.shape == (50, 70) and result.map_input.shape == (32, 32)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16"])
def test_one_preparation_path_equals_pil_bilinear(mode, tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)
    path = tmp_path / f"x_{mode.replace(';', '')}.png"
    if mode == "I;16":
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(path)
        ref_img = Image.fromarray(rgb[..., 0], mode="L").convert("RGB")
    else:
        Image.fromarray(rgb).convert(mode).save(path)
        ref_img = Image.open(path).convert("RGBA" if mode == "P" else mode).convert("RGB")
    # the reference: PIL's own bilinear resize of the decoded RGB picture
    reference = np.asarray(ref_img.resize((24, 20), Image.BILINEAR))
    np.testing.assert_array_equal(load_image(path, (20, 24)), reference)
    np.testing.assert_array_equal(prepare_image(decode_image(path), (20, 24)), reference)
    np.testing.assert_array_equal(prepare_image(decode_image_bytes(path.read_bytes(), "x"), (20, 24)), reference)


def test_decoding_bytes_follows_the_file_rules(tmp_path):
    from iadbench.errors import ImageError
    from iadbench.images import ImageTooLarge, NotAnImage

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    with pytest.raises(NotAnImage, match="up.png: not an image"):
        decode_image_bytes(b"plain text", "up.png")
    with pytest.raises(ImageError, match="truncated image"):
        decode_image_bytes(buf.getvalue()[: len(buf.getvalue()) // 2], "up.png")
    with pytest.raises(ImageError, match="empty upload"):
        decode_image_bytes(b"", "up.png")
    from iadbench.deploy.uploads import bomb_header

    with pytest.raises(ImageTooLarge, match="up.png: .*decompression bomb"):
        decode_image_bytes(bomb_header(), "up.png")


def test_predict_walk_skips_the_layouts_litter(tmp_path):
    from iadbench.cli.predict import find_images

    pic = np.zeros((4, 4, 3), np.uint8)
    for rel in ["a.png", "sub/b.jpg", "__MACOSX/c.png", ".hidden/d.png", "sub/.e.png", "@eaDir/f.png", "notes.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".txt"):
            (tmp_path / rel).write_text("x")
        else:
            Image.fromarray(pic).save(tmp_path / rel)
    assert [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)] == ["a.png", "sub/b.jpg"]
