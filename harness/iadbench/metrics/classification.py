"""Image-level precision, recall, F1, accuracy and false-alarm rate at a fixed threshold.

The threshold comes from good training images' calibration scores
(``iadbench.calibration``), never from the test set; an image is predicted defective when ``score > threshold``.
Precision, recall and F1 describe the defective class, so they are undefined when
the test set holds no defective image; precision is also undefined when no image is
predicted defective (F1 is then 0: the detector found none of the defects).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from iadbench.errors import UndefinedMetric
from iadbench.metrics._checks import image_inputs
from iadbench.types import EvalData


def predict(scores: np.ndarray, threshold: float) -> np.ndarray:
    """1 where an image is predicted defective (score strictly above threshold)."""
    return (np.asarray(scores, dtype=np.float64) > threshold).astype(np.int8)


def _inputs(labels, scores, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    if threshold is None or not math.isfinite(float(threshold)):
        raise UndefinedMetric("no threshold could be fixed on good images' calibration scores")
    y, s = image_inputs(labels, scores)
    return y, predict(s, threshold)


def _need_defective(y: np.ndarray) -> None:
    if not y.any():
        raise UndefinedMetric("no defective test image")


def _checked(value: float) -> float:
    # The checks above rule out sklearn's zero-division cases; this is a backstop.
    if math.isnan(value):
        raise UndefinedMetric("zero division")
    return float(value)


def precision_at(labels, scores, threshold: float) -> float:
    y, pred = _inputs(labels, scores, threshold)
    _need_defective(y)
    if not pred.any():
        raise UndefinedMetric("no test image is predicted defective at the threshold")
    return _checked(precision_score(y, pred, zero_division=np.nan))


def recall_at(labels, scores, threshold: float) -> float:
    y, pred = _inputs(labels, scores, threshold)
    _need_defective(y)
    return _checked(recall_score(y, pred, zero_division=np.nan))


def f1_at(labels, scores, threshold: float) -> float:
    y, pred = _inputs(labels, scores, threshold)
    _need_defective(y)
    return _checked(f1_score(y, pred, zero_division=np.nan))


def false_alarm_rate_at(labels, scores, threshold: float) -> float:
    """Share of good test images predicted defective: what the threshold's false-alarm
    target promised, as achieved."""
    y, pred = _inputs(labels, scores, threshold)
    if y.all():
        raise UndefinedMetric("no good test image")
    return float(pred[y == 0].mean())


def accuracy_at(labels, scores, threshold: float) -> float:
    y, pred = _inputs(labels, scores, threshold)
    return float(accuracy_score(y, pred))


def precision(data: EvalData) -> float:
    return precision_at(data.labels, data.scores, data.threshold)


def recall(data: EvalData) -> float:
    return recall_at(data.labels, data.scores, data.threshold)


def f1(data: EvalData) -> float:
    return f1_at(data.labels, data.scores, data.threshold)


def f1_resamples(data: EvalData, counts: np.ndarray) -> np.ndarray:
    """F1 on each bootstrap resample, ``counts`` (B, N) the images' multiplicities: the
    predictions are fixed by the threshold, so each resample's F1 is 2 tp / (2 tp + fp +
    fn) from three weighted sums (sklearn's f1_score per resample cost ~4 ms, 4 s a
    cell). NaN where undefined: no threshold, no defective image."""
    try:
        y, pred = _inputs(data.labels, data.scores, data.threshold)
    except UndefinedMetric:
        return np.full(len(counts), np.nan)
    y, pred = y.astype(bool), pred.astype(bool)
    weights = np.asarray(counts, dtype=np.float64)
    tp, fp, fn = (weights[:, y & pred].sum(1), weights[:, ~y & pred].sum(1), weights[:, y & ~pred].sum(1))
    with np.errstate(invalid="ignore"):  # 0 / 0 where a resample holds no defective image
        return np.where(tp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)


f1_resamples.method = "exact, from weighted counts"


def false_alarm_rate(data: EvalData) -> float:
    return false_alarm_rate_at(data.labels, data.scores, data.threshold)


def accuracy(data: EvalData) -> float:
    return accuracy_at(data.labels, data.scores, data.threshold)
