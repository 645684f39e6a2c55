"""SegF1: MVTec AD 2's segmentation score, the pixel F1 of thresholded anomaly maps.

Every pixel of every test image (good images too) is one prediction: defective when
its map value is strictly above the pixel threshold, the way an image score above the
image threshold is a defect verdict. The counts are pooled over the whole test set
before F1 = 2 TP / (2 TP + FP + FN) is taken, as Heckler-Kram et al. (MVTec AD 2, 2025)
do, so large defects weigh more than small ones.

The threshold is the model's calibrated pixel threshold (``EvalData.pixel_threshold``),
fixed on good training images' maps and never on the test set: SegF1 measures a
deployable segmentation, not an oracle one.
"""

from __future__ import annotations

import math

import numpy as np

from iadbench.errors import UndefinedMetric
from iadbench.metrics._checks import bool_masks, require_finite
from iadbench.types import EvalData

__all__ = ["pixel_f1", "seg_f1"]


def pixel_f1(maps: np.ndarray, masks: np.ndarray | None, pixel_threshold: float | None) -> float:
    """Pooled pixel F1 of ``maps > pixel_threshold`` against ``masks`` (N, H, W)."""
    if pixel_threshold is None or not math.isfinite(pixel_threshold):
        raise UndefinedMetric("no pixel threshold (too few good images to calibrate one)")
    if masks is None:
        raise UndefinedMetric("no pixel ground truth (the dataset has no masks)")
    maps, masks = np.asarray(maps), bool_masks(masks)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} must both be (N, H, W)")
    if maps.size == 0:
        raise UndefinedMetric("no test images")
    if not masks.any():
        raise UndefinedMetric("no defective pixel in the ground-truth masks")
    require_finite(maps, "anomaly map values")
    level = np.float64(pixel_threshold)  # float32 maps compared in float64, exactly
    tp = fp = fn = 0
    for amap, mask in zip(maps, masks):  # one image at a time: no test-set-sized temporaries
        flagged = amap > level
        hits = int(np.count_nonzero(flagged & mask))
        tp += hits
        fp += int(np.count_nonzero(flagged)) - hits
        fn += int(np.count_nonzero(mask)) - hits
    return 2.0 * tp / (2.0 * tp + fp + fn)


def seg_f1(data: EvalData) -> float:
    return pixel_f1(data.maps, data.masks, data.pixel_threshold)
