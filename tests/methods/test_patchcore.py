from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter
from sklearn.metrics import roc_auc_score

from iadbench.api import FitContext, InputError
from iadbench.artifacts import load_detector
from iadbench.plugins import load_registry
from iadbench_patchcore.core import bank_neighbourhoods, brute_force_greedy, greedy_coreset, nearest, reweighted_score
from iadbench_patchcore.detector import PatchCore, pool_channels

from .conftest import synthetic_objects


def _clustered(n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(20, d, generator=g, dtype=dtype) * 3
    return centres[torch.randint(0, 20, (n,), generator=g)] + torch.randn(n, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("hot,pool", [(1, 1), (16, 64), (4096, 32768)])
def test_coreset_equals_brute_force_greedy(hot, pool):
    z = _clustered(2000, 8, seed=hot)
    got = greedy_coreset(z, 150, start=7, hot=hot, pool=pool)
    ref = brute_force_greedy(z, 150, start=7)
    assert torch.equal(got, ref)
    # Same covering radius, and it beats a random subset of the same size.
    def radius(idx):
        return torch.cdist(z, z[idx]).min(1).values.max()
    assert torch.isclose(radius(got), radius(ref))
    rand = torch.randperm(2000, generator=torch.Generator().manual_seed(0))[:150]
    assert radius(got) < radius(rand)


def test_nearest_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    q, bank = torch.randn(500, 12, generator=g), torch.randn(300, 12, generator=g)
    full = torch.cdist(q, bank, compute_mode="donot_use_mm_for_euclid_dist")  # differences, not a GEMM
    for chunk in (64, 400):  # few queries a chunk (bank-major GEMM), then many (query-major) and a rest of 100
        dist, idx = nearest(q, bank, chunk=chunk)
        torch.testing.assert_close(dist, full.min(1).values, atol=1e-4, rtol=1e-4)
        assert torch.equal(idx, full.argmin(1))


def test_reweighting_follows_eq7():
    g = torch.Generator().manual_seed(2)
    bank = torch.randn(50, 4, generator=g, dtype=torch.float64)
    patch = torch.randn(4, generator=g, dtype=torch.float64)
    j = int(torch.cdist(patch[None], bank).argmin())
    nbrs = torch.cdist(bank[j][None], bank)[0].argsort()[:3]  # m* and its 2 nearest
    d = torch.linalg.vector_norm(bank[nbrs] - patch, dim=1)
    ref = (1 - torch.exp(d[0]) / torch.exp(d).sum()) * d[0]
    support = bank_neighbourhoods(bank, (bank * bank).sum(1), 3)[j]
    assert torch.equal(support, nbrs)
    assert torch.isclose(reweighted_score(patch, support, bank), ref)


def test_bank_neighbourhoods_match_scipy_brute_force():
    """Every row's neighbourhood (itself first, then its b - 1 nearest other rows) against
    scipy's cdist + argsort, with chunks smaller than the bank and a duplicated row."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(5)
    bank = rng.normal(size=(300, 8)).astype(np.float32)
    bank[7] = bank[3]  # a duplicate: each must still list itself first, then its twin
    t = torch.from_numpy(bank)
    got = bank_neighbourhoods(t, (t * t).sum(1), 5, chunk=64).numpy()
    d = cdist(bank.astype(np.float64), bank.astype(np.float64))
    np.fill_diagonal(d, -1.0)
    ref = np.argsort(d, axis=1, kind="stable")[:, :5]
    assert (got[:, 0] == np.arange(300)).all()
    assert {got[3, 1], got[7, 1]} == {7, 3}
    # the same neighbours up to ties (rows 3 and 7 are equally near to everyone else)
    rows = np.arange(300)[:, None]
    np.testing.assert_allclose(np.sort(d[rows, got[:, 1:]], 1), d[rows, ref[:, 1:]], rtol=1e-5)
    assert (np.sort(got[:, 1:], 1) != np.sort(ref[:, 1:], 1)).any(1).sum() <= 2


def test_one_neighbour_scores_plain_nearest_distance():
    """With b = 1 eq. 7's softmax has one element; the score must be the distance
    itself (as anomalib's compute_anomaly_score returns), not (1 - 1) * d = 0."""
    g = torch.Generator().manual_seed(4)
    bank = torch.randn(40, 6, generator=g, dtype=torch.float64)
    patch = torch.randn(6, generator=g, dtype=torch.float64) * 3
    ref = torch.cdist(patch[None], bank).min()
    j = int(torch.cdist(patch[None], bank).argmin())
    got = reweighted_score(patch, bank_neighbourhoods(bank, (bank * bank).sum(1), 1)[j], bank)
    assert float(ref) > 1.0 and torch.isclose(got, ref)


def test_one_neighbour_image_score_is_max_patch_distance():
    good, test = synthetic_objects(4, 64, seed=0), synthetic_objects(3, 64, seed=2, defect=True)
    det = PatchCore(input_size=64, coreset_ratio=0.5, num_neighbors=1, sigma=0)
    det.fit(good, FitContext())
    pred = det.predict(test)
    q = det.embed(test).permute(0, 2, 3, 1).flatten(1, 2).double()  # (N, P, C)
    ref = torch.cdist(q, det.memory_bank.double()[None]).min(2).values.amax(1).numpy()
    assert ref.min() > 1.0
    np.testing.assert_allclose(pred.scores, ref, rtol=1e-4)


def test_bank_size_follows_ratio_and_detects_synthetic_defects():
    good = synthetic_objects(8, 96, seed=0)
    test = np.concatenate([synthetic_objects(5, 96, seed=1), synthetic_objects(5, 96, seed=2, defect=True)])
    det = PatchCore(input_size=96, coreset_ratio=0.25)
    det.fit(good, FitContext())
    assert det.memory_bank.shape == (round(0.25 * 8 * 12 * 12), 40 + 112)  # plain concatenation (layer_dim None)
    pred = det.predict(test)
    assert roc_auc_score([0] * 5 + [1] * 5, pred.scores) == 1.0
    bright = (test[..., 0] > 240) & (test[..., 1] < 60)
    assert roc_auc_score(bright[5:].ravel(), pred.maps[5:].ravel()) > 0.9


def test_full_bank_scores_training_images_near_zero():
    x = synthetic_objects(3, 64)
    det = PatchCore(input_size=64, coreset_ratio=1.0, sigma=0)
    det.fit(x, FitContext())
    assert float(np.abs(det.predict(x).maps).max()) < 0.1  # float32 round-off of ||a||^2+||b||^2-2ab


def test_save_and_reload_reproduce_scores_exactly(tmp_path):
    x = synthetic_objects(4, 64)
    det = PatchCore(input_size=64, coreset_ratio=0.3, num_neighbors=5)
    det.fit(x, FitContext(seed=1))
    before = det.predict(x)
    det.save(tmp_path / "m")
    back = load_detector(tmp_path / "m", load_registry())
    after = back.predict(x)
    assert isinstance(back, PatchCore) and back.num_neighbors == 5
    np.testing.assert_array_equal(before.scores, after.scores)
    np.testing.assert_array_equal(before.maps, after.maps)


def test_neighbourhood_table_is_saved_and_older_models_rebuild_it():
    """The eq. 7 neighbourhoods are computed at fit and saved; a state without them (a
    model saved before they existed) rebuilds the same table on first use; a table that
    does not index the bank is refused at load."""
    x = synthetic_objects(4, 64)
    det = PatchCore(input_size=64, coreset_ratio=0.3, num_neighbors=5, search="exact")
    det.fit(x, FitContext(seed=1))
    state = det.state_tensors()
    assert state["bank_neighbourhoods"].shape == (det.memory_bank.shape[0], 5)
    old = PatchCore(input_size=64, coreset_ratio=0.3, num_neighbors=5, search="exact")
    old.load_state_tensors({"memory_bank": state["memory_bank"]})
    assert torch.equal(old.neighbourhoods(), state["bank_neighbourhoods"])
    np.testing.assert_array_equal(old.predict(x).scores, det.predict(x).scores)
    bad = state["bank_neighbourhoods"].clone()
    bad[0, 1] = det.memory_bank.shape[0]
    with pytest.raises(InputError, match="bank_neighbourhoods"):
        old.load_state_tensors({"memory_bank": state["memory_bank"], "bank_neighbourhoods": bad})


def test_bad_params_are_input_errors():
    with pytest.raises(InputError, match="coreset_ratio"):
        PatchCore(coreset_ratio=0)
    with pytest.raises(InputError, match="uint8"):
        PatchCore(input_size=64).fit(np.zeros((2, 64, 64, 3), dtype=np.float32), FitContext())


@pytest.mark.slow
@pytest.mark.real_data
def test_real_bottle_quality():
    """PatchCore and PaDiM on a subset of MVTec AD bottle (128 px, 60 train images)."""
    from iadbench.api import Sample
    from iadbench.images import load_images, load_masks

    from .conftest import mvtec_root

    root = mvtec_root() / "bottle"
    if not root.is_dir():
        pytest.skip(f"MVTec AD bottle not found at {root} (set IADBENCH_MVTEC_ROOT)")
    train = [Sample(p) for p in sorted((root / "train" / "good").glob("*.png"))[::3]]
    test = []
    for d in sorted((root / "test").iterdir()):
        for p in sorted(d.glob("*.png"))[::2]:
            bad = d.name != "good"
            test.append(Sample(p, int(bad), d.name, root / "ground_truth" / d.name / f"{p.stem}_mask.png" if bad else None))
    size = (128, 128)
    x, y = load_images(train, size), load_images(test, size)
    labels, masks = [s.label for s in test], load_masks(test, size)
    from iadbench_padim.detector import Padim

    # Floors 0.01 under leaderboards/mvtec-bottle.md (image / pixel AUROC at the defaults
    # on the full bottle: PatchCore v5 1.000 / 0.984 at 256 px, PaDiM 0.998 / 0.983 at
    # 320); this subset at 128 px scored PatchCore 1.000 / 0.975, PaDiM 0.997 / 0.979.
    floors = {"patchcore": (0.990, 0.974), "padim": (0.988, 0.973)}
    for det in (PatchCore(input_size=128), Padim(input_size=128)):
        det.fit(x, FitContext())
        pred = det.predict(y)
        image_floor, pixel_floor = floors[det.name]
        assert roc_auc_score(labels, pred.scores) > image_floor, det.name
        assert roc_auc_score(masks.ravel(), pred.maps.ravel()) > pixel_floor, det.name


def _replicated_layers(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Two 8x8 layers holding 8 iid latent channels each, every latent copied 5 times
    (40 channels, like lite0's blocks.2) or 14 times (112, like blocks.4)."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, 8, 8, 8, generator=g), torch.randn(n, 8, 8, 8, generator=g)
    return {"blocks.2": a.repeat_interleave(5, 1), "blocks.4": b.repeat_interleave(14, 1)}, a, b


def _deeper_share(det: PatchCore, train: dict, test: dict, split: int) -> float:
    det.features = lambda images, feats=train: feats  # bypass the backbone
    det.fit(np.zeros((1, 64, 64, 3), np.uint8), FitContext())
    det.features = lambda images, feats=test: feats
    q = det.embed(np.zeros((1, 64, 64, 3), np.uint8)).permute(0, 2, 3, 1).reshape(-1, det.memory_bank.shape[1]).double()
    bank = det.memory_bank.double()
    # Over every (query, memory) pair, not just nearest ones: the nearest neighbour is
    # chosen to match the heavier layer best, which hides its weight.
    deep = torch.cdist(q[:, split:], bank[:, split:]).square().sum()
    return float(deep / torch.cdist(q, bank).square().sum())


def test_layer_dim_balances_layers_with_different_channel_counts():
    """Raw concatenation gives the 112-channel layer 112/152 of the squared distances;
    pooling each layer to 8 channels recovers its 8 latents, so each layer holds half.
    (Real channels are not copies: averaging them also shrinks a layer's variance, see
    the detector's docstring.)"""
    train, _, _ = _replicated_layers(6, seed=0)
    test, a, b = _replicated_layers(3, seed=1)
    raw = _deeper_share(PatchCore(input_size=64, coreset_ratio=1.0, layer_dim=None), train, test, split=40)
    assert abs(raw - 112 / 152) < 0.05
    det = PatchCore(input_size=64, coreset_ratio=1.0, layer_dim=8)
    pooled = _deeper_share(det, train, test, split=8)
    assert abs(pooled - 0.5) < 0.05
    # The embedding is the 3x3 zero-padded mean of each latent (scipy as the reference).
    emb = det.embed(np.zeros((1, 64, 64, 3), np.uint8)).numpy()
    ref = uniform_filter(torch.cat([a, b], 1).numpy(), size=(1, 1, 3, 3), mode="constant")
    np.testing.assert_allclose(emb, ref, atol=1e-5)


@pytest.mark.parametrize("channels,dim", [(40, 16), (112, 32), (12, 40)])
def test_layer_dim_pools_channels_like_adaptive_average_pooling(channels, dim):
    """Against the definition: output i averages channels floor(i*C/D) .. ceil((i+1)*C/D)-1."""
    m = torch.randn(2, channels, 3, 4, generator=torch.Generator().manual_seed(channels), dtype=torch.float64)
    ref = torch.stack(
        [m[:, (i * channels) // dim : -((-(i + 1) * channels) // dim)].mean(1) for i in range(dim)], 1
    )
    torch.testing.assert_close(pool_channels(m, dim), ref)


def test_layer_dim_sets_bank_width_and_survives_reload(tmp_path):
    x = synthetic_objects(3, 64)
    det = PatchCore(input_size=64, coreset_ratio=0.5, layer_dim=24)
    det.fit(x, FitContext())
    assert det.memory_bank.shape[1] == 2 * 24
    before = det.predict(x)
    det.save(tmp_path / "m")
    back = load_detector(tmp_path / "m", load_registry())
    assert back.layer_dim == 24
    np.testing.assert_array_equal(before.maps, back.predict(x).maps)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_bad_layer_dim_is_an_input_error(bad):
    with pytest.raises(InputError, match="layer_dim"):
        PatchCore(layer_dim=bad)
