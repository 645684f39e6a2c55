"""AUPRO: the area under the per-region-overlap (PRO) curve up to a false-positive rate.

For a threshold t (a pixel is predicted defective when its score >= t):

- PRO(t) is the mean, over every connected defect region of every test image
  (8-connectivity), of the fraction of that region's pixels predicted defective;
- FPR(t) is the fraction of all normal pixels of all test images predicted
  defective, good images included (their false alarms count).

The curve is truncated at ``max_fpr`` (0.3 by default, as in Bergmann et al.), the
value there linearly interpolated, integrated with the trapezoid rule and divided by
``max_fpr`` so that a perfect detector scores 1.

Exact and vectorised: PRO(t) is a sum over pixels with score >= t of the weight
1 / (number of regions * size of the pixel's region), so one descending sort of all
pixels and two cumulative sums give the curve at every distinct score at once.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from iadbench.metrics.pixel import pixel_inputs
from iadbench.types import EvalData

DEFAULT_MAX_FPR = 0.3

# Joins the 8 neighbours within an image and never links one image to the next.
_STRUCTURE_8 = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE_8[1] = True


def label_regions(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected defect regions of (N, H, W) masks, labelled 1..n per stack (0 = normal)."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim == 2:
        masks = masks[None]
    regions, n = ndimage.label(masks, structure=_STRUCTURE_8)
    return regions, int(n)


def pro_curve(
    maps: np.ndarray, masks: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, pro, thresholds) at every distinct map value, thresholds descending.

    The first point is (0, 0) at threshold +inf, the last (1, 1) at the lowest score.
    """
    maps, masks = pixel_inputs(maps, masks)
    regions, n_regions = label_regions(masks)
    n_normal = masks.size - int(np.count_nonzero(masks))

    sizes = np.bincount(regions.ravel(), minlength=n_regions + 1).astype(np.float64)
    weight = np.zeros(n_regions + 1)
    weight[1:] = 1.0 / (n_regions * sizes[1:])

    scores = maps.ravel()
    order = np.argsort(scores, kind="stable")[::-1]
    ranked = scores[order]
    pro = np.cumsum(weight[regions.ravel()[order]])
    del regions
    fp = np.cumsum(~masks.ravel()[order])
    del order

    # Pixels with equal scores cross the threshold together: keep each tie group's end.
    ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), ranked.size - 1]
    fpr = np.r_[0.0, fp[ends] / n_normal]
    pro = np.r_[0.0, np.clip(pro[ends], 0.0, 1.0)]
    thresholds = np.r_[np.inf, ranked[ends].astype(np.float64)]
    return fpr, pro, thresholds


def truncated_area(fpr: np.ndarray, pro: np.ndarray, max_fpr: float = DEFAULT_MAX_FPR) -> float:
    """Trapezoid area under (fpr, pro) for fpr in [0, max_fpr], divided by max_fpr.

    ``fpr`` must be non-decreasing and end at or beyond ``max_fpr``.
    """
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must lie in (0, 1], got {max_fpr}")
    fpr = np.asarray(fpr, dtype=np.float64)
    pro = np.asarray(pro, dtype=np.float64)
    if fpr[-1] < max_fpr:
        raise ValueError(f"the curve stops at FPR {fpr[-1]:g}, before {max_fpr:g}")
    keep = int(np.searchsorted(fpr, max_fpr, side="right"))  # fpr[:keep] <= max_fpr
    x, y = fpr[:keep], pro[:keep]
    if x[-1] < max_fpr:
        # fpr[keep - 1] < max_fpr < fpr[keep]: interpolate the point at max_fpr.
        x0, x1, y0, y1 = fpr[keep - 1], fpr[keep], pro[keep - 1], pro[keep]
        x = np.r_[x, max_fpr]
        y = np.r_[y, y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)]
    return float(np.trapezoid(y, x) / max_fpr)


def aupro(
    maps: np.ndarray, masks: np.ndarray | None, max_fpr: float = DEFAULT_MAX_FPR
) -> float:
    """Normalised area under the PRO curve up to ``max_fpr`` (1 is perfect)."""
    fpr, pro, _ = pro_curve(maps, masks)
    return truncated_area(fpr, pro, max_fpr)


def pixel_aupro(data: EvalData) -> float:
    return aupro(data.maps, data.masks, DEFAULT_MAX_FPR)
