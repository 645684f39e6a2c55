"""PatchCore's approximate searches (HNSW, IVF-PQ): the image maximum and its nearest
row are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

pytest.importorskip("faiss", reason="faiss-cpu not installed (pip install 'iadbench[deploy]')")

from iadbench.api import InputError  # noqa: E402
from iadbench_patchcore.search import BankSearch  # noqa: E402

#: Each approximate search set up poorly on purpose (efSearch 1; one list probed), so
#: that the re-check has something to correct.
POOR = {"hnsw": {"ef": 1}, "ivfpq": {"probe": 1}}


@pytest.mark.parametrize("search,dim", [("hnsw", 24), ("ivfpq", 24), ("ivfpq", 22)])
def test_recheck_makes_each_image_maximum_exact(search, dim):
    # 22 coordinates: IVF-PQ pads them to 24 (product codes of 4), which changes no distance
    rng = np.random.default_rng(0)
    bank = torch.from_numpy(rng.normal(size=(3000, dim)).astype(np.float32))
    q = torch.from_numpy(rng.normal(size=(3, 200, dim)).astype(np.float32) * 1.3)
    dist, index = BankSearch(bank, search, tighten_top=2, **POOR[search])(q)
    for k in range(3):
        true = cdist(q[k].numpy().astype(np.float64), bank.numpy().astype(np.float64))
        true_min = true.min(1)
        assert np.all(dist[k].numpy() >= true_min - 1e-4)  # approximate distances only overestimate
        p = int(dist[k].argmax())
        assert p == int(true_min.argmax())
        np.testing.assert_allclose(float(dist[k, p]), true_min.max(), rtol=1e-5)
        assert int(index[k, p]) == int(true[p].argmin())
    exact, exact_index = BankSearch(bank, "exact")(q)
    np.testing.assert_allclose(exact.numpy(), cdist(q.reshape(-1, dim), bank).min(1).reshape(3, 200), rtol=1e-4)


def test_a_small_bank_is_searched_exactly_by_ivfpq():
    # under SMALLEST_QUANTIZED_BANK rows a product quantizer cannot train: a flat index
    rng = np.random.default_rng(4)
    bank = torch.from_numpy(rng.normal(size=(100, 10)).astype(np.float32))
    q = torch.from_numpy(rng.normal(size=(2, 40, 10)).astype(np.float32))
    dist, index = BankSearch(bank, "ivfpq", probe=1)(q)
    true = cdist(q.reshape(-1, 10).numpy().astype(np.float64), bank.numpy().astype(np.float64))
    np.testing.assert_allclose(dist.reshape(-1).numpy(), true.min(1), rtol=1e-4)
    assert np.array_equal(index.reshape(-1).numpy(), true.argmin(1))


@pytest.mark.parametrize("search,knob", [("hnsw", {"hnsw_ef": 4}), ("ivfpq", {"ivf_probe": 1})])
def test_patchcore_approximate_scores_equal_exact(patchcore, images, search, knob):
    assert patchcore.search == "ivfpq"  # the default since spec version 8
    try:
        patchcore.use_search("exact")
        exact = patchcore.predict(images[4:])
        patchcore.use_search(search, **knob)
        approx = patchcore.predict(images[4:])
    finally:
        patchcore.use_search("ivfpq", hnsw_ef=16, ivf_probe=4)
    np.testing.assert_allclose(approx.scores, exact.scores, rtol=1e-5)
    assert np.abs(approx.maps - exact.maps).max() <= 0.05 * np.abs(exact.maps).max()


@pytest.mark.parametrize("search", ["hnsw", "ivfpq"])
def test_index_build_is_deterministic(search):
    # A poor index (ef 1 and a tiny M; one list probed) makes approximate distances
    # differ from exact ones, so two builds agree only if the index is the same.
    rng = np.random.default_rng(1)
    bank = torch.from_numpy(rng.normal(size=(4000, 32)).astype(np.float32))
    q = torch.from_numpy(rng.normal(size=(2, 300, 32)).astype(np.float32))
    torch.set_num_threads(2)
    runs = [BankSearch(bank, search, hnsw_m=4, **POOR[search])(q) for _ in range(3)]
    exact, _ = BankSearch(bank, "exact")(q)
    assert not torch.allclose(runs[0][0], exact)  # approximate somewhere, else the test proves nothing
    for dist, index in runs[1:]:
        assert torch.equal(dist, runs[0][0]) and torch.equal(index, runs[0][1])


def test_search_parameter_is_checked():
    with pytest.raises(InputError, match="search must be one of"):
        BankSearch(torch.zeros(3, 2), "annoy")


@pytest.mark.parametrize("search", ["hnsw", "ivfpq"])
def test_search_leaves_the_thread_count_alone(search):
    # faiss shares torch's OpenMP runtime when torch is imported first: its single-threaded
    # build once left torch (and every latency measured after it) on one thread.
    pytest.importorskip("faiss")
    rng = np.random.default_rng(2)
    bank = torch.from_numpy(rng.normal(size=(500, 16)).astype(np.float32))
    q = torch.from_numpy(rng.normal(size=(1, 50, 16)).astype(np.float32))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        BankSearch(bank, search, ef=4, hnsw_m=8)(q)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_tightening_leaves_one_or_two_exact_passes(monkeypatch, kind):
    # Clustered rows and a poor index (ef 1, M 4; one list) make search failures; the inverted file
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
    dist, index = BankSearch(bank, kind, hnsw_m=4, **POOR[kind])(q)
    over = []
    for k in range(4):
        true = cdist(q[k].numpy().astype(np.float64), bank.numpy().astype(np.float64))
        assert np.all(dist[k].numpy() >= true.min(1) - 1e-4)
        over.append(dist[k].numpy() - true.min(1))
        p = int(dist[k].argmax())
        np.testing.assert_allclose(float(dist[k, p]), true.min(1).max(), rtol=1e-5)
        assert int(index[k, p]) == int(true[p].argmin())
    assert np.max(over) > 1.0  # the search did fail somewhere, else the test proves nothing
    assert len(passes) <= 2 * 4 and passes[0] == 1
