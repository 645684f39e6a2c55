"""PGn / PBn against hand-computed cases, a brute-force reference and anomalib's own
metrics (where anomalib is installed)."""

import math

import numpy as np
import pytest

from iadbench.errors import UndefinedMetric
from iadbench.metrics.pgn_pbn import pb5, pg5, presorted_bad, presorted_good
from iadbench.types import EvalData


def linear_quantile(values, q):
    """The q-quantile by linear interpolation between order statistics, written out."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def brute_force(labels, scores, rate):
    good = [s for s, y in zip(scores, labels) if y == 0]
    bad = [s for s, y in zip(scores, labels) if y == 1]
    accept_below = linear_quantile(bad, rate)
    reject_above = linear_quantile(good, 1 - rate)
    pg = sum(s < accept_below for s in good) / len(good)
    pb = sum(s > reject_above for s in bad) / len(bad)
    return pg, pb


def random_case(seed, n_good=37, n_bad=23):
    rng = np.random.default_rng(seed)
    labels = np.array([0] * n_good + [1] * n_bad)
    scores = np.r_[rng.normal(0, 1, n_good), rng.normal(1.5, 1, n_bad)]
    return labels, scores


def test_anomalib_docstring_example():
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert presorted_good(labels, scores, 0.2) == 1.0
    assert presorted_bad(labels, scores, 0.2) == 1.0


def test_hand_computed():
    # good .1 .2 .3 .9, defective .25 .5 .6 .7 .8
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.25, 0.5, 0.6, 0.7, 0.8])
    # PG at FNR 25%: the 0.25-quantile of the defective scores is .5 (position 1): good .1 .2 .3
    assert presorted_good(labels, scores, 0.25) == pytest.approx(3 / 4)
    # PB at FPR 1/3: the 2/3-quantile of the good scores is .3 (position 2): four above
    assert presorted_bad(labels, scores, 1 / 3) == pytest.approx(4 / 5)
    # A score equal to the threshold is not presorted (strict on both sides).
    assert presorted_good(labels, scores, 0.0) == pytest.approx(2 / 4)  # .25 itself
    assert presorted_bad(labels, scores, 0.0) == 0.0  # nothing above the highest good .9


@pytest.mark.parametrize("seed", range(10))
def test_matches_brute_force(seed):
    labels, scores = random_case(seed)
    if seed % 2:
        scores = np.round(scores, 1)  # ties between and within classes
    for rate in (0.0, 0.05, 0.1, 0.37, 1.0):
        pg, pb = brute_force(labels, scores, rate)
        assert presorted_good(labels, scores, rate) == pytest.approx(pg, abs=1e-12)
        assert presorted_bad(labels, scores, rate) == pytest.approx(pb, abs=1e-12)


def test_registered_adapters_use_five_percent():
    labels, scores = random_case(3)
    data = EvalData(labels=labels, scores=scores, maps=np.zeros((60, 1, 1)), masks=None, threshold=math.nan,
                    defect_types=[""] * 60)
    pg, pb = brute_force(labels, scores, 0.05)
    assert pg5(data) == pytest.approx(pg) and pb5(data) == pytest.approx(pb)
    assert 0.0 < pg < 1.0 and 0.0 < pb < 1.0  # the case exercises both


@pytest.mark.parametrize(("labels", "message"), [([0, 0, 0], "no defective"), ([1, 1, 1], "no good")])
def test_one_class_is_undefined(labels, message):
    for metric in (presorted_good, presorted_bad):
        with pytest.raises(UndefinedMetric, match=message):
            metric(np.array(labels), np.array([0.1, 0.2, 0.3]))


def test_bad_inputs():
    labels, scores = random_case(0)
    with pytest.raises(ValueError, match=r"fnr must lie in \[0, 1\], got 1.5"):
        presorted_good(labels, scores, 1.5)
    scores[0] = np.nan
    with pytest.raises(UndefinedMetric, match="NaN"):
        presorted_bad(labels, scores)


@pytest.mark.slow  # importing anomalib takes seconds
def test_matches_anomalib():
    pg_pb = pytest.importorskip("anomalib.metrics.pg_pb", reason="anomalib is not installed")
    torch = pytest.importorskip("torch")
    for seed in range(5):
        labels, scores = random_case(seed, n_good=40 + seed, n_bad=20 + 3 * seed)
        scores = scores.astype(np.float32)  # anomalib computes the quantile in float32
        for rate in (0.05, 0.1, 0.3):
            theirs_pg, theirs_pb = pg_pb._PGn(fnr=rate), pg_pb._PBn(fpr=rate)
            for metric in (theirs_pg, theirs_pb):  # a float32 result: compare to 1e-6
                metric.update(torch.from_numpy(scores), torch.from_numpy(labels))
            assert presorted_good(labels, scores, rate) == pytest.approx(float(theirs_pg.compute()), abs=1e-6)
            assert presorted_bad(labels, scores, rate) == pytest.approx(float(theirs_pb.compute()), abs=1e-6)
