"""Input checks shared by the metric modules.

A shape or label mistake is a harness bug and raises ValueError; an input for which
the metric has no meaning (one class only, constant scores) raises UndefinedMetric
with a reason a reader of the leaderboard can understand.
"""

from __future__ import annotations

import numpy as np

from iadbench.errors import UndefinedMetric


def image_inputs(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated (labels as int8 0/1, scores as float64), both 1-D of one length."""
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in length")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (good) or 1 (defective)")
    if y.size == 0:
        raise UndefinedMetric("no test images")
    require_finite(s, "image scores")
    return y.astype(np.int8), s


def bool_masks(masks: np.ndarray) -> np.ndarray:
    """Masks as bool (0/1 or 0/255 masks are accepted: any value > 0 is defective)."""
    masks = np.asarray(masks)
    return masks if masks.dtype == bool else masks > 0


def pixel_inputs(maps: np.ndarray, masks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Validated (maps, masks as bool) of one shape (N, H, W); maps keep their float
    dtype (float32 maps are not copied to float64: millions of pixels)."""
    if masks is None:
        raise UndefinedMetric("no pixel ground truth (the dataset has no masks)")
    maps = np.asarray(maps)
    if not np.issubdtype(maps.dtype, np.floating):
        maps = maps.astype(np.float32)
    masks = np.asarray(masks)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} must both be (N, H, W)")
    masks = bool_masks(masks)
    if maps.size == 0:
        raise UndefinedMetric("no test images")
    n_bad = int(np.count_nonzero(masks))
    if n_bad == 0:
        raise UndefinedMetric("no defective pixel in the ground-truth masks")
    if n_bad == masks.size:
        raise UndefinedMetric("no normal pixel in the ground-truth masks")
    require_finite(maps, "anomaly map values")
    require_varied(maps, "anomaly map values")
    return maps, masks


def require_finite(values: np.ndarray, what: str) -> None:
    bad = values.size - int(np.isfinite(values).sum())
    if bad:
        raise UndefinedMetric(f"{bad} of the {what} are NaN or infinite")


def require_both_classes(y: np.ndarray, unit: str = "test image") -> None:
    n_bad = int(np.count_nonzero(y))
    if n_bad == 0:
        raise UndefinedMetric(f"no defective {unit}")
    if n_bad == y.size:
        raise UndefinedMetric(f"no good {unit}")


def require_varied(values: np.ndarray, what: str) -> None:
    # sklearn would return AUROC 0.5 here; a detector that outputs one constant has
    # not ranked anything, so the metric says nothing about it.
    if values.size and values.min() == values.max():
        raise UndefinedMetric(f"all {what} are equal ({float(values.flat[0]):g})")
