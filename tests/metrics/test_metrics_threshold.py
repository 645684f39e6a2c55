"""Threshold rules fixed on held-out good scores."""

import numpy as np
import pytest

from iadbench.errors import InputError, UndefinedMetric
from iadbench.metrics.threshold import (
    DEFAULT_RULE,
    UndefinedThreshold,
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


def test_default_rule_is_the_99th_percentile():
    assert DEFAULT_RULE == "quantile:0.99"
    scores = np.arange(101.0)
    assert fit_threshold(scores) == pytest.approx(99.0)


@pytest.mark.parametrize(
    "rule", ["quantile:99", "quantile", "quantile:", "quantile:abc", "sigma:nan", "max:3", "p99", "", "sigma:inf"]
)
def test_bad_rules_raise_input_error_naming_the_rule(rule):
    with pytest.raises(InputError) as err:
        parse_rule(rule)
    message = str(err.value)
    assert f"'{rule}'" in message and "\n" not in message
    with pytest.raises(InputError):
        fit_threshold(HOLDOUT, rule)


def test_undefined_holdouts():
    with pytest.raises(UndefinedThreshold, match="no held-out"):
        fit_threshold(np.array([]), "max")
    with pytest.raises(UndefinedMetric, match="NaN"):
        fit_threshold(np.array([1.0, np.nan]), "quantile:0.9")
    with pytest.raises(UndefinedThreshold, match="at least 2"):
        fit_threshold(np.array([1.0]), "sigma:3")
    assert fit_threshold(np.array([1.0]), "quantile:0.99") == 1.0


def test_descriptions():
    assert describe_rule("quantile:0.99") == "0.99-quantile of held-out good training image scores"
    assert describe_rule("sigma:3") == "mean + 3 std of held-out good training image scores"
    assert describe_rule("max") == "maximum of held-out good training image scores"
    assert str(parse_rule("sigma:2.5")) == "sigma:2.5"
