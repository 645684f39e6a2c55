"""AUPIMO against hand-computed curves, a slow brute-force reference and anomalib's
own implementation (where anomalib is installed)."""

import math

import numpy as np
import pytest

from iadbench.errors import UndefinedMetric
from iadbench.metrics.aupimo import aupimo, aupimo_per_image, pixel_aupimo
from iadbench.types import EvalData


def brute_force_aupimo(maps, masks, labels, fpr_bounds):
    """The definition, written out: every distinct map value a threshold, the shared
    FPR on the good images' pixels, each defective image's TPR, the achieved FPRs
    closest to the bounds, trapezoids in log FPR (FPR 0 left out), normalised by the
    asked range and clipped to [0, 1] (the achieved range may be a little wider)."""
    lower, upper = fpr_bounds
    good = maps[labels == 0]
    thresholds = np.r_[np.inf, np.unique(maps)[::-1]]
    fpr = np.array([(good >= t).mean() for t in thresholds])
    levels = np.unique(fpr)
    lo = max(levels[np.abs(levels - lower) == np.abs(levels - lower).min()])
    hi = max(levels[np.abs(levels - upper) == np.abs(levels - upper).min()])
    keep = (fpr >= lo) & (fpr <= hi) & (fpr > 0)
    out = np.full(len(labels), np.nan)
    for i in np.flatnonzero((labels == 1) & masks.any(axis=(1, 2))):
        defect = maps[i][masks[i]]
        tpr = np.array([(defect >= t).mean() for t in thresholds])
        x, y = np.log(fpr[keep]), tpr[keep]
        area = sum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(x, x[1:], y, y[1:]))
        out[i] = min(area / math.log(upper / lower), 1.0)
    return out


def random_case(seed, n=6, size=12, ties=False):
    rng = np.random.default_rng(seed)
    labels = np.array([0, 0, 0] + [1] * (n - 3))
    masks = np.zeros((n, size, size), bool)
    for i in range(3, n):
        y, x = rng.integers(0, size - 4, size=2)
        dy, dx = rng.integers(1, 5, size=2)
        masks[i, y : y + dy, x : x + dx] = True
    maps = rng.random((n, size, size)) + masks * rng.uniform(0.0, 1.0, size=(n, 1, 1))
    if ties:  # coarse values: defect pixels tied with good ones
        maps = np.round(maps * 20) / 20
    return maps.astype(np.float32), masks, labels


@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force(seed):
    maps, masks, labels = random_case(seed, ties=bool(seed % 2))
    for bounds in ((0.01, 0.1), (0.003, 0.3), (0.05, 1.0)):
        got = aupimo_per_image(maps, masks, labels, bounds).per_image
        np.testing.assert_allclose(got, brute_force_aupimo(maps, masks, labels, bounds), atol=1e-12)


def hand_case(defect_scores):
    """One good image scoring 0.00 .. 0.99 (FPR k/100 at 0.99 - (k-1)/100) and one
    defective image whose mask holds ``defect_scores``."""
    good = np.arange(100, dtype=np.float64).reshape(10, 10) / 100
    bad = np.zeros((10, 10))
    mask = np.zeros((10, 10), bool)
    mask.flat[: len(defect_scores)] = True
    bad.flat[: len(defect_scores)] = defect_scores
    return np.stack([good, bad]), np.stack([np.zeros_like(mask), mask]), np.array([0, 1])


def test_hand_computed_area():
    # Defect pixels at .975 and .935: TPR 0 at FPR .01-.02, 1/2 from .02 to .06, 1 to .10.
    maps, masks, labels = hand_case([0.975, 0.935])
    expected = (0.5 * math.log(6 / 2) + math.log(10 / 6)) / math.log(10)
    result = aupimo_per_image(maps, masks, labels, (0.01, 0.1))
    assert result.per_image[1] == pytest.approx(expected)
    assert math.isnan(result.per_image[0])
    assert result.fpr_range == pytest.approx((0.01, 0.1)) and result.points == 10
    # Bounds between levels: the closest achieved ones (.01, .10), normalised by the asked range.
    off = aupimo_per_image(maps, masks, labels, (0.014, 0.096))
    assert off.fpr_range == pytest.approx((0.01, 0.1))
    assert off.per_image[1] == pytest.approx(expected * math.log(10) / math.log(0.096 / 0.014))


def test_a_tie_with_a_good_pixel_counts_half_across_its_step():
    # The defect pixel equals the good pixel at .95: between FPR .04 and .05 the TPR
    # rises from 0 (threshold just above .95) to 1 (at .95).
    maps, masks, labels = hand_case([0.95])
    expected = (0.5 * math.log(5 / 4) + math.log(10 / 5)) / math.log(10)
    assert aupimo(maps, masks, labels, (0.01, 0.1)) == pytest.approx(expected)


def test_perfect_and_inverted_detectors():
    maps, masks, labels = random_case(3, size=24)  # maps in [0, 2)
    assert aupimo(maps + 2 * masks, masks, labels, (0.01, 0.1)) == pytest.approx(1.0)
    assert aupimo(maps - 2 * masks, masks, labels, (0.01, 0.1)) == pytest.approx(0.0)
    # Constant good maps (a binary detector): two FPR levels only, 0 and 1.
    with pytest.raises(UndefinedMetric, match="no FPR levels between"):
        aupimo(masks.astype(np.float32), masks, labels, (0.01, 0.1))


def test_value_is_the_mean_over_defective_images():
    maps, masks, labels = random_case(5)
    result = aupimo_per_image(maps, masks, labels, (0.01, 0.1))
    assert np.isnan(result.per_image[labels == 0]).all()
    assert np.isfinite(result.per_image[labels == 1]).all()
    assert result.mean == pytest.approx(result.per_image[labels == 1].mean())
    data = EvalData(labels=labels, scores=np.zeros(6), maps=maps, masks=masks, threshold=0.5, defect_types=[""] * 6)
    with pytest.raises(UndefinedMetric, match="at least 100,000"):  # 432 good pixels
        pixel_aupimo(data)


