"""Threshold rules fixed on good images' calibration scores."""

import numpy as np
import pytest

from iadbench.errors import InputError, UndefinedMetric
from iadbench.metrics.threshold import (
    DEFAULT_RULE,
    UndefinedThreshold,
    calibrate,
    describe_rule,
    fit_threshold,
    parse_rule,
)

HOLDOUT = np.array([1.0, 2.0, 3.0, 4.0])


def test_rule_values():
    assert fit_threshold(HOLDOUT, "quantile:0.5") == pytest.approx(2.5)
    assert fit_threshold(HOLDOUT, "quantile:1") == 4.0
    assert fit_threshold(HOLDOUT, "quantile:0") == 1.0
    # mean 2.5, sample std sqrt(5/3)
    assert fit_threshold(HOLDOUT, "sigma:2") == pytest.approx(2.5 + 2 * np.sqrt(5 / 3))
    assert fit_threshold(HOLDOUT, "sigma:0") == pytest.approx(2.5)
    assert fit_threshold(HOLDOUT, "max") == 4.0
    assert fit_threshold(HOLDOUT, " Quantile : 0.75 ") == pytest.approx(3.25)


def test_default_rule_targets_half_a_percent_false_alarms():
    assert DEFAULT_RULE == "fpr:0.005"
    scores = np.arange(4001.0)  # enough scores for the empirical 0.995-quantile
    assert fit_threshold(scores) == pytest.approx(np.quantile(scores, 0.995), rel=1e-3)


def test_fpr_rule_carries_its_estimate():
    scores = np.random.default_rng(0).gamma(4.0, size=3000)
    est = calibrate(scores, "fpr:0.05")
    assert est.method == "empirical" and est.low <= est.value <= est.high and est.n == 3000
    assert (scores > est.value).mean() == pytest.approx(0.05, abs=0.002)
    tail = calibrate(scores[:300], "fpr:0.005")  # 1.5 expected exceedances: beyond the data
    assert tail.method == "tail" and tail.low < tail.value < tail.high
    plain = calibrate(scores, "quantile:0.9")
    assert plain.method == "quantile" and np.isnan(plain.low)
    assert parse_rule("fpr:0.01").target_fpr == 0.01 and parse_rule("max").target_fpr is None


@pytest.mark.parametrize(
    "rule", ["quantile:99", "quantile", "quantile:", "quantile:abc", "sigma:nan", "max:3", "p99", "", "sigma:inf",
             "fpr:0", "fpr:1.5", "fpr:abc", "fpr:1", "fpr:-0.01", "fpr"]
)
def test_bad_rules_raise_input_error_naming_the_rule(rule):
    with pytest.raises(InputError) as err:
        parse_rule(rule)
    message = str(err.value)
    assert f"'{rule}'" in message and "\n" not in message
    with pytest.raises(InputError):
        fit_threshold(HOLDOUT, rule)


def test_undefined_holdouts():
    with pytest.raises(UndefinedThreshold, match="no calibration scores"):
        fit_threshold(np.array([]), "max")
    with pytest.raises(UndefinedMetric, match="NaN"):
        fit_threshold(np.array([1.0, np.nan]), "quantile:0.9")
    with pytest.raises(UndefinedThreshold, match="at least 2"):
        fit_threshold(np.array([1.0]), "sigma:3")
    assert fit_threshold(np.array([1.0]), "quantile:0.99") == 1.0


def test_descriptions():
    assert describe_rule("quantile:0.99") == "0.99-quantile of good training images' calibration scores"
    assert describe_rule("sigma:3") == "mean + 3 std of good training images' calibration scores"
    assert describe_rule("max") == "maximum of good training images' calibration scores"
    assert describe_rule("fpr:0.01").startswith("false-alarm rate 0.01 on good images")
    assert str(parse_rule("sigma:2.5")) == "sigma:2.5"
