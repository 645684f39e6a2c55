"""AUPIMO: the area under each defective image's per-image-overlap (PIMO) curve
(Bertoldo et al. 2024, "AUPIMO: Redefining visual anomaly detection benchmarks with
high speed and low tolerance").

For a threshold t (a pixel is predicted defective when its score >= t):

- the shared FPR(t) is the fraction of the good test images' pixels predicted
  defective (all images have one size, so it equals the mean of their per-image FPRs);
- the PIMO curve of a defective image is its own TPR(t): the fraction of its mask's
  pixels predicted defective.

AUPIMO integrates each image's TPR over log(FPR) between ``fpr_bounds`` (1e-5 and
1e-4 by default: a few false pixels per million) with the trapezoid rule, divided by
log(upper / lower) so that 1 is perfect. The metric's value is the mean over the
defective images; each image's own value is kept (``aupimo_per_image``).

The definition is anomalib's (``anomalib.metrics.pimo``, from the authors' reference
code) in its limit of infinitely many thresholds: anomalib takes 300,000 thresholds
spaced evenly between the good pixels' lowest and highest score; here every distinct
good-pixel score is one. As there, the integration runs between the achieved FPRs
closest to the bounds (not interpolated to them), and the point at FPR 0 is left out
(its log is -inf). Between two consecutive good-pixel scores u_k < u_{k-1} the FPR
stays at FPR(u_{k-1}) while the TPR rises to that of the threshold just above u_k, so
the trapezoid from FPR(u_{k-1}) to FPR(u_k) runs from TPR(> u_k) to TPR(>= u_k).

Only the good pixels above the upper bound's threshold matter: a partial sort finds
them, so the cost is a pass over the maps, not a full sort (tens of milliseconds for
100 maps of 256x256).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iadbench.errors import UndefinedMetric
from iadbench.metrics._checks import bool_masks, require_finite
from iadbench.types import EvalData

DEFAULT_FPR_BOUNDS = (1e-5, 1e-4)


@dataclass(frozen=True)
class AupimoResult:
    """Per-image AUPIMO and how it was integrated.

    ``per_image``: (N,) aligned with the test images; NaN for good images and for the
    ``skipped`` defective images (an empty mask has no TPR).
    ``fpr_range``: the achieved FPRs the integration ran between (closest to the bounds);
    ``points``: the distinct FPR levels within it (the curve's resolution).
    """

    per_image: np.ndarray
    fpr_bounds: tuple[float, float]
    fpr_range: tuple[float, float]
    points: int
    skipped: int

    @property
    def mean(self) -> float:
        """The metric: mean AUPIMO over the scored defective images."""
        return float(np.nanmean(self.per_image))


def _check_bounds(fpr_bounds: tuple[float, float]) -> tuple[float, float]:
    lower, upper = (float(b) for b in fpr_bounds)
    if not 0.0 < lower < upper <= 1.0:
        raise ValueError(f"fpr_bounds must satisfy 0 < lower < upper <= 1, got {fpr_bounds}")
    return lower, upper


def _closest(levels: np.ndarray, target: float) -> int:
    """Index of the level closest to ``target``; on a tie the higher one (anomalib's
    argmin over thresholds in ascending order picks the higher FPR first)."""
    distance = np.abs(levels - target)
    return int(np.flatnonzero(distance == distance.min())[-1])


def _good_levels(good: np.ndarray, upper: float) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds descending, FPR at each): every distinct good-pixel score from the
    highest down to the first whose FPR exceeds ``upper`` (so the closest level to it
    is among them)."""
    n = good.size
    top = min(n, int(np.floor(upper * n)) + 1)  # pixels above the last level needed
    cut = np.partition(good, n - top)[n - top]
    values = np.sort(good[good >= cut])[::-1]
    thresholds, first = np.unique(-values, return_index=True)  # distinct, descending
    counts = np.r_[first[1:], values.size]  # pixels >= each threshold
    return -thresholds, counts / n


def aupimo_per_image(
    maps: np.ndarray,
    masks: np.ndarray | None,
    labels: np.ndarray,
    fpr_bounds: tuple[float, float] = DEFAULT_FPR_BOUNDS,
) -> AupimoResult:
    """AUPIMO of every defective test image (label 1, non-empty mask).

    Raises UndefinedMetric where it has no meaning: no masks, no good or no defective
    image with a mask, too few good pixels to resolve the lower FPR bound, constant
    good-pixel scores.
    """
    lower, upper = _check_bounds(fpr_bounds)
    if masks is None:
        raise UndefinedMetric("no pixel ground truth (the dataset has no masks)")
    maps = np.asarray(maps)
    masks = bool_masks(masks)
    labels = np.asarray(labels).reshape(-1)
    if maps.ndim != 3 or maps.shape != masks.shape or labels.shape != maps.shape[:1]:
        raise ValueError(f"maps {maps.shape}, masks {masks.shape} and labels {labels.shape} must be (N, H, W) and (N,)")
    good = labels == 0
    if not good.any():
        raise UndefinedMetric("no good test image: AUPIMO's false-positive rate is measured on good images")
    scored = (labels == 1) & masks.any(axis=(1, 2))
    skipped = int(np.count_nonzero(labels == 1) - np.count_nonzero(scored))
    if not scored.any():
        raise UndefinedMetric("no defective test image with a non-empty mask")
    require_finite(maps, "anomaly map values")

    good_pixels = maps[good].reshape(-1)
    if good_pixels.size * lower < 1.0:
        raise UndefinedMetric(
            f"AUPIMO integrates from FPR {lower:g}, finer than one of the {good_pixels.size:,} pixels of "
            f"the good test images (needs at least {int(np.ceil(1 / lower)):,})"
        )
    thresholds, fpr = _good_levels(good_pixels, upper)
    # The achieved levels, FPR 0 (threshold above every good pixel) first.
    levels = np.r_[0.0, fpr]
    first, last = _closest(levels, lower), _closest(levels, upper)
    start, stop = max(first - 1, 0), last - 1  # into thresholds/fpr; FPR 0 is left out (log -inf)
    if stop <= start:
        raise UndefinedMetric(
            f"the good pixels' scores give no FPR levels between {lower:g} and {upper:g} "
            f"(closest achieved: {levels[first]:g} and {levels[last]:g})"
        )
    thresholds, fpr = thresholds[start : stop + 1], fpr[start : stop + 1]

    # Per image, how many defect pixels lie at or above / strictly above each threshold:
    # one histogram of all images' defect pixels over the ascending thresholds.
    ascending = thresholds[::-1].astype(np.float64)
    k = ascending.size
    defect_masks = masks[scored]
    image_of = np.nonzero(defect_masks)[0]
    defect = maps[scored][defect_masks].astype(np.float64)
    n_images = int(np.count_nonzero(scored))
    sizes = np.bincount(image_of, minlength=n_images).astype(np.float64)

    def tpr(side: str) -> np.ndarray:
        # bin = number of thresholds a pixel reaches (>=, side="right") or passes (>, "left")
        bins = np.searchsorted(ascending, defect, side=side)
        hist = np.bincount(image_of * (k + 1) + bins, minlength=n_images * (k + 1)).reshape(n_images, k + 1)
        reached = np.cumsum(hist[:, ::-1], axis=1)[:, :k]  # [:, j]: pixels reaching the j-th highest
        return reached / sizes[:, None]

    at_or_above, above = tpr("right"), tpr("left")  # (images, thresholds descending)
    log_fpr = np.log(fpr)
    width = np.diff(log_fpr)
    area = (width * (above[:, 1:] + at_or_above[:, 1:]) / 2).sum(axis=1)
    per_image = np.full(labels.shape, np.nan)
    per_image[scored] = np.clip(area / np.log(upper / lower), 0.0, 1.0)
    return AupimoResult(
        per_image=per_image,
        fpr_bounds=(lower, upper),
        fpr_range=(float(fpr[0]), float(fpr[-1])),
        points=int(fpr.size),
        skipped=skipped,
    )


def aupimo(
    maps: np.ndarray,
    masks: np.ndarray | None,
    labels: np.ndarray,
    fpr_bounds: tuple[float, float] = DEFAULT_FPR_BOUNDS,
) -> float:
    """Mean AUPIMO over the defective images (1 is perfect)."""
    return aupimo_per_image(maps, masks, labels, fpr_bounds).mean


def pixel_aupimo(data: EvalData) -> float:
    return aupimo(data.maps, data.masks, data.labels)
