"""Image AUROC, AP and F1-max against hand-computed values and brute force."""

import numpy as np
import pytest

from iadbench.errors import UndefinedMetric
from iadbench.metrics.image import auroc, average_precision, best_f1, f1_max

LABELS = np.array([0, 0, 1, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8])


def test_hand_computed_values():
    # Pairs (defective, good) ranked right: (.35,.1) (.8,.1) (.8,.4); wrong: (.35,.4).
    assert auroc(LABELS, SCORES) == pytest.approx(3 / 4)
    # Ranked: .8 (bad) .4 (good) .35 (bad): AP = 1/2 * 1 + 1/2 * 2/3.
    assert average_precision(LABELS, SCORES) == pytest.approx(0.5 + 1 / 3)
    # Threshold .35 flags .35 .4 .8: precision 2/3, recall 1, F1 0.8.
    value, threshold = best_f1(LABELS, SCORES)
    assert value == pytest.approx(0.8)
    assert threshold == pytest.approx(0.35)


def brute_force_f1_max(labels, scores):
    best = 0.0
    for t in np.unique(scores):
        pred = scores >= t
        tp = np.sum(pred & (labels == 1))
        fp = np.sum(pred & (labels == 0))
        fn = np.sum(~pred & (labels == 1))
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    return best


@pytest.mark.parametrize("seed", range(8))
def test_f1_max_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 40)
    labels[:2] = [0, 1]
    scores = np.round(rng.random(40) + 0.4 * labels, 1)
    assert f1_max(labels, scores) == pytest.approx(brute_force_f1_max(labels, scores))


def test_perfect_and_inverted_ranking():
    assert auroc(LABELS, LABELS * 2.0) == 1.0
    assert auroc(LABELS, -LABELS * 2.0) == 0.0
    assert f1_max(LABELS, LABELS * 2.0) == 1.0


@pytest.mark.parametrize("fn", [auroc, average_precision, f1_max])
@pytest.mark.parametrize(
    "labels, scores, reason",
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "no defective test image"),
        ([1, 1], [0.1, 0.2], "no good test image"),
        ([0, 1, 1], [0.5, 0.5, 0.5], "all image scores are equal"),
        ([0, 1], [0.5, np.nan], "NaN or infinite"),
        ([], [], "no test images"),
    ],
)
def test_undefined_cases_raise_with_reason(fn, labels, scores, reason):
    with pytest.raises(UndefinedMetric, match=reason):
        fn(np.array(labels, dtype=int), np.array(scores, dtype=float))


def test_bad_inputs_are_errors_not_undefined():
    with pytest.raises(ValueError):
        auroc(np.array([0, 1, 1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError):
        auroc(np.array([0, 2]), np.array([0.1, 0.2]))
