"""PatchCore's HNSW search: the image maximum and its nearest row are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

pytest.importorskip("faiss", reason="faiss-cpu not installed (pip install 'iadbench[deploy]')")

from iadbench.api import InputError  # noqa: E402
from iadbench_patchcore.search import BankSearch  # noqa: E402


def test_hnsw_recheck_makes_each_image_maximum_exact():
    rng = np.random.default_rng(0)
    bank = torch.from_numpy(rng.normal(size=(3000, 24)).astype(np.float32))
    q = torch.from_numpy(rng.normal(size=(3, 200, 24)).astype(np.float32) * 1.3)
    # efSearch 1 makes the graph search poor on purpose: the recheck must still find the truth
    dist, index = BankSearch(bank, "hnsw", ef=1, tighten_top=2)(q)
    for k in range(3):
        true = cdist(q[k].numpy().astype(np.float64), bank.numpy().astype(np.float64))
        true_min = true.min(1)
        assert np.all(dist[k].numpy() >= true_min - 1e-4)  # approximate distances only overestimate
        p = int(dist[k].argmax())
        assert p == int(true_min.argmax())
        np.testing.assert_allclose(float(dist[k, p]), true_min.max(), rtol=1e-5)
        assert int(index[k, p]) == int(true[p].argmin())
    exact, exact_index = BankSearch(bank, "exact")(q)
    np.testing.assert_allclose(exact.numpy(), cdist(q.reshape(-1, 24), bank).min(1).reshape(3, 200), rtol=1e-4)


def test_patchcore_hnsw_scores_equal_exact(patchcore, images):
    assert patchcore.search == "hnsw"  # the default since spec version 3
    try:
        patchcore.use_search("exact")
        exact = patchcore.predict(images[4:])
        patchcore.use_search("hnsw", 4)
        approx = patchcore.predict(images[4:])
    finally:
        patchcore.use_search("hnsw", 32)
    np.testing.assert_allclose(approx.scores, exact.scores, rtol=1e-5)
    assert np.abs(approx.maps - exact.maps).max() <= 0.05 * np.abs(exact.maps).max()


def test_hnsw_build_is_deterministic():
    # A poor graph (ef 1, tiny M) makes approximate distances differ from exact ones, so
    # two builds agree only if the graph is the same.
    rng = np.random.default_rng(1)
    bank = torch.from_numpy(rng.normal(size=(4000, 32)).astype(np.float32))
    q = torch.from_numpy(rng.normal(size=(2, 300, 32)).astype(np.float32))
    torch.set_num_threads(2)
    runs = [BankSearch(bank, "hnsw", ef=1, hnsw_m=4)(q) for _ in range(3)]
    exact, _ = BankSearch(bank, "exact")(q)
    assert not torch.allclose(runs[0][0], exact)  # approximate somewhere, else the test proves nothing
    for dist, index in runs[1:]:
        assert torch.equal(dist, runs[0][0]) and torch.equal(index, runs[0][1])


def test_search_parameter_is_checked():
    with pytest.raises(InputError, match="search must be one of"):
        BankSearch(torch.zeros(3, 2), "annoy")


def test_hnsw_leaves_the_thread_count_alone():
    # faiss shares torch's OpenMP runtime when torch is imported first: its single-threaded
    # build once left torch (and every latency measured after it) on one thread.
    pytest.importorskip("faiss")
    rng = np.random.default_rng(2)
    bank = torch.from_numpy(rng.normal(size=(500, 16)).astype(np.float32))
    q = torch.from_numpy(rng.normal(size=(1, 50, 16)).astype(np.float32))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        BankSearch(bank, "hnsw", ef=4, hnsw_m=8)(q)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_tightening_leaves_one_or_two_exact_passes(monkeypatch):
    # Clustered rows and a poor graph (ef 1, M 4) make graph failures; the inverted file
    # tightens the largest bounds first, so each image needs one exact pass of one patch,
    # at most a second one, and the maximum is still exact.
    import iadbench_patchcore.search as search

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(20, 16)) * 4
    bank = torch.from_numpy((centres[rng.integers(20, size=4000)] + rng.normal(size=(4000, 16))).astype(np.float32))
    q = torch.from_numpy((centres[rng.integers(20, size=(4, 300))] + rng.normal(size=(4, 300, 16)) * 1.2).astype(np.float32))
    passes = []
    real = search.nearest
    monkeypatch.setattr(search, "nearest", lambda x, *a, **k: passes.append(len(x)) or real(x, *a, **k))
    dist, index = BankSearch(bank, "hnsw", ef=1, hnsw_m=4)(q)
    over = []
    for k in range(4):
        true = cdist(q[k].numpy().astype(np.float64), bank.numpy().astype(np.float64))
        assert np.all(dist[k].numpy() >= true.min(1) - 1e-4)
        over.append(dist[k].numpy() - true.min(1))
        p = int(dist[k].argmax())
        np.testing.assert_allclose(float(dist[k, p]), true.min(1).max(), rtol=1e-5)
        assert int(index[k, p]) == int(true[p].argmin())
    assert np.max(over) > 1.0  # the graph did fail somewhere, else the test proves nothing
    assert len(passes) <= 2 * 4 and passes[0] == 1
