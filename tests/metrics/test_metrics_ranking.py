"""The shared pixel ranking: pixel AUROC / AP against scikit-learn, AUPRO against the
former full-argsort implementation, and the one-entry cache."""

import gc

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from iadbench.metrics import _ranking, compute_metrics
from iadbench.metrics.aupro import DEFAULT_MAX_FPR, aupro, label_regions, pro_curve, truncated_area
from iadbench.metrics.pixel import auroc, average_precision, pixel_ap, pixel_auroc
from iadbench.types import EvalData, MetricSpec


@pytest.fixture(autouse=True)
def fresh_cache():
    _ranking.clear_cache()
    yield
    _ranking.clear_cache()


def tied_case(seed, dtype=np.float32, levels=None, shape=(5, 17, 19), frac=None):
    """Masks with blobs and scattered pixels; maps with (optionally) few distinct
    values so that ties span normal and defective pixels."""
    rng = np.random.default_rng(seed)
    frac = rng.uniform(0.01, 0.5) if frac is None else frac
    masks = rng.random(shape) < frac
    masks[0] = False  # a good image
    masks[1, 2:6, 3:9] = True  # a blob
    maps = rng.random(shape) + masks * rng.uniform(-0.2, 0.8)
    if levels:
        maps = np.round(maps * levels) / levels
    return maps.astype(dtype), masks


CASES = [
    (seed, dtype, levels)
    for seed in range(6)
    for dtype in (np.float32, np.float64, np.float16)
    for levels in (None, 3, 10, 1000)
]


@pytest.mark.parametrize("seed, dtype, levels", CASES)
def test_matches_sklearn_with_ties(seed, dtype, levels):
    maps, masks = tied_case(seed, dtype, levels)
    y, s = masks.ravel(), maps.ravel()
    assert auroc(maps, masks) == pytest.approx(roc_auc_score(y, s), abs=1e-9, rel=0)
    assert average_precision(maps, masks) == pytest.approx(
        average_precision_score(y, s), abs=1e-9, rel=0
    )


@pytest.mark.parametrize("frac", [0.0005, 0.02, 0.5, 0.97])
def test_matches_sklearn_large_float32(frac):
    rng = np.random.default_rng(7)
    masks = rng.random((6, 64, 64)) < frac
    masks[0, 0, :2] = [True, False]
    # float32 with heavy ties: 256 levels, plus exact duplicates of -0.0 and 0.0.
    maps = (np.floor(rng.random(masks.shape) * 256) / 256 + 0.3 * masks).astype(np.float32)
    maps[2, :8] = 0.0
    maps[3, :8] = -0.0
    y, s = masks.ravel(), maps.ravel()
    assert auroc(maps, masks) == pytest.approx(roc_auc_score(y, s), abs=1e-9, rel=0)
    assert average_precision(maps, masks) == pytest.approx(
        average_precision_score(y, s), abs=1e-9, rel=0
    )


def test_integer_maps_and_uint8_masks():
    rng = np.random.default_rng(3)
    maps = rng.integers(0, 5, (3, 8, 8)).astype(np.uint8)  # heavy ties, cast to float32
    masks = (rng.random((3, 8, 8)) < 0.3).astype(np.uint8) * 255
    y = masks.ravel() > 0
    assert auroc(maps, masks) == pytest.approx(roc_auc_score(y, maps.ravel()), abs=1e-12)
    assert average_precision(maps, masks) == pytest.approx(
        average_precision_score(y, maps.ravel()), abs=1e-12
    )
    assert aupro(maps, masks) == pytest.approx(
        argsort_aupro(maps.astype(np.float32), masks > 0), abs=1e-12
    )


def test_perfect_and_inverted():
    maps, masks = tied_case(0)
    assert auroc(masks.astype(np.float32), masks) == 1.0
    assert average_precision(masks.astype(np.float32), masks) == 1.0
    assert auroc((~masks).astype(np.float32), masks) == 0.0


