"""PatchCore's out-of-fold scores (a self-excluded bank) against brute-force references:
each training image scored by the bank less the rows taken from its own patches."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from iadbench.api import FitContext, InputError
from iadbench.features import patch_maps_to_pixels
from iadbench_patchcore.detector import PatchCore
from iadbench_patchcore.search import BankSearch

from .conftest import synthetic_objects

needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss-cpu not installed")
SEARCHES = ["exact", pytest.param("hnsw", marks=needs_faiss), pytest.param("ivfpq", marks=needs_faiss)]


@pytest.fixture(scope="module")
def images():
    return synthetic_objects(12, 64, seed=3)


def _patches(det: PatchCore, images: np.ndarray) -> torch.Tensor:
    """(N, P, C) training patches, float64, recomputed through the backbone."""
    emb = det.embed(images)
    return emb.permute(0, 2, 3, 1).reshape(len(images), -1, emb.shape[1]).double()


def _reference(det: PatchCore, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each image: delete the bank rows equal to one of its patches, then nearest
    distances by cdist, eq. 7 with m*'s neighbourhood found again in the smaller bank."""
    q = _patches(det, images)
    n, p, c = q.shape
    bank = det.memory_bank.double()
    gap = torch.cdist(bank, q.reshape(-1, c), compute_mode="donot_use_mm_for_euclid_dist")
    assert float(gap.min(1).values.max()) == 0.0  # every bank row is a training patch, bit for bit
    source = gap.argmin(1) // p
    h = w = int(round(p**0.5))
    scores, maps = [], []
    for i in range(n):
        rest = bank[source != i]
        d = torch.cdist(q[i], rest, compute_mode="donot_use_mm_for_euclid_dist")
        nd, nj = d.min(1)
        worst = int(nd.argmax())
        m = int(nj[worst])
        around = torch.cdist(rest[m][None], rest, compute_mode="donot_use_mm_for_euclid_dist")[0]
        around[m] = -1.0
        support = around.argsort()[: min(det.num_neighbors, rest.shape[0])]
        ds = torch.linalg.vector_norm(rest[support] - q[i, worst], dim=1)
        scores.append(float((1 - torch.softmax(ds, 0)[0]) * ds[0]))
        maps.append(patch_maps_to_pixels(nd.view(1, h, w).float(), det.input_size, det.sigma)[0])
    return np.asarray(scores), torch.stack(maps).numpy()


@pytest.mark.parametrize("ratio", [0.25, 1.0])
@pytest.mark.parametrize("search", SEARCHES)
def test_out_of_fold_equals_brute_force_self_excluded_bank(images, ratio, search):
    det = PatchCore(input_size=64, coreset_ratio=ratio, search=search, hnsw_ef=1, ivf_probe=1)
    oof = det.fit_out_of_fold(images, FitContext(seed=2))
    ref_scores, ref_maps = _reference(det, images)
    assert oof.scores.shape == (12,) and oof.maps.shape == (12, 64, 64)
    np.testing.assert_allclose(oof.scores, ref_scores, rtol=1e-5)
    tol = 1e-5 * float(np.abs(ref_maps).max())
    if search == "exact":
        np.testing.assert_allclose(oof.maps, ref_maps, rtol=1e-5, atol=tol)
    else:  # approximate distances only overestimate, and upsampling and blur keep that
        assert float((ref_maps - oof.maps).max()) <= tol


def test_out_of_fold_fit_is_the_plain_fit(images):
    test = synthetic_objects(3, 64, seed=4, defect=True)
    plain, oof = PatchCore(input_size=64), PatchCore(input_size=64)
    plain.fit(images, FitContext(seed=5))
    oof.fit_out_of_fold(images, FitContext(seed=5))
    a, b = plain.state_tensors(), oof.state_tensors()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pa, pb = plain.predict(test), oof.predict(test)  # the graph the out-of-fold pass built serves predict
    np.testing.assert_array_equal(pa.scores, pb.scores)
    np.testing.assert_array_equal(pa.maps, pb.maps)


def test_full_bank_out_of_fold_is_leave_one_out_refit(images):
    """With coreset ratio 1 the bank is every patch, so the bank less image i's rows is
    exactly the bank of a model fitted on the other images."""
    det = PatchCore(input_size=64, coreset_ratio=1.0, search="exact")
    oof = det.fit_out_of_fold(images, FitContext())
    for i in (0, 5, 11):
        loo = PatchCore(input_size=64, coreset_ratio=1.0, search="exact")
        loo.fit(np.delete(images, i, axis=0), FitContext())
        pred = loo.predict(images[i : i + 1])
        np.testing.assert_allclose(oof.scores[i], pred.scores[0], rtol=1e-5)
        np.testing.assert_allclose(oof.maps[i], pred.maps[0], rtol=1e-5, atol=1e-5 * float(pred.maps.max()))


def test_out_of_fold_scores_exceed_in_sample_scores(images):
    det = PatchCore(input_size=64, coreset_ratio=0.25, search="exact")
    oof = det.fit_out_of_fold(images, FitContext())
    seen = det.predict(images)
    assert np.all(oof.scores >= seen.scores * (1 - 1e-5))
    assert oof.scores.mean() > 1.1 * seen.scores.mean()  # measured 1.21


def test_out_of_fold_needs_two_images(images):
    with pytest.raises(InputError, match="at least 2"):
        PatchCore(input_size=64).fit_out_of_fold(images[:1], FitContext())


@needs_faiss
@pytest.mark.parametrize("search,poor", [("hnsw", {"ef": 1, "hnsw_m": 4}), ("ivfpq", {"probe": 1})])
def test_approximate_search_with_excluded_rows_certifies_each_maximum(search, poor):
    """A poor index (a graph at ef 1, M 4; IVF-PQ probing one list) on clustered rows,
    queries lying on bank rows that their image excludes: every index must skip those
    rows, and each image's maximum and its row are still the exact ones of the reduced bank."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(20, 16)) * 4
    bank = (centres[rng.integers(20, size=4000)] + rng.normal(size=(4000, 16))).astype(np.float32)
    own = [torch.from_numpy(rng.choice(4000, 300, replace=False)) for _ in range(4)]
    q = np.stack([bank[o[:250].numpy()] + rng.normal(size=(250, 16)).astype(np.float32) * 0.05 for o in own])
    search = BankSearch(torch.from_numpy(bank), search, **poor)
    dist, index = search(torch.from_numpy(q), exclude=own)
    over = []
    for k in range(4):
        keep = np.setdiff1d(np.arange(4000), own[k].numpy())
        true = cdist(q[k].astype(np.float64), bank[keep].astype(np.float64))
        assert not np.isin(index[k].numpy(), own[k].numpy()).any()
        assert np.all(dist[k].numpy() >= true.min(1) - 1e-4)
        over.append(dist[k].numpy() - true.min(1))
        p = int(dist[k].argmax())
        np.testing.assert_allclose(float(dist[k, p]), true.min(1).max(), rtol=1e-5)
        assert int(index[k, p]) == int(keep[true[p].argmin()])
    assert np.max(over) > 0.5  # the search did fail somewhere, else the test proves nothing
    # no exclusion: the unfiltered search finds the excluded rows themselves
    plain, _ = search(torch.from_numpy(q))
    assert float(plain.min()) < 0.5 * float(dist.min())