def test_default_bounds_on_full_size_maps():
    rng = np.random.default_rng(0)
    maps = rng.random((4, 256, 256)).astype(np.float32)
    masks = np.zeros(maps.shape, bool)
    masks[2:, 100:140, 100:140] = True
    maps[2:, 100:140, 100:140] += np.float32(0.9999)  # above all but a few good pixels
    result = aupimo_per_image(maps, masks, np.array([0, 0, 1, 1]))
    assert 1.3e5 * 1e-5 < result.points < 1.3e5 * 1e-4 + 2
    assert result.fpr_range[0] == pytest.approx(1 / 131072)
    assert 0.5 < result.mean <= 1.0


def test_defective_image_with_empty_mask_is_skipped_and_counted():
    maps, masks, labels = random_case(1)
    masks[4] = False
    result = aupimo_per_image(maps, masks, labels, (0.01, 0.1))
    assert result.skipped == 1 and math.isnan(result.per_image[4])
    assert np.isfinite(result.per_image[[3, 5]]).all()
    masks[3:] = False
    with pytest.raises(UndefinedMetric, match="non-empty mask"):
        aupimo_per_image(maps, masks, labels, (0.01, 0.1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no masks", "no pixel ground truth"),
        ("no good image", "no good test image"),
        ("constant good maps", "no FPR levels between"),
        ("NaN", "NaN or infinite"),
    ],
)
def test_undefined_cases(change, message):
    maps, masks, labels = random_case(2)
    if change == "no masks":
        masks = None
    elif change == "no good image":
        labels = np.ones_like(labels)
    elif change == "constant good maps":
        maps[labels == 0] = 0.5
    else:
        maps[0, 0, 0] = np.nan
    with pytest.raises(UndefinedMetric, match=message):
        aupimo_per_image(maps, masks, labels, (0.01, 0.1))


def test_bad_bounds_and_shapes_are_errors():
    maps, masks, labels = random_case(2)
    with pytest.raises(ValueError, match="0 < lower < upper"):
        aupimo_per_image(maps, masks, labels, (0.1, 0.01))
    with pytest.raises(ValueError, match="must be"):
        aupimo_per_image(maps, masks, labels[:3], (0.01, 0.1))


# --- parity with anomalib 2.7.0 (anomalib.metrics.pimo) -----------------------------


def integer_case(seed):
    """Maps of whole numbers 0..M (M the highest good score), so that anomalib's
    M + 1 evenly spaced thresholds are exactly every value: its curve is then the
    exact one, and only the definitions are compared."""
    rng = np.random.default_rng(seed)
    n_good, n_bad, size = 2, 4, 256  # 131,072 good pixels: FPR 1e-5 is 1.3 of them
    labels = np.array([0] * n_good + [1] * n_bad)
    maps = np.floor(1000 * rng.exponential(size=(n_good + n_bad, size, size)))
    masks = np.zeros(maps.shape, bool)
    for i in range(n_good, n_good + n_bad):
        y, x = rng.integers(0, size - 40, size=2)
        masks[i, y : y + 30, x : x + 40] = True
        # defect scores spread over the good pixels' top tail, different per image
        maps[i][masks[i]] = np.floor(1000 * (rng.exponential(size=1200) + 2.5 * i - 1))
    maps[0, 0, 0] = 0
    return maps, masks, labels


@pytest.mark.slow  # importing anomalib takes seconds
def test_matches_anomalib():
    functional = pytest.importorskip("anomalib.metrics.pimo.functional", reason="anomalib is not installed")
    torch = pytest.importorskip("torch")
    maps, masks, labels = integer_case(0)
    top = int(maps[labels == 0].max())
    for bounds in ((1e-5, 1e-4), (1e-4, 1e-2)):
        *_, theirs, _ = functional.aupimo_scores(
            torch.from_numpy(maps), torch.from_numpy(masks), num_thresholds=top + 1, fpr_bounds=bounds
        )
        ours = aupimo_per_image(maps, masks, labels, bounds).per_image
        np.testing.assert_allclose(ours[labels == 1], theirs.numpy()[labels == 1], atol=1e-4)
        assert np.isnan(theirs.numpy()[labels == 0]).all() and np.isnan(ours[labels == 0]).all()
        bad = ours[labels == 1]
        assert np.unique(bad.round(3)).size >= 3 and ((0.1 < bad) & (bad < 0.9)).any()  # not all 0 or 1


@pytest.mark.slow  # importing anomalib takes seconds
def test_close_to_anomalib_default_thresholds_on_float_maps():
    # anomalib's default 300,000 thresholds on continuous float32 maps approach the
    # exact curve: within 1e-4 (measured 4e-6 on 20 such maps).
    functional = pytest.importorskip("anomalib.metrics.pimo.functional", reason="anomalib is not installed")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 1])
    maps = rng.normal(size=(3, 320, 320)).astype(np.float32)  # 102,400 good pixels
    masks = np.zeros(maps.shape, bool)
    masks[1:, 50:90, 60:110] = True
    for i, shift in ((1, 2.5), (2, 3.5)):
        maps[i][masks[i]] += np.float32(shift)
    theirs = functional.aupimo_scores(torch.from_numpy(maps), torch.from_numpy(masks))[4].numpy()
    ours = aupimo_per_image(maps, masks, labels).per_image
    np.testing.assert_allclose(ours[1:], theirs[1:], atol=1e-4)
    assert ((0.05 < ours[1:]) & (ours[1:] < 0.95)).all()
