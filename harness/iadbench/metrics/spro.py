"""sPRO and AUsPRO: MVTec LOCO's saturated per-region overlap (Bergmann et al., IJCV 2022).

Each annotated defect region r (one mask file of a LOCO image, not a connected
component) has a saturation s_r, the fraction of its pixels that counts as finding it
in full. At a threshold t (a pixel is flagged when its value is >= t, as in AUPRO):

- sPRO(t) = mean over every region of min(flagged pixels of r / (s_r * |r|), 1);
- FPR(t) = the fraction of the good test images' pixels flagged. LOCO measures false
  positives on anomaly-free images only: a logical anomaly's region need not cover
  every pixel that makes the image wrong, so pixels of defective images are left out.

AUsPRO integrates sPRO over FPR in [0, 0.05] (trapezoids, the end point interpolated)
and divides by 0.05, so that a perfect detector scores 1 (iadbench.metrics.aupro).

Saturations come from each category's defects_config.json: relative ones are a fraction
of the region, absolute ones a pixel count at the native resolution, capped at the
region's area (a region smaller than its saturation saturates once found in full) and
turned into a fraction there, so that they survive the resize to the input size.

Exact and vectorised: region r's j-th highest pixel adds (min(j / k_r, 1) -
min((j - 1) / k_r, 1)) / R to sPRO, with k_r = s_r |r| and R regions, so one sort of
all region pixels and one cumulative sum give sPRO at every distinct value at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from iadbench.errors import DatasetError, UndefinedMetric
from iadbench.images import check_mask_size, decode_mask, resize_mask
from iadbench.metrics._checks import require_finite, require_varied
from iadbench.metrics.aupro import truncated_area
from iadbench.types import DefectRegion, EvalData, RegionMask, Sample

__all__ = ["DEFAULT_MAX_FPR", "auspro", "load_regions", "pixel_auspro", "region_saturation", "saturation_fraction", "spro_curve"]

DEFAULT_MAX_FPR = 0.05


def saturation_fraction(saturation: float, relative: bool, native_area: int) -> float:
    """A saturation as a fraction of its region's area, in (0, 1]."""
    if not saturation > 0:
        raise ValueError(f"a saturation must be positive, got {saturation}")
    if relative:
        return min(float(saturation), 1.0)
    return min(float(saturation), native_area) / native_area


def _region_values(path: Path) -> np.ndarray:
    """The mask's raw pixel values (H, W): a LOCO mask holds its defect type's value."""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img)
    except OSError as exc:
        raise DatasetError(f"cannot read region mask ({exc})", path) from None
    return arr.max(axis=2) if arr.ndim == 3 else arr


def region_saturation(region: RegionMask, values: np.ndarray) -> float:
    """The saturation fraction of ``region``, whose mask holds ``values`` (native size)."""
    inside = values[values > 0]
    if not region.saturations:
        return 1.0
    value = int(np.bincount(inside.astype(np.int64)).argmax())  # the region's value (its most common)
    for pixel_value, saturation, relative in region.saturations:
        if pixel_value == value:
            return saturation_fraction(saturation, relative, inside.size)
    known = ", ".join(str(row[0]) for row in region.saturations)
    raise DatasetError(f"region mask holds pixel value {value}, which no defect config names (known: {known})",
                       region.path)


