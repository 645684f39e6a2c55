"""AUPRO against hand-computed curves and a slow brute-force reference."""

import math

import numpy as np
import pytest
from scipy import ndimage

from iadbench.errors import UndefinedMetric
from iadbench.metrics.aupro import aupro, label_regions, pro_curve, truncated_area


def brute_force_aupro(maps, masks, max_fpr=0.3):
    """The definition, written out: per-image 8-connected regions, every distinct
    threshold, explicit per-region overlap, segment-by-segment trapezoids."""
    regions = []
    for i in range(masks.shape[0]):
        lab, k = ndimage.label(masks[i], structure=np.ones((3, 3)))
        regions += [(i, lab == r) for r in range(1, k + 1)]
    normal = ~masks
    points = [(0.0, 0.0)]
    for t in sorted(np.unique(maps), reverse=True):
        pred = maps >= t
        fpr = (pred & normal).sum() / normal.sum()
        pro = np.mean([pred[i][r].sum() / r.sum() for i, r in regions])
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            x1 = max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    return area / max_fpr


def random_case(seed):
    rng = np.random.default_rng(seed)
    n, h, w = 4, 10, 12
    masks = np.zeros((n, h, w), bool)
    for i in range(1, n):  # image 0 stays normal: its false alarms must count
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, h - 3), rng.integers(0, w - 3)
            dy, dx = rng.integers(1, 4, size=2)
            masks[i, y : y + dy, x : x + dx] = True
    maps = rng.random((n, h, w)) + masks * rng.uniform(0.0, 0.8)
    if seed % 2:  # coarse values: many ties across normal and defective pixels
        maps = np.round(maps * 6) / 6
    return maps.astype(np.float32), masks


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force(seed):
    maps, masks = random_case(seed)
    for max_fpr in (0.3, 0.05, 1.0):
        assert aupro(maps, masks, max_fpr) == pytest.approx(
            brute_force_aupro(maps, masks, max_fpr), abs=1e-9
        )


def test_perfect_and_inverted_detectors():
    _, masks = random_case(3)
    assert aupro(masks.astype(np.float32), masks) == pytest.approx(1.0)
    assert aupro((~masks).astype(np.float32), masks) == pytest.approx(0.0)


def test_hand_computed_curve():
    # One 2-pixel region (scores .9, .5) and 10 normal pixels: one at .7, the rest low.
    maps = np.array([[[0.9, 0.5, 0.7, 0.0, 0.01, 0.02], [0.03, 0.04, 0.05, 0.06, 0.07, 0.08]]])
    masks = np.zeros_like(maps, dtype=bool)
    masks[0, 0, :2] = True
    fpr, pro, thr = pro_curve(maps, masks)
    np.testing.assert_allclose(fpr[:4], [0, 0, 0.1, 0.1])
    np.testing.assert_allclose(pro[:4], [0, 0.5, 0.5, 1.0])
    assert thr[0] == math.inf and thr[-1] == pytest.approx(0.0)
    assert fpr[-1] == 1.0 and pro[-1] == pytest.approx(1.0)
    # Area to 0.3: 0.1 * 0.5 + 0.2 * 1 = 0.25, normalised by 0.3.
    assert aupro(maps, masks) == pytest.approx(0.25 / 0.3)


def test_ties_and_interpolation_at_max_fpr():
    # Normal pixels .9 .2 .2 0 and a 1-pixel region at .2 (tied with two normals):
    # the curve jumps from (0.25, 0) straight to (0.75, 1); at FPR 0.3 PRO is 0.1.
    maps = np.array([[[0.9, 0.2, 0.2, 0.0, 0.2]]])
    masks = np.array([[[False, False, False, False, True]]])
    fpr, pro, _ = pro_curve(maps, masks)
    np.testing.assert_allclose(fpr, [0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(pro, [0, 0, 1, 1])
    assert aupro(maps, masks) == pytest.approx(0.05 * 0.1 / 2 / 0.3)


def test_normal_image_contributes_false_positives():
    defective = np.array([[0.9, 0.8, 0.1, 0.2]])
    region = np.array([[True, True, False, False]])
    alone = aupro(defective[None], region[None])
    assert alone == pytest.approx(1.0)
    # A good image with one hot pixel: 6 normal pixels now, the hot one first.
    normal = np.array([[0.95, 0.0, 0.0, 0.0]])
    maps = np.stack([defective, normal])
    masks = np.stack([region, np.zeros_like(region)])
    assert aupro(maps, masks) == pytest.approx((0.3 - 1 / 6) / 0.3)
    assert aupro(maps, masks) == pytest.approx(brute_force_aupro(maps, masks))


def test_regions_are_averaged_not_pixels():
    # Region A (1 px) fully found, region B (3 px) one third found at t = 0.8:
    # PRO = (1 + 1/3) / 2, not the pixel fraction 2/4.
    maps = np.array([[[0.9, 0.0, 0.8, 0.1, 0.1, 0.0, 0.05]]])
    masks = np.array([[[True, False, True, True, True, False, False]]])
    fpr, pro, thr = pro_curve(maps, masks)
    assert pro[thr == 0.8][0] == pytest.approx(2 / 3)
    assert fpr[thr == 0.8][0] == 0.0


def test_eight_connectivity_joins_diagonals():
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 1, 2] = True  # (0,0) touches (1,1) diagonally
    _, n = label_regions(masks)
    assert n == 1
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0] = 1.0
    fpr, pro, _ = pro_curve(maps, masks)
    # One 3-pixel region a third covered (4-connectivity would give (1 + 0) / 2).
    assert pro[1] == pytest.approx(1 / 3) and fpr[1] == 0.0


def test_regions_never_span_images():
    masks = np.zeros((2, 3, 3), bool)
    masks[0, 2, 1] = masks[1, 0, 1] = True  # same column, bottom of one / top of next
    assert label_regions(masks)[1] == 2


def test_truncated_area_rejects_bad_input():
    with pytest.raises(ValueError):
        truncated_area(np.array([0.0, 0.2]), np.array([0.0, 1.0]), 0.3)
    with pytest.raises(ValueError):
        truncated_area(np.array([0.0, 1.0]), np.array([0.0, 1.0]), 0.0)


@pytest.mark.parametrize(
    "masks, maps, reason",
    [
        (None, np.random.rand(2, 4, 4), "no masks"),
        (np.zeros((2, 4, 4), bool), np.random.rand(2, 4, 4), "no defective pixel"),
        (np.ones((2, 4, 4), bool), np.random.rand(2, 4, 4), "no normal pixel"),
        (np.eye(4, dtype=bool)[None], np.full((1, 4, 4), 0.3), "all anomaly map values are equal"),
        (np.eye(4, dtype=bool)[None], np.full((1, 4, 4), np.nan), "NaN"),
    ],
)
def test_undefined_cases(masks, maps, reason):
    with pytest.raises(UndefinedMetric, match=reason):
        aupro(maps, masks)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        aupro(np.random.rand(2, 4, 4), np.zeros((2, 4, 5), bool))
