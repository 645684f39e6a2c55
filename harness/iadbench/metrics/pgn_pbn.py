"""PGn and PBn: how many parts a line could presort with n% of the other class wrong
(Baitieva et al., "Beyond Academic Benchmarks", CVPR workshops 2025; anomalib's
``PGn``/``PBn``, whose definition this follows to the letter).

- PGn ("presorted good"): the true-negative rate when n% of the defective test images
  may be missed. The threshold is the n-quantile of the defective images' scores
  (linear interpolation); a good image counts as presorted when its score is strictly
  below it.
- PBn ("presorted bad"): the true-positive rate when n% of the good test images may be
  flagged. The threshold is the (1 - n)-quantile of the good images' scores; a
  defective image counts when its score is strictly above it.

Both thresholds are read off the test set's own labelled scores: like AUROC these are
points of the ROC curve (TNR at a fixed FNR, TPR at a fixed FPR), not the outcome of a
threshold a line could have fixed beforehand (that is ``recall`` and ``fpr`` at the
calibrated threshold).
"""

from __future__ import annotations

import numpy as np

from iadbench.errors import UndefinedMetric
from iadbench.metrics._checks import image_inputs
from iadbench.types import EvalData

DEFAULT_RATE = 0.05


def _check_rate(rate: float, what: str) -> float:
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{what} must lie in [0, 1], got {rate}")
    return rate


def _classes(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(good scores, defective scores); UndefinedMetric where either is missing."""
    y, s = image_inputs(labels, scores)
    good, bad = s[y == 0], s[y == 1]
    if not good.size:
        raise UndefinedMetric("no good test image")
    if not bad.size:
        raise UndefinedMetric("no defective test image")
    return good, bad


def presorted_good(labels: np.ndarray, scores: np.ndarray, fnr: float = DEFAULT_RATE) -> float:
    """PGn: the fraction of good images strictly below the ``fnr``-quantile of the
    defective images' scores."""
    fnr = _check_rate(fnr, "fnr")
    good, bad = _classes(labels, scores)
    accept_below = np.quantile(bad, fnr)
    return float(np.count_nonzero(good < accept_below) / good.size)


def presorted_bad(labels: np.ndarray, scores: np.ndarray, fpr: float = DEFAULT_RATE) -> float:
    """PBn: the fraction of defective images strictly above the (1 - ``fpr``)-quantile
    of the good images' scores."""
    fpr = _check_rate(fpr, "fpr")
    good, bad = _classes(labels, scores)
    reject_above = np.quantile(good, 1.0 - fpr)
    return float(np.count_nonzero(bad > reject_above) / bad.size)


def pg5(data: EvalData) -> float:
    return presorted_good(data.labels, data.scores, 0.05)


def pb5(data: EvalData) -> float:
    return presorted_bad(data.labels, data.scores, 0.05)
