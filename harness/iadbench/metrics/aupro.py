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
1 / (number of regions * size of the pixel's region) (0 for normal pixels), so the
pixel ranking shared with pixel AUROC and AP (``iadbench.metrics._ranking``: counts
of all and of defective pixels at every distinct score) and one cumulative sum over
the defective pixels give the curve at every distinct score at once.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from iadbench.metrics._checks import bool_masks
from iadbench.metrics._ranking import rank_pixels
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
    ranking = rank_pixels(maps, masks)  # validates; shared with pixel AUROC and AP
    regions, n_regions = label_regions(bool_masks(masks))
    # Region of each defective pixel, highest score first; weight 1 / (regions * size).
    region_of = regions.reshape(-1)[ranking.positives]
    del regions
    sizes = np.bincount(region_of, minlength=n_regions + 1).astype(np.float64)
    weight = np.zeros(n_regions + 1)
    weight[1:] = 1.0 / (n_regions * sizes[1:])
    # PRO at a threshold: the weights of the defective pixels at or above it, i.e. of
    # the first tps of them; normal pixels weigh 0 and would not change the sums.
    pro = np.r_[0.0, np.cumsum(weight[region_of])][ranking.tps]

    fpr = np.r_[0.0, ranking.fps / ranking.n_normal]
    pro = np.r_[0.0, np.clip(pro, 0.0, 1.0)]
    thresholds = np.r_[np.inf, ranking.thresholds.astype(np.float64)]
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
