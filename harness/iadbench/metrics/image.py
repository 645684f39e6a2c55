"""Image-level ranking metrics: AUROC, average precision and the F1-max oracle.

Array functions take (labels, scores); the ``image_*`` functions take EvalData and
are what the metrics plugin registers.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from iadbench.metrics._checks import image_inputs, require_both_classes, require_varied
from iadbench.types import EvalData


def _ranked(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, s = image_inputs(labels, scores)
    require_both_classes(y)
    require_varied(s, "image scores")
    return y, s


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of image scores (1 = defective ranks first)."""
    y, s = _ranked(labels, scores)
    return float(roc_auc_score(y, s))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (step-wise area under precision-recall) of image scores."""
    y, s = _ranked(labels, scores)
    return float(average_precision_score(y, s))


def best_f1(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(F1-max, its threshold): the best F1 over every threshold ``score >= t``.

    The threshold is chosen on the very test set it is scored on, so this is an
    oracle upper bound, not what a deployed detector would reach.
    """
    y, s = _ranked(labels, scores)
    precision, recall, thresholds = precision_recall_curve(y, s)
    # The last point (precision 1, recall 0) has no threshold; F1 there is 0 anyway.
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    return best_f1(labels, scores)[0]


def image_auroc(data: EvalData) -> float:
    return auroc(data.labels, data.scores)


def image_ap(data: EvalData) -> float:
    return average_precision(data.labels, data.scores)


def image_f1_max(data: EvalData) -> float:
    return f1_max(data.labels, data.scores)


def ap_resamples(labels: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Average precision of each bootstrap resample (rows of ``counts``: draws per
    image), exactly as ``average_precision`` gives on the resampled images: one
    descending sort, then weighted true and false positives at each distinct score."""
    y, s = _ranked(labels, scores)
    order = np.argsort(-s, kind="stable")
    hit = y[order].astype(bool)
    weights = np.asarray(counts, dtype=np.float64)[:, order]
    last = np.r_[np.flatnonzero(np.diff(s[order])), s.size - 1]  # the last image of each tie group
    tp = np.cumsum(weights * hit, axis=1)[:, last]
    fp = np.cumsum(weights * ~hit, axis=1)[:, last]
    recall_gain = np.diff(tp, axis=1, prepend=0.0) / tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
    return (recall_gain * precision).sum(axis=1)


def image_ap_resamples(data: EvalData, counts: np.ndarray) -> np.ndarray:
    return ap_resamples(data.labels, data.scores, counts)


image_ap_resamples.method = "exact, from one ranking"
