"""`adbench threshold`: re-deciding a fitted model's threshold from the calibration
scores its folder keeps, without refitting."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iadbench.model import load_model, predict_images
from testkit import cli

from .test_model_cli import category  # noqa: F401 - the same tiny category


@pytest.fixture(scope="module")
def fitted(category, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("models") / "m"
    rc = cli("fit", "pixel_gaussian", "--dataset", "folder", "--dataset-path", f"folder={category.parent}",
             "--category", "widget", "--set", "pixel_gaussian.input_size=32", "--threshold", "max",
             "--out", str(out), "--threads", "1")
    assert rc == 0
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fit_keeps_leave_one_out_calibration_scores(fitted):
    model = load_model(fitted)
    cal = model.calibration
    assert cal["method"] == "leave-one-out" and cal["images"] == 12 and len(cal["scores"]) == 12
    assert model.info["train_images"] == 12 and model.info["holdout_images"] == 0  # fit saw every good image
    assert model.threshold == pytest.approx(max(cal["scores"]))  # rule max over the calibration scores


def test_threshold_changes_verdicts_and_nothing_else(fitted, category, tmp_path, capsys):  # noqa: F811
    folder = tmp_path / "m"
    shutil.copytree(fitted, folder)
    images = [np.asarray(Image.open(p)) for p in sorted((category / "test").rglob("*.png"))]
    before = predict_images(load_model(folder), images)
    weights = _digest(folder / "model.safetensors"), _digest(folder / "config.json")

    assert cli("threshold", str(folder), "--rule", "quantile:0.5") == 0
    out = capsys.readouterr().out
    assert "quantile:0.5" in out and "expected false-alarm rate" in out
    after_model = load_model(folder)
    scores = np.asarray(after_model.calibration["scores"])
    assert after_model.threshold == pytest.approx(np.quantile(scores, 0.5))
    assert after_model.threshold_rule == "quantile:0.5"
    after = predict_images(after_model, images)
    for a, b in zip(before, after):
        assert a.score == b.score and np.array_equal(a.map, b.map)
    assert [r.anomalous for r in before] != [r.anomalous for r in after]  # the median flags good images too
    assert (_digest(folder / "model.safetensors"), _digest(folder / "config.json")) == weights
    history = json.loads((folder / "model.json").read_text())["threshold_history"]
    assert history[-1]["rule"] == "max"

    assert cli("threshold", str(folder), "--fpr", "0.05") == 0
    assert load_model(folder).threshold_rule == "fpr:0.05"


def test_listing_budgets_writes_nothing(fitted, capsys):
    before = (fitted / "model.json").read_bytes()
    assert cli("threshold", str(fitted)) == 0
    out = capsys.readouterr().out
    assert "1.0%" in out and "5.0%" in out
    assert (fitted / "model.json").read_bytes() == before


@pytest.mark.parametrize("args,needle", [(["--fpr", "1.5"], "fpr:1.5"), (["--rule", "fpr:abc"], "fpr:abc"),
                                         (["--fpr", "0.1", "--rule", "max"], "not both")])
def test_bad_rule_is_a_usage_error(fitted, args, needle, capsys):
    before = (fitted / "model.json").read_bytes()
    assert cli("threshold", str(fitted), *args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err
    assert (fitted / "model.json").read_bytes() == before


def test_folder_without_calibration_scores_is_one_line_naming_it(fitted, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(fitted, old)
    body = json.loads((old / "model.json").read_text())
    del body["calibration"]
    (old / "model.json").write_text(json.dumps(body))
    assert cli("threshold", str(old), "--fpr", "0.01") == 2
    err = capsys.readouterr().err.strip()
    assert "no calibration scores" in err and str(old) in err and "\n" not in err
