"""How a fit gets its calibration scores: the detector's out-of-fold shortcut, k-fold
refits or a holdout (iadbench.model.fit: choose_calibration / fit_model)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import iadbench.model.fit as fit_mod
from iadbench.model.fit import choose_calibration, fit_model
from iadbench.plugins import get_registry
from iadbench.seeding import seed_everything
from iadbench.types import Sample, Split


class _Det:
    def __init__(self, out_of_fold=None, refits=False):
        self.out_of_fold, self.calibration_refits = out_of_fold, refits


@pytest.mark.parametrize("requested,det,n,expected", [
    ("auto", _Det("leave-one-out"), 100, "out-of-fold"),
    ("auto", _Det(None, refits=True), 32, "kfold"),   # a 10% holdout would hold 3 images
    ("auto", _Det(None, refits=True), 600, "holdout"),  # 60 held out: enough for a tail fit
    ("auto", _Det(None, refits=False), 32, "holdout"),  # refits too costly (efficientad, anomalib)
    ("holdout", _Det("leave-one-out"), 100, "holdout"),
    ("kfold", _Det("leave-one-out"), 100, "kfold"),
    ("auto", _Det("leave-one-out"), 4, "holdout"),  # too few images for folds or a leave-one-out
])
def test_choice(requested, det, n, expected):
    assert choose_calibration(requested, det, n, 0.1) == expected


@pytest.fixture
def split(tmp_path) -> Split:
    rng = np.random.default_rng(0)
    train = []
    for i in range(6):
        path = tmp_path / f"g{i}.png"
        Image.fromarray(np.clip(rng.normal(100, 20, (32, 32, 3)), 0, 255).astype(np.uint8)).save(path)
        train.append(Sample(path))
    return Split("d", "c", train, [])


def _fit(split, tmp_path, calibration):
    seed_everything(0)
    return fit_model(get_registry().detector("pixel_gaussian"), {"input_size": 32, "blur_sigma": 2.0, "min_std": 0.02},
                        split, seed=0, holdout_fraction=0.1, threshold_rule="max", threads=1,
                        workdir=tmp_path / calibration, predict_batch=4, calibration=calibration)


def test_kfold_with_one_image_a_fold_is_the_exact_leave_one_out(split, tmp_path, monkeypatch):
    monkeypatch.setattr(fit_mod, "KFOLD", 6)  # six folds of one image: refits without each image
    loo = _fit(split, tmp_path, "auto")  # pixel_gaussian's algebraic leave-one-out
    kfold = _fit(split, tmp_path, "kfold")
    assert loo.calibration == "leave-one-out" and kfold.calibration == "6-fold refits"
    np.testing.assert_allclose(kfold.calibration_scores, loo.calibration_scores, rtol=1e-4)
    # either way the model itself is fitted on every image
    assert len(loo.fit_idx) == len(kfold.fit_idx) == 6 and not len(kfold.hold_idx)
    for name, value in loo.detector.state_tensors().items():
        np.testing.assert_array_equal(value.numpy(), kfold.detector.state_tensors()[name].numpy())
    assert kfold.threshold == pytest.approx(kfold.calibration_scores.max())  # rule max


def test_holdout_keeps_images_out_of_fit(split, tmp_path):
    held = _fit(split, tmp_path, "holdout")
    assert held.calibration == "holdout" and len(held.hold_idx) == 1 and len(held.fit_idx) == 5
    assert held.calibration_info()["images"] == 1
