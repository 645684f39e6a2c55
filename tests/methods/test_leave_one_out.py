"""Exact leave-one-out calibration scores (PaDiM, pixel_gaussian) against brute-force refits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iadbench.api import FitContext, InputError
from iadbench_padim.detector import Padim, leave_one_out_mahalanobis_sq

from .conftest import synthetic_objects


def _brute_force(emb: np.ndarray, epsilon: float) -> np.ndarray:
    """(P, N) squared distances: at each position, each embedding against the mean and
    regularised sample covariance of the others, refitted and inverted from scratch."""
    p, n, d = emb.shape
    out = np.empty((p, n))
    for j in range(p):
        for i in range(n):
            rest = np.delete(emb[j], i, axis=0)
            cov = np.cov(rest, rowvar=False, ddof=1) + epsilon * np.eye(d)
            delta = emb[j, i] - rest.mean(0)
            out[j, i] = delta @ np.linalg.solve(cov, delta)
    return out


@pytest.mark.parametrize("n,d", [(6, 4), (5, 9), (30, 8)])  # fewer and more images than dimensions
def test_downdate_equals_refits_without_each_image(n, d):
    rng = np.random.default_rng(n * d)
    emb = rng.normal(size=(7, n, d)) * rng.uniform(0.2, 3.0, size=(1, 1, d))
    emb[:, 0] += 4.0  # one image far out: where 1 - c m cancels
    centred = emb - emb.mean(1, keepdims=True)
    scatter = np.einsum("pni,pnj->pij", centred, centred)
    got = leave_one_out_mahalanobis_sq(torch.from_numpy(centred), torch.from_numpy(scatter), 0.01)
    ref = _brute_force(emb, 0.01)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6)


def test_out_of_fold_maps_equal_a_refit_without_the_image():
    images = synthetic_objects(9, size=64, seed=3)
    det = Padim(input_size=64, n_features=40)
    oof = det.fit_out_of_fold(images, FitContext(seed=0))
    plain = Padim(input_size=64, n_features=40)
    plain.fit(images, FitContext(seed=0))
    for name, value in plain.state_tensors().items():  # the model itself is the plain fit's
        assert torch.equal(value, det.state_tensors()[name]), name
    for i in (0, 4):
        refit = Padim(input_size=64, n_features=40)
        refit.fit(np.delete(images, i, axis=0), FitContext(seed=0))
        ref = refit.predict(images[i : i + 1])
        # the refit's statistics are float32 and its covariance near-singular (9 images, 40
        # channels): agreement to its own round-off
        np.testing.assert_allclose(oof.maps[i], ref.maps[0], rtol=2e-3, atol=2e-3 * ref.maps[0].max())
        assert oof.scores[i] == pytest.approx(ref.scores[0], rel=1e-3)
    inside = det.predict(images).scores
    assert (oof.scores > inside).all()  # an image it fitted looks more normal than one it did not


def test_out_of_fold_needs_three_images():
    with pytest.raises(InputError, match="at least 3"):
        Padim(input_size=64, n_features=8).fit_out_of_fold(synthetic_objects(2, size=64), FitContext(seed=0))


def test_pixel_gaussian_out_of_fold_equals_refits():
    from iadbench_baselines.pixel_gaussian import PixelGaussian

    images = synthetic_objects(7, size=32, seed=5)
    det = PixelGaussian(input_size=32)
    oof = det.fit_out_of_fold(images, FitContext(seed=0))
    for i in range(len(images)):
        refit = PixelGaussian(input_size=32)
        refit.fit(np.delete(images, i, axis=0), FitContext(seed=0))
        ref = refit.predict(images[i : i + 1])
        np.testing.assert_allclose(oof.maps[i], ref.maps[0], rtol=1e-4, atol=1e-4 * ref.maps[0].max())
