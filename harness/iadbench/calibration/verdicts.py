"""What a threshold does on the test set: the false-alarm rate it achieved on good
images against its target, the defects it caught, and the same at fixed false-alarm
budgets whose thresholds come from the calibration scores (never from the test set).

Each rate is a count over test images at a threshold fixed before the test set was
seen, so its uncertainty is binomial: a Clopper-Pearson interval (exact, never narrower
than its confidence promises) at 95%, the level of the leaderboards' bootstrap
intervals. A bootstrap would add nothing here: the threshold is not re-estimated from
the test images, only counted against them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: False-alarm budgets every cell reports recall at (thresholds from calibration).
BUDGETS = (0.01, 0.05, 0.10)
CONFIDENCE = 0.95


def proportion(k: int, n: int, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """k of n with its Clopper-Pearson interval; value and ends None when n is 0."""
    from iadbench.calibration.tail import clopper_pearson

    if n <= 0:
        return {"value": None, "low": None, "high": None, "k": int(k), "n": int(n)}
    low, high = clopper_pearson(k, n, confidence)
    return {"value": k / n, "low": low, "high": high, "k": int(k), "n": int(n)}


def rates_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Achieved false-alarm rate on good test images and recall on defective ones at
    ``threshold`` (a score strictly above it is a defect verdict)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if not math.isfinite(threshold):
        return {"fpr": proportion(0, 0), "recall": proportion(0, 0)}
    flagged = scores > threshold
    return {
        "fpr": proportion(int(flagged[~labels].sum()), int((~labels).sum())),
        "recall": proportion(int(flagged[labels].sum()), int(labels.sum())),
    }


def verdicts(labels: np.ndarray, scores: np.ndarray, threshold: float, target_fpr: float | None,
             calibration_scores: np.ndarray | None, budgets: tuple[float, ...] = BUDGETS) -> dict[str, Any]:
    """The record's ``verdicts`` section: the run's threshold against its target, then
    each budget's threshold (from ``calibration_scores``) and what it did on the test set."""
    from iadbench.calibration.tail import threshold_for_rate
    from iadbench.errors import UndefinedMetric

    out: dict[str, Any] = {"target_fpr": target_fpr, "confidence": CONFIDENCE, **rates_at(labels, scores, threshold)}
    rows: dict[str, Any] = {}
    cal = None if calibration_scores is None else np.asarray(calibration_scores, dtype=np.float64)
    for budget in budgets:
        key = f"{budget:g}"
        if cal is None or cal.size == 0:
            rows[key] = {"error": "no calibration scores"}
            continue
        try:
            estimate = threshold_for_rate(cal, budget)
        except UndefinedMetric as exc:
            rows[key] = {"error": str(exc)}
            continue
        rows[key] = {"threshold": estimate.to_dict(), **rates_at(labels, scores, estimate.value)}
    out["budgets"] = rows
    return out
