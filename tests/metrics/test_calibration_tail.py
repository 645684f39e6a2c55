"""The threshold for a false-alarm budget and the rate of a threshold, from calibration
scores (``iadbench.calibration.tail``), checked against references that do not use it:
true quantiles of known distributions (scipy.stats), numpy's quantile, and binomial
probabilities and intervals from scipy."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from scipy import stats

from iadbench.calibration.tail import MIN_TAIL_SCORES, Estimate, rate_above, threshold_for_rate
from iadbench.errors import InputError
from iadbench.metrics.threshold import UndefinedThreshold

SEEDS = range(100)


def _sample(dist, n: int, seed: int) -> np.ndarray:
    return dist.rvs(size=n, random_state=np.random.default_rng(seed))


# Score distributions with the tails anomaly scores tend to have: gamma (sums of squared
# feature distances), Gumbel (maxima of smoothed anomaly maps), lognormal (products of
# positive factors). n * rate < 10 in each, so the target lies beyond the data.
TAIL_CASES = [
    pytest.param(stats.gamma(2.0), 300, 0.005, id="gamma2-n300-r0.005"),
    pytest.param(stats.gumbel_r(), 250, 0.01, id="gumbel-n250-r0.01"),
    pytest.param(stats.lognorm(0.5), 250, 0.01, id="lognormal-n250-r0.01"),
]


@pytest.mark.parametrize("dist,n,rate", TAIL_CASES)
def test_tail_fit_covers_a_known_quantile_in_85_to_95_of_100_seeds(dist, n, rate):
    assert n * rate < 10
    true = dist.isf(rate)
    covered = 0
    for seed in SEEDS:
        est = threshold_for_rate(_sample(dist, n, seed), rate)
        assert est.method == "tail" and est.tail_n is not None and est.n == n
        assert est.low <= est.value <= est.high
        covered += est.low <= true <= est.high
    assert 85 <= covered <= 95, f"{covered} of 100 intervals covered the true quantile"


def test_empirical_interval_covers_a_known_quantile():
    dist, n, rate = stats.gamma(2.0), 2000, 0.05
    true = dist.isf(rate)
    covered = 0
    for seed in SEEDS:
        est = threshold_for_rate(_sample(dist, n, seed), rate)
        assert est.method == "empirical"
        covered += est.low <= true <= est.high
    # order-statistic intervals are exact but discrete: at least 90% by construction
    assert 85 <= covered <= 97, f"{covered} of 100 intervals covered the true quantile"


@pytest.mark.parametrize("dist", [stats.gamma(2.0), stats.gumbel_r()], ids=["gamma2", "gumbel"])
def test_tail_point_estimate_is_close_on_large_samples(dist):
    # n = 2000 at rate 0.001: two expected exceedances, so the tail path; a single sample
    # still scatters (about 7% here), so the mean of ten is held to a few percent
    rate, true = 0.001, dist.isf(0.001)
    ests = [threshold_for_rate(_sample(dist, 2000, seed), rate) for seed in range(10)]
    assert {e.method for e in ests} == {"tail"}
    rel = np.array([e.value for e in ests]) / true - 1
    assert abs(rel.mean()) < 0.05, rel
    assert np.abs(rel).max() < 0.2, rel


def test_empirical_path_is_numpys_default_quantile_with_order_statistic_bounds():
    s = _sample(stats.gamma(2.0), 500, 7)
    rate, conf = 0.05, 0.90  # n * rate = 25 >= 10
    est = threshold_for_rate(s, rate, confidence=conf)
    assert est.method == "empirical" and est.n == 500 and est.tail_n is None
    assert est.value == np.quantile(s, 1 - rate)  # linear interpolation (type 7)
    # the bounds are order statistics X(l) <= X(u): the count B of scores below the true
    # quantile is Binomial(n, 1 - rate); X(l) <= q iff B >= l, q < X(u) iff B < u
    x = np.sort(s)
    l_rank = int(np.flatnonzero(x == est.low)[0]) + 1
    u_rank = int(np.flatnonzero(x == est.high)[0]) + 1
    binom = stats.binom(len(x), 1 - rate)
    alpha = 1 - conf
    assert binom.cdf(l_rank - 1) <= alpha / 2 < binom.cdf(l_rank)  # the highest l with P(B < l) <= alpha / 2
    assert binom.sf(u_rank - 1) <= alpha / 2 < binom.sf(u_rank - 2)  # the lowest u with P(B >= u) <= alpha / 2
    assert binom.cdf(u_rank - 1) - binom.cdf(l_rank - 1) >= conf
    # n * rate exactly 10 is still counted
    assert threshold_for_rate(np.arange(1000.0), 0.01).method == "empirical"


def test_too_few_scores_fall_back_to_the_max_with_a_note():
    s = np.array([0.3, 1.2, 0.7, 2.5, 0.9])
    est = threshold_for_rate(s, 0.01)
    assert est.method == "max" and est.value == 2.5 and est.n == 5
    assert math.isnan(est.low) and math.isnan(est.high)
    assert "too few" in est.note and "1000" in est.note and str(MIN_TAIL_SCORES) in est.note
    record = est.to_dict()
    assert record["low"] is None and record["high"] is None and record["method"] == "max"
    assert json.loads(json.dumps(record)) == record
    # a budget with ten scores above it is counted, however few the scores
    assert threshold_for_rate(np.arange(12.0), 0.9).method == "empirical"


def test_tied_scores_fall_back_to_the_max():
    s = np.r_[np.zeros(90), np.ones(10)]
    est = threshold_for_rate(s, 0.01)
    assert est.method == "max" and est.value == 1.0 and "tied" in est.note
    assert rate_above(s, 1.0).value == 0.0


@pytest.mark.parametrize("rate", [0, 0.0, 1, 1.5, -0.01, float("nan"), float("inf")])
def test_rates_outside_0_1_are_input_errors(rate):
    with pytest.raises(InputError) as err:
        threshold_for_rate(np.arange(100.0), rate)
    assert repr(rate) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("scores,why", [([], "no calibration"), ([1.0, np.nan, 2.0], "NaN"), ([1.0, np.inf], "infinite")])
def test_unusable_scores_leave_the_threshold_undefined(scores, why):
    for call in (lambda: threshold_for_rate(scores, 0.01), lambda: rate_above(scores, 1.0)):
        with pytest.raises(UndefinedThreshold, match=why) as err:
            call()
        assert "\n" not in str(err.value)


def test_other_bad_arguments():
    with pytest.raises(InputError, match="confidence"):
        threshold_for_rate(np.arange(100.0), 0.01, confidence=90)
    with pytest.raises(InputError, match="threshold"):
        rate_above(np.arange(100.0), float("nan"))


def test_rate_above_counts_with_clopper_pearson_where_many_scores_exceed():
    s = _sample(stats.uniform(), 400, 3)
    threshold = 0.8
    count = int((s > threshold).sum())
    assert count >= 10
    est = rate_above(s, threshold)
    ci = stats.binomtest(count, len(s)).proportion_ci(confidence_level=0.90, method="exact")
    assert est.method == "empirical" and est.value == count / len(s)
    assert est.low == pytest.approx(ci.low, rel=1e-9) and est.high == pytest.approx(ci.high, rel=1e-9)
    # too few scores for a tail fit: counted all the same, with a note, even at zero exceedances
    few = rate_above([0.3, 1.2, 0.7], 5.0, confidence=0.95)
    ci = stats.binomtest(0, 3).proportion_ci(confidence_level=0.95, method="exact")
    assert few.method == "empirical" and few.value == 0.0 and few.low == 0.0
    assert few.high == pytest.approx(ci.high, rel=1e-9) and "too few" in few.note


def test_rate_above_agrees_with_threshold_for_rate_on_the_tail():
    s = _sample(stats.gamma(2.0), 250, 11)
    rate = 0.01
    t = threshold_for_rate(s, rate)
    assert t.method == "tail"
    back = rate_above(s, t.value)
    assert back.method == "tail" and back.tail_n == t.tail_n
    assert back.value == pytest.approx(rate, rel=1e-9)
    assert back.low < rate < back.high
    # one posterior read both ways: at the threshold interval's ends the rate interval
    # has the budget as its opposite end (root-finding tolerance only)
    assert rate_above(s, t.high).high == pytest.approx(rate, rel=1e-6)
    assert rate_above(s, t.low).low == pytest.approx(rate, rel=1e-6)
    # far past the data the rate falls towards 0 but its interval stays honest
    far = rate_above(s, 10 * s.max())
    assert far.method == "tail" and far.low == 0.0 and 0 <= far.value < far.high < rate


def test_results_are_deterministic_and_equivariant():
    s = _sample(stats.gumbel_r(), 300, 5)
    rate = 0.005
    a, b = threshold_for_rate(s, rate), threshold_for_rate(s[::-1].copy(), rate)
    assert a == b and a.method == "tail"
    # scores in other units give the same threshold in those units
    c = threshold_for_rate(3.0 * s + 7.0, rate)
    for field in ("value", "low", "high"):
        assert getattr(c, field) == pytest.approx(3.0 * getattr(a, field) + 7.0, rel=1e-3)
    assert rate_above(3.0 * s + 7.0, 3.0 * a.value + 7.0).value == pytest.approx(rate, rel=1e-2)


def test_a_call_on_2000_scores_is_fast():
    s = _sample(stats.gamma(2.0), 2000, 1)
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        est = threshold_for_rate(s, 0.001)
        rate_above(s, est.value)
        best = min(best, time.perf_counter() - start)
    assert est.method == "tail" and best < 1.0  # both together; one alone takes about 0.05 s


def test_estimate_record_is_json_able():
    est = Estimate(1.5, float("nan"), 2.0, "tail", 300, tail_n=30, note="fit")
    assert est.to_dict() == {"value": 1.5, "low": None, "high": 2.0, "method": "tail", "n": 300, "tail_n": 30, "note": "fit"}
