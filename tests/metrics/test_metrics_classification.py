"""Precision, recall, F1 and accuracy at a fixed threshold."""

import math

import numpy as np
import pytest

from iadbench.errors import UndefinedMetric
from iadbench.metrics.classification import accuracy_at, f1_at, precision_at, predict, recall_at

LABELS = np.array([0, 0, 0, 1, 1, 1])
SCORES = np.array([0.1, 0.6, 0.2, 0.7, 0.4, 0.9])


def test_hand_computed_confusion():
    # At 0.5: TP 2 (.7 .9), FP 1 (.6), FN 1 (.4), TN 2.
    assert precision_at(LABELS, SCORES, 0.5) == pytest.approx(2 / 3)
    assert recall_at(LABELS, SCORES, 0.5) == pytest.approx(2 / 3)
    assert f1_at(LABELS, SCORES, 0.5) == pytest.approx(2 / 3)
    assert accuracy_at(LABELS, SCORES, 0.5) == pytest.approx(4 / 6)


def test_score_equal_to_threshold_is_predicted_good():
    np.testing.assert_array_equal(predict(SCORES, 0.6), [0, 0, 0, 1, 0, 1])
    assert precision_at(LABELS, SCORES, 0.6) == 1.0


def test_nothing_flagged():
    with pytest.raises(UndefinedMetric, match="no test image is predicted defective"):
        precision_at(LABELS, SCORES, 5.0)
    assert recall_at(LABELS, SCORES, 5.0) == 0.0
    assert f1_at(LABELS, SCORES, 5.0) == 0.0
    assert accuracy_at(LABELS, SCORES, 5.0) == 0.5


@pytest.mark.parametrize("fn", [precision_at, recall_at, f1_at])
def test_no_defective_test_image(fn):
    with pytest.raises(UndefinedMetric, match="no defective test image"):
        fn(np.zeros(3, int), np.array([0.1, 0.9, 0.2]), 0.5)


def test_accuracy_on_good_images_only_is_defined():
    assert accuracy_at(np.zeros(3, int), np.array([0.1, 0.9, 0.2]), 0.5) == pytest.approx(2 / 3)


@pytest.mark.parametrize("fn", [precision_at, recall_at, f1_at, accuracy_at])
def test_missing_threshold(fn):
    with pytest.raises(UndefinedMetric, match="no threshold"):
        fn(LABELS, SCORES, math.nan)
