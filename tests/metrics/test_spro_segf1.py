"""sPRO / AUsPRO (MVTec LOCO) and SegF1 (MVTec AD 2) against brute-force references
written from the papers' definitions, region loading from LOCO-style masks, and the
cases where each is undefined."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from iadbench.errors import DatasetError, UndefinedMetric
from iadbench.metrics.segf1 import pixel_f1, seg_f1
from iadbench.metrics.spro import auspro, load_regions, spro_curve
from iadbench.types import DefectRegion, EvalData, RegionMask, Sample

# --- references: loops over pixels and thresholds, nothing shared with the code under test


def reference_f1(maps, masks, threshold) -> float:
    tp = fp = fn = 0
    for amap, mask in zip(maps, masks):
        for value, truth in zip(amap.ravel().tolist(), mask.ravel().tolist()):
            flagged = value > threshold
            tp += flagged and truth
            fp += flagged and not truth
            fn += (not flagged) and truth
    return 2 * tp / (2 * tp + fp + fn)


def reference_spro_points(maps, labels, regions):
    """(fpr, spro) at every distinct value, thresholds descending, from (0, 0)."""
    good = [v for amap, y in zip(maps, labels) if y == 0 for v in amap.ravel().tolist()]
    region_values = [[maps[r.image].ravel()[p] for p in r.pixels.tolist()] for r in regions]
    candidates = sorted(set(good) | {v for vals in region_values for v in vals}, reverse=True)
    points = [(0.0, 0.0)]
    for t in candidates:
        fpr = sum(v >= t for v in good) / len(good)
        total = 0.0
        for r, vals in zip(regions, region_values):
            hits = sum(v >= t for v in vals)
            total += min(hits / (r.saturation * len(vals)), 1.0)
        points.append((fpr, total / len(regions)))
    return points


def reference_area(points, max_fpr) -> float:
    """Trapezoids under the points up to max_fpr, the last one cut by interpolation."""
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            x1 = max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    return area / max_fpr


def random_case(seed, n=4, h=6, w=7):
    rng = np.random.default_rng(seed)
    maps = rng.random((n, h, w)).astype(np.float32)
    maps[0, 0, :3] = maps[1, 2, :3]  # ties across images and regions
    maps = np.round(maps * 20) / 20  # many ties
    labels = np.array([0, 0, 1, 1])
    regions = [
        DefectRegion(image=2, pixels=np.array([0, 1, 2, 7, 8, 9]), saturation=0.5),
        DefectRegion(image=2, pixels=np.array([8, 9, 10]), saturation=1.0),  # overlaps the first
        DefectRegion(image=3, pixels=np.arange(20, 40), saturation=0.2),
    ]
    for r in regions:  # defect pixels score higher on average
        maps[r.image].reshape(-1)[r.pixels] += 0.3
    return maps, labels, regions


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spro_curve_matches_the_brute_force_reference(seed):
    maps, labels, regions = random_case(seed)
    fpr, spro, thresholds = spro_curve(maps, labels, regions)
    points = reference_spro_points(maps, labels, regions)
    assert len(fpr) == len(points)
    np.testing.assert_allclose(fpr, [p[0] for p in points], atol=1e-12)
    np.testing.assert_allclose(spro, [p[1] for p in points], atol=1e-12)
    assert np.all(np.diff(thresholds) < 0)
    for max_fpr in (0.05, 0.3, 1.0):
        assert auspro(maps, labels, regions, max_fpr) == pytest.approx(reference_area(points, max_fpr), abs=1e-12)


def test_saturation_makes_a_half_found_region_count_in_full():
    maps = np.zeros((2, 4, 4), np.float32)
    labels = np.array([0, 1])
    region = np.arange(8)  # the top half of image 1
    maps[1].reshape(-1)[:4] = 1.0  # half of it found, nothing else flagged
    half = [DefectRegion(image=1, pixels=region, saturation=0.5)]
    full = [DefectRegion(image=1, pixels=region, saturation=1.0)]
    fpr, spro, _ = spro_curve(maps, labels, half)
    assert (fpr[1], spro[1]) == (0.0, 1.0)  # at threshold 1: no false positive, saturated
    assert auspro(maps, labels, half) == pytest.approx(1.0)
    fpr, spro, _ = spro_curve(maps, labels, full)
    assert (fpr[1], spro[1]) == (0.0, 0.5)
    # 0.5 until every pixel is flagged at once (FPR 0 -> 1, sPRO 0.5 -> 1): the point at
    # FPR 0.05 is interpolated, sPRO 0.525, so the area is the mean of 0.5 and 0.525
    assert auspro(maps, labels, full) == pytest.approx(0.5125)


def test_spro_is_undefined_without_regions_or_good_images():
    maps = np.random.default_rng(0).random((2, 3, 3)).astype(np.float32)
    region = [DefectRegion(image=1, pixels=np.array([0, 1]), saturation=1.0)]
    with pytest.raises(UndefinedMetric, match="per-region ground truth"):
        auspro(maps, np.array([0, 1]), None)
    with pytest.raises(UndefinedMetric, match="no defect region"):
        auspro(maps, np.array([0, 1]), [])
    with pytest.raises(UndefinedMetric, match="no good test image"):
        auspro(maps, np.array([1, 1]), region)
    with pytest.raises(UndefinedMetric, match="all anomaly map values are equal"):
        auspro(np.ones((2, 3, 3), np.float32), np.array([0, 1]), region)


@pytest.mark.parametrize("seed", [0, 1])
def test_seg_f1_matches_the_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    maps = rng.random((3, 5, 6)).astype(np.float32)
    masks = rng.random((3, 5, 6)) > 0.7
    masks[0] = False  # a good image: its flagged pixels are false positives
    maps = np.round(maps * 10) / 10  # float32 values near the thresholds: compared exactly, in float64
    for threshold in (0.3, 0.5, 0.8):
        data = EvalData(labels=np.array([0, 1, 1]), scores=np.zeros(3), maps=maps, masks=masks, threshold=0.0,
                        defect_types=["good", "x", "x"], pixel_threshold=threshold)
        assert seg_f1(data) == pytest.approx(reference_f1(maps, masks, threshold), abs=1e-12)


def test_seg_f1_is_undefined_without_masks_threshold_or_defects():
    maps = np.random.default_rng(0).random((2, 3, 3)).astype(np.float32)
    masks = np.zeros((2, 3, 3), bool)
    masks[1, 0, 0] = True
    with pytest.raises(UndefinedMetric, match="no pixel threshold"):
        pixel_f1(maps, masks, None)
    with pytest.raises(UndefinedMetric, match="no pixel threshold"):
        pixel_f1(maps, masks, float("nan"))
    with pytest.raises(UndefinedMetric, match="no pixel ground truth"):
        pixel_f1(maps, None, 0.5)
    with pytest.raises(UndefinedMetric, match="no defective pixel"):
        pixel_f1(maps, np.zeros_like(masks), 0.5)
    assert pixel_f1(maps, masks, 2.0) == 0.0  # nothing flagged: no hit


def _mask(path, size, box, value):
    arr = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def test_load_regions_unions_masks_and_resolves_saturation_by_pixel_value(tmp_path):
    size = (40, 20)  # width, height of the native images
    image = tmp_path / "img.png"
    Image.new("RGB", size).save(image)
    rows = ((255, 0.5, True), (254, 100.0, False), (253, 1000.0, False))
    a = _mask(tmp_path / "gt" / "000.png", size, (0, 0, 20, 10), 255)  # 200 px, relative 0.5
    b = _mask(tmp_path / "gt" / "001.png", size, (20, 10, 40, 20), 254)  # 200 px, 100 px absolute
    c = _mask(tmp_path / "gt" / "002.png", size, (30, 0, 35, 4), 253)  # 20 px < 1000: capped at the area
    samples = [
        Sample(path=image),
        Sample(path=image, label=1, defect_type="logical_anomalies", mask_path=a,
               regions=tuple(RegionMask(p, rows) for p in (a, b, c))),
    ]
    masks, regions = load_regions(samples, (10, 20))  # half size
    assert masks.shape == (2, 10, 20) and not masks[0].any()
    # nearest-neighbour halving keeps every second pixel: the 5x4 region becomes 2x2
    assert masks[1].sum() == 50 + 50 + 4  # the three regions, resized, in one mask
    assert [r.image for r in regions] == [1, 1, 1]
    assert [r.saturation for r in regions] == pytest.approx([0.5, 0.5, 1.0])
    assert [r.pixels.size for r in regions] == [50, 50, 4]
    # a centre crop keeping half of each side (the window x 10..29, y 5..14 of 40x20):
    # the two big regions keep a 10x5 corner each, the small one is cropped away
    masks, regions = load_regions(samples, (10, 20), crop=0.5)
    assert [r.pixels.size for r in regions] == [50, 50] and masks[1].sum() == 100
    assert masks[1][:5, :10].all() and masks[1][5:, 10:].all()

    unknown = _mask(tmp_path / "gt" / "003.png", size, (0, 0, 4, 4), 7)
    bad = [Sample(path=image, label=1, mask_path=unknown, regions=(RegionMask(unknown, rows),))]
    with pytest.raises(DatasetError, match="pixel value 7"):
        load_regions(bad, (10, 20))
