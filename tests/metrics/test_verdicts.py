"""The record's verdicts: achieved false-alarm rate and recall, with exact intervals,
at the run's threshold and at budgets calibrated on good training images only."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from iadbench.calibration.tail import threshold_for_rate
from iadbench.calibration.verdicts import proportion, rates_at, verdicts
from iadbench.metrics.classification import false_alarm_rate_at


@pytest.mark.parametrize("k,n", [(0, 16), (3, 16), (16, 16), (7, 352)])
def test_intervals_are_clopper_pearson(k, n):
    got = proportion(k, n)
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert got["value"] == k / n
    assert got["low"] == pytest.approx(ref.low, abs=1e-9) and got["high"] == pytest.approx(ref.high, abs=1e-9)


def test_rates_count_scores_strictly_above_the_threshold():
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.5, 0.6, 0.9, 0.5, 0.7, 2.0])
    rates = rates_at(labels, scores, 0.5)
    assert (rates["fpr"]["k"], rates["fpr"]["n"]) == (2, 4)
    assert (rates["recall"]["k"], rates["recall"]["n"]) == (2, 3)
    assert false_alarm_rate_at(labels, scores, 0.5) == 0.5


def test_budgets_take_their_thresholds_from_calibration_only():
    rng = np.random.default_rng(3)
    cal = rng.gamma(3.0, size=400)
    labels = np.r_[np.zeros(300, int), np.ones(100, int)]
    scores = np.r_[rng.gamma(3.0, size=300), rng.gamma(3.0, size=100) + 4.0]
    out = verdicts(labels, scores, threshold=7.0, target_fpr=0.01, calibration_scores=cal)
    assert out["target_fpr"] == 0.01 and out["fpr"]["n"] == 300 and out["recall"]["n"] == 100
    for budget in ("0.01", "0.05", "0.1"):
        row = out["budgets"][budget]
        expected = threshold_for_rate(cal, float(budget)).value  # the test scores play no part
        assert row["threshold"]["value"] == pytest.approx(expected)
        assert row["fpr"]["k"] == int((scores[:300] > expected).sum())
    shuffled = verdicts(labels, scores[::-1].copy(), 7.0, 0.01, cal)  # other test scores, same thresholds
    assert shuffled["budgets"]["0.05"]["threshold"] == out["budgets"]["0.05"]["threshold"]
    # exchangeable goods: the 5% budget lands near 5% on the test goods
    assert 0.01 < out["budgets"]["0.05"]["fpr"]["value"] < 0.12
    assert verdicts(labels, scores, 7.0, None, None)["budgets"]["0.01"] == {"error": "no calibration scores"}
