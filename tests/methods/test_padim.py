from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis
from sklearn.metrics import roc_auc_score

from iadbench.api import FitContext, InputError
from iadbench.artifacts import load_detector
from iadbench.plugins import load_registry
from iadbench_padim.detector import Padim, mahalanobis_sq
from iadbench_padim.export import whitening_blocks

from .conftest import synthetic_objects


def test_mahalanobis_matches_scipy_per_position():
    rng = np.random.default_rng(0)
    n, p, d = 4, 5, 6
    emb = rng.normal(size=(n, p, d))
    mean = rng.normal(size=(p, d))
    a = rng.normal(size=(p, d, d))
    inv = np.einsum("pij,pkj->pik", a, a) + 0.1 * np.eye(d)
    got = mahalanobis_sq(torch.tensor(emb), torch.tensor(mean), torch.tensor(inv)).sqrt().numpy()
    ref = np.array([[mahalanobis(emb[i, j], mean[j], inv[j]) for j in range(p)] for i in range(n)])
    np.testing.assert_allclose(got, ref, rtol=1e-10)


@pytest.mark.parametrize("d", [1, 3, 6, 13])
def test_whitening_blocks_give_scipys_mahalanobis(d):
    """The export graph's blocked triangular factor: the squared distance summed over
    its blocks equals scipy's on the full inverse covariance, for any d and block count,
    and for a singular (semi-definite) matrix too."""
    rng = np.random.default_rng(d)
    p = 3
    x, mean = rng.normal(size=(2, p, d)), rng.normal(size=(p, d))
    a = rng.normal(size=(p, d, d))
    inv = np.einsum("pij,pkj->pik", a, a) + 0.1 * np.eye(d)
    delta = torch.tensor(x - mean).transpose(0, 1)  # (P, N, d)
    # the last position's matrix is singular (its last row and column zero): no Cholesky
    # factor, so the blocks fall back to its eigendecomposition, the distances the same
    singular = inv.copy()
    singular[-1, -1, :] = singular[-1, :, -1] = 0.0
    assert int(torch.linalg.cholesky_ex(torch.tensor(singular[-1])).info) > 0
    for matrices in (inv, singular):
        ref = np.array([[mahalanobis(x[i, j], mean[j], matrices[j]) ** 2 for j in range(p)] for i in range(2)])
        for blocks in (1, 4, 8):
            parts = whitening_blocks(torch.tensor(matrices), blocks)
            assert parts[0][0] == 0 and sum(w.shape[-1] for _, w in parts) == d  # every row once
            got = sum(torch.bmm(delta[..., s:].float(), w).square().sum(-1) for s, w in parts).T.numpy()
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * ref.max())


def test_fit_gives_per_position_mean_and_regularised_inverse_covariance():
    x = synthetic_objects(8, 64)
    det = Padim(input_size=64, n_features=20)
    det.fit(x, FitContext(seed=3))
    emb = det.embed(x).double().numpy()  # (N, P, d)
    for pos in (0, 17, emb.shape[1] - 1):
        cov = np.cov(emb[:, pos], rowvar=False) + 0.01 * np.eye(20)
        np.testing.assert_allclose(det.mean[pos].numpy(), emb[:, pos].mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(det.inv_cov[pos].double().numpy() @ cov, np.eye(20), atol=2e-3)


def test_channel_subset_is_seeded():
    x = synthetic_objects(3, 64)
    a, b, c = (Padim(input_size=64, n_features=30) for _ in range(3))
    for detector, seed in ((a, 1), (b, 1), (c, 2)):
        detector.fit(x, FitContext(seed=seed))
    assert torch.equal(a.channel_idx, b.channel_idx) and not torch.equal(a.channel_idx, c.channel_idx)
    assert a.channel_idx.numel() == 30 and a.channel_idx.unique().numel() == 30


def test_detects_synthetic_defects_and_localises_them():
    good = synthetic_objects(10, 96, seed=0)
    test = np.concatenate([synthetic_objects(5, 96, seed=1), synthetic_objects(5, 96, seed=2, defect=True)])
    det = Padim(input_size=96)
    det.fit(good, FitContext())
    pred = det.predict(test)
    assert pred.maps.shape == (10, 96, 96)
    assert roc_auc_score([0] * 5 + [1] * 5, pred.scores) == 1.0
    bright = (test[..., 0] > 240) & (test[..., 1] < 60)
    assert roc_auc_score(bright[5:].ravel(), pred.maps[5:].ravel()) > 0.9


def test_save_and_reload_reproduce_scores_exactly(tmp_path):
    x = synthetic_objects(4, 64)
    det = Padim(input_size=64, n_features=40)
    det.fit(x, FitContext(seed=5))
    before = det.predict(x)
    det.save(tmp_path / "m")
    registry = load_registry()
    back = load_detector(tmp_path / "m", registry)
    after = back.predict(x)
    assert isinstance(back, Padim) and back.n_features == 40
    np.testing.assert_array_equal(before.scores, after.scores)
    np.testing.assert_array_equal(before.maps, after.maps)


def test_bad_input_is_one_line():
    det = Padim(input_size=64)
    with pytest.raises(InputError, match="expects 64x64"):
        det.fit(synthetic_objects(3, 96), FitContext())
    with pytest.raises(InputError, match="exceeds"):
        Padim(input_size=64, n_features=500).fit(synthetic_objects(3, 64), FitContext())
    with pytest.raises(InputError, match="unknown backbone"):
        Padim(backbone="vgg")