def argsort_aupro(maps, masks, max_fpr=DEFAULT_MAX_FPR):
    """AUPRO as it was computed before the shared ranking: one argsort of all pixels
    and cumulative sums over all of them."""
    regions, n_regions = label_regions(masks)
    n_normal = masks.size - int(np.count_nonzero(masks))
    sizes = np.bincount(regions.ravel(), minlength=n_regions + 1).astype(np.float64)
    weight = np.zeros(n_regions + 1)
    weight[1:] = 1.0 / (n_regions * sizes[1:])
    scores = maps.ravel()
    order = np.argsort(scores, kind="stable")[::-1]
    ranked = scores[order]
    pro = np.cumsum(weight[regions.ravel()[order]])
    fp = np.cumsum(~masks.ravel()[order])
    ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), ranked.size - 1]
    fpr = np.r_[0.0, fp[ends] / n_normal]
    pro = np.r_[0.0, np.clip(pro[ends], 0.0, 1.0)]
    return truncated_area(fpr, pro, max_fpr)


@pytest.mark.parametrize("seed, dtype, levels", CASES[::2])
def test_aupro_matches_argsort_implementation(seed, dtype, levels):
    maps, masks = tied_case(seed, dtype, levels, frac=0.05)
    for max_fpr in (0.3, 0.01, 1.0):
        assert aupro(maps, masks, max_fpr) == pytest.approx(
            argsort_aupro(maps, masks, max_fpr), abs=1e-9
        )


def test_pro_curve_thresholds_are_the_distinct_scores():
    maps, masks = tied_case(1, np.float32, 10)
    fpr, pro, thr = pro_curve(maps, masks)
    np.testing.assert_array_equal(thr[1:], np.unique(maps)[::-1].astype(np.float64))
    assert fpr[-1] == 1.0 and pro[-1] == pytest.approx(1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= -1e-12)


# --- the one-entry cache ---------------------------------------------------------


def test_same_arrays_share_one_ranking():
    maps, masks = tied_case(2)
    first = _ranking.rank_pixels(maps, masks)
    assert _ranking.rank_pixels(maps, masks) is first
    assert not first.tps.flags.writeable and not first.thresholds.flags.writeable


def test_other_arrays_never_get_a_stale_ranking():
    maps, masks = tied_case(2)
    first = _ranking.rank_pixels(maps, masks)
    copy = maps.copy()  # equal values, another object: ranked afresh
    assert _ranking.rank_pixels(copy, masks) is not first
    other = maps[::-1].copy()  # different values, same shape and dtype
    assert auroc(other, masks) == pytest.approx(roc_auc_score(masks.ravel(), other.ravel()))
    again = _ranking.rank_pixels(maps, masks)
    view = maps.reshape(maps.shape)  # a new view object of the same memory
    assert _ranking.rank_pixels(view, masks) is not again
    masks_copy = masks.copy()
    assert _ranking.rank_pixels(view, masks_copy) is not _ranking.rank_pixels(view, masks)


def test_in_place_edits_are_noticed():
    maps, masks = tied_case(4)
    before = auroc(maps, masks)
    maps[masks] += 5.0  # now every defective pixel ranks first
    assert auroc(maps, masks) == 1.0 != before
    masks[:] = ~masks
    assert auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))


def test_entry_is_dropped_with_its_maps():
    maps, masks = tied_case(5)
    _ranking.rank_pixels(maps, masks)
    assert _ranking._last is not None
    del maps
    gc.collect()
    assert _ranking._last is None


def test_undefined_inputs_are_not_cached():
    maps, masks = tied_case(5)
    with pytest.raises(Exception, match="no defective pixel"):
        _ranking.rank_pixels(maps, np.zeros_like(masks))
    assert _ranking._last is None


def test_compute_metrics_values_match_sklearn():
    maps, masks = tied_case(6, np.float32, 20)
    data = EvalData(
        labels=np.r_[0, np.ones(4, int)],
        scores=np.arange(5.0),
        maps=maps,
        masks=masks,
        threshold=0.5,
        defect_types=["good"] + ["bad"] * 4,
    )
    specs = {
        "pixel_auroc": MetricSpec("pixel_auroc", pixel_auroc),
        "pixel_ap": MetricSpec("pixel_ap", pixel_ap),
        "aupro": MetricSpec("aupro", lambda d: aupro(d.maps, d.masks)),
    }
    values, reasons = compute_metrics(data, specs)
    assert reasons == {}
    y, s = masks.ravel(), maps.ravel()
    assert values["pixel_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert values["pixel_ap"] == pytest.approx(average_precision_score(y, s), abs=1e-9)
    assert values["aupro"] == pytest.approx(argsort_aupro(maps, masks), abs=1e-9)
