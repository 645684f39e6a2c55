"""Bootstrap intervals and paired p-values of AUROC, checked against sklearn on the
same resamples and against the cases whose answer is known."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from iadbench.report.intervals import (
    auroc_from_histograms,
    image_auroc_interval,
    image_auroc_samples,
    paired_p_value,
    pixel_auroc_interval,
    pixel_bin_edges,
    pixel_histograms,
)


def test_perfect_detector_interval_is_one_one():
    labels = np.r_[np.zeros(30), np.ones(20)]
    iv = image_auroc_interval(labels, labels * 10 + np.linspace(0, 1, 50))
    assert (iv.estimate, iv.low, iv.high) == (1.0, 1.0, 1.0)


def test_random_scores_on_200_images_cover_one_half():
    rng = np.random.default_rng(7)
    labels = np.r_[np.zeros(100), np.ones(100)]
    scores = rng.random(200)
    iv = image_auroc_interval(labels, scores)
    assert np.isclose(iv.estimate, roc_auc_score(labels, scores))
    assert iv.low < 0.5 < iv.high
    assert 0.1 < iv.high - iv.low < 0.25  # about +-1.96 * 0.041 for 100 vs 100


def test_each_resample_matches_sklearn_on_the_resampled_images():
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(12), np.ones(9)].astype(int)
    scores = np.round(rng.random(21), 1)  # ties on purpose
    estimate, samples = image_auroc_samples(labels, scores, resamples=25, seed=11)
    assert np.isclose(estimate, roc_auc_score(labels, scores))
    # the same draws, stratified: defective images first, then good ones
    draws = np.random.default_rng(11)
    pos, neg = scores[labels == 1], scores[labels == 0]
    dp = draws.integers(0, len(pos), size=(25, len(pos)))
    dn = draws.integers(0, len(neg), size=(25, len(neg)))
    for b in range(25):
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        assert np.isclose(samples[b], roc_auc_score(y, np.r_[pos[dp[b]], neg[dn[b]]]))


def test_paired_p_value_self_is_one_and_a_real_gap_is_small():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(40), np.ones(40)]
    noisy = rng.random(80)
    assert paired_p_value(labels, noisy, noisy) == 1.0
    good = labels + 0.3 * rng.random(80)
    assert paired_p_value(labels, good, noisy) < 0.01
    assert paired_p_value(np.zeros(5), noisy[:5], noisy[:5]) is None  # AUROC undefined


def test_binned_pixel_auroc_is_close_to_sklearn_and_its_interval_covers_it():
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(30, 24, 24)).astype(np.float32)
    masks = np.zeros(maps.shape, bool)
    masks[:12, 6:14, 6:16] = True
    maps[masks] += 1.0
    labels = np.r_[np.ones(12), np.zeros(18)]
    exact = roc_auc_score(masks.ravel(), maps.ravel())
    edges = pixel_bin_edges(maps)
    pos, neg = pixel_histograms(maps, masks, edges)
    assert abs(auroc_from_histograms(pos.sum(0), neg.sum(0)) - exact) < 1e-3
    iv = pixel_auroc_interval(maps, masks, labels)
    assert abs(iv.estimate - exact) < 1e-3 and iv.low < exact < iv.high
    assert pixel_auroc_interval(maps, np.zeros_like(masks), labels) is None