def load_regions(
    samples: Sequence[Sample], size: tuple[int, int], crop: float = 1.0
) -> tuple[np.ndarray, list[DefectRegion]]:
    """(masks, regions) of a test list at ``size`` (height, width), cropped as the images
    are (iadbench.images.prepare_image): each image's mask is the union of its regions'
    masks (or its ``mask_path`` where it has no regions), and every region with at least
    one pixel left after the nearest-neighbour resize is a DefectRegion, scored on the
    pixels left. A region empty at its native size, or one too thin to survive the
    resize (or cropped away), cannot be scored and is left out."""
    masks = np.zeros((len(samples), *size), dtype=bool)
    regions: list[DefectRegion] = []
    for i, sample in enumerate(samples):
        if not sample.regions:
            if sample.mask_path is not None:
                check_mask_size(sample.path, sample.mask_path)
                masks[i] = resize_mask(decode_mask(sample.mask_path), size, crop)
            continue
        for region in sample.regions:
            check_mask_size(sample.path, region.path)
            values = _region_values(region.path)
            if not values.any():
                continue
            small = resize_mask(values > 0, size, crop)
            masks[i] |= small
            pixels = np.flatnonzero(small)
            if pixels.size:
                regions.append(DefectRegion(image=i, pixels=pixels, saturation=region_saturation(region, values)))
    return masks, regions


def spro_curve(
    maps: np.ndarray, labels: np.ndarray, regions: list[DefectRegion] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, spro, thresholds) at every distinct map value of the good images and the
    regions, thresholds descending; the first point is (0, 0) at +inf."""
    if regions is None:
        raise UndefinedMetric("no per-region ground truth (sPRO needs regions with saturations, e.g. MVTec LOCO)")
    if not regions:
        raise UndefinedMetric("no defect region in the test set")
    maps = np.asarray(maps)
    labels = np.asarray(labels).reshape(-1)
    if maps.ndim != 3 or len(labels) != len(maps):
        raise ValueError(f"maps {maps.shape} must be (N, H, W) with one label each ({labels.shape})")
    good = maps[labels == 0].reshape(-1)
    if good.size == 0:
        raise UndefinedMetric("no good test image (sPRO's false-positive rate is measured on good images)")
    flat = maps.reshape(len(maps), -1)
    values = [flat[r.image, r.pixels] for r in regions]
    region_values = np.concatenate(values).astype(np.float64)
    require_finite(good, "anomaly map values of good images")
    require_finite(region_values, "anomaly map values in defect regions")
    require_varied(np.r_[good, region_values], "anomaly map values")

    # Each region pixel's increment, by its rank within its region (highest first).
    increments = []
    for r, v in zip(regions, values):
        k = r.saturation * v.size
        j = np.arange(1, v.size + 1, dtype=np.float64)
        increments.append(np.minimum(j / k, 1.0) - np.minimum((j - 1) / k, 1.0))
    # Sorting each region's values descending pairs its j-th highest value with the
    # j-th increment; ties may pair either way, but every threshold takes a tie whole.
    ordered = np.concatenate([np.sort(v)[::-1] for v in values]).astype(np.float64)
    increments = np.concatenate(increments) / len(regions)
    order = np.argsort(-ordered, kind="stable")
    cumulative = np.r_[0.0, np.cumsum(increments[order])]
    region_sorted = np.sort(region_values)
    good_sorted = np.sort(good.astype(np.float64))

    thresholds = np.unique(np.r_[good_sorted, region_sorted])[::-1]
    n_region_at = region_sorted.size - np.searchsorted(region_sorted, thresholds, side="left")
    n_good_at = good_sorted.size - np.searchsorted(good_sorted, thresholds, side="left")
    spro = np.clip(cumulative[n_region_at], 0.0, 1.0)
    fpr = n_good_at / good_sorted.size
    return np.r_[0.0, fpr], np.r_[0.0, spro], np.r_[np.inf, thresholds]


def auspro(
    maps: np.ndarray, labels: np.ndarray, regions: list[DefectRegion] | None, max_fpr: float = DEFAULT_MAX_FPR
) -> float:
    """Normalised area under the sPRO curve up to ``max_fpr`` (1 is perfect)."""
    fpr, spro, _ = spro_curve(maps, labels, regions)
    return truncated_area(fpr, spro, max_fpr)


def pixel_auspro(data: EvalData) -> float:
    return auspro(data.maps, data.labels, data.regions, DEFAULT_MAX_FPR)
