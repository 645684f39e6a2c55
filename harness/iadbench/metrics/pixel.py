"""Pixel-level ranking metrics over every pixel of every test image (good images too).

No subsampling: exact AUROC and average precision over all pixels, with the values
scikit-learn's ``roc_auc_score`` and ``average_precision_score`` give (tied scores
are one threshold). Both come from one shared ranking of the pixels
(``iadbench.metrics._ranking``), which AUPRO reuses: a plain sort of the scores and
integer counts: on 5.4M pixels (83 images of 256x256, 2 cores) the three metrics
together take about 0.25-0.6 s, where scikit-learn and a full argsort took 5-12 s.
"""

from __future__ import annotations

import numpy as np

from iadbench.metrics._checks import pixel_inputs
from iadbench.metrics._ranking import rank_pixels
from iadbench.types import EvalData

__all__ = ["auroc", "average_precision", "pixel_ap", "pixel_auroc", "pixel_inputs"]


def auroc(maps: np.ndarray, masks: np.ndarray | None) -> float:
    return float(rank_pixels(maps, masks).roc_auc())


def average_precision(maps: np.ndarray, masks: np.ndarray | None) -> float:
    return float(rank_pixels(maps, masks).average_precision())


def pixel_auroc(data: EvalData) -> float:
    return auroc(data.maps, data.masks)


def pixel_ap(data: EvalData) -> float:
    return average_precision(data.maps, data.masks)
