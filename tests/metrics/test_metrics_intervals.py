"""Bootstrap intervals and paired p-values of the metrics whose specs declare one:
the fast AUROC resamples against sklearn on the same resampled images, the generic
recomputation against a hand-made resample, and the cases whose answer is known."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from iadbench.errors import UndefinedMetric
from iadbench.metrics import auroc_resampling, image, pixel
from iadbench.metrics.intervals import (
    interval_record,
    metric_interval,
    metric_intervals,
    paired_p_value,
    resampled,
    stratified_counts,
)
from iadbench.types import EvalData, MetricSpec

IMAGE_AUROC = MetricSpec("image_auroc", image.image_auroc, interval="image",
                         resample=auroc_resampling.image_auroc_resamples)
PIXEL_AUROC = MetricSpec("pixel_auroc", pixel.pixel_auroc, level="pixel", interval="pixel",
                         resample=auroc_resampling.pixel_auroc_resamples)


def scores_data(labels, scores, threshold=math.nan) -> EvalData:
    labels = np.asarray(labels).astype(int)
    n = labels.size
    return EvalData(labels=labels, scores=np.asarray(scores, float), maps=np.zeros((n, 2, 2), np.float32),
                    masks=None, threshold=threshold, defect_types=["d"] * n)


def pixel_data(seed=1) -> EvalData:
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(30, 24, 24)).astype(np.float32)
    masks = np.zeros(maps.shape, bool)
    masks[:12, 6:14, 6:16] = True
    maps[masks] += 1.0
    labels = np.r_[np.ones(12), np.zeros(18)].astype(int)
    return EvalData(labels=labels, scores=maps.max((1, 2)).astype(float), maps=maps, masks=masks,
                    threshold=math.nan, defect_types=["d"] * 30)


def test_stratified_counts_keep_each_class_size_and_draw_defective_first():
    labels = np.array([0, 1, 0, 1, 1, 0, 0])
    counts = stratified_counts(labels, resamples=40, seed=5)
    assert counts.shape == (40, 7)
    assert (counts[:, labels == 1].sum(1) == 3).all() and (counts[:, labels == 0].sum(1) == 4).all()
    rng = np.random.default_rng(5)  # the documented draws: defective images, then good ones
    bad, good = np.flatnonzero(labels), np.flatnonzero(~labels.astype(bool))
    draws_bad, draws_good = rng.integers(0, 3, size=(40, 3)), rng.integers(0, 4, size=(40, 4))
    for b in (0, 13, 39):
        assert np.array_equal(counts[b, bad], np.bincount(draws_bad[b], minlength=3))
        assert np.array_equal(counts[b, good], np.bincount(draws_good[b], minlength=4))


def test_perfect_detector_interval_is_one_one():
    labels = np.r_[np.zeros(30), np.ones(20)]
    iv = metric_interval(IMAGE_AUROC, scores_data(labels, labels * 10 + np.linspace(0, 1, 50)))
    assert (iv.estimate, iv.low, iv.high) == (1.0, 1.0, 1.0)


def test_random_scores_on_200_images_cover_one_half():
    rng = np.random.default_rng(7)
    labels = np.r_[np.zeros(100), np.ones(100)]
    scores = rng.random(200)
    iv = metric_interval(IMAGE_AUROC, scores_data(labels, scores))
    assert np.isclose(iv.estimate, roc_auc_score(labels, scores))
    assert iv.low < 0.5 < iv.high
    assert 0.1 < iv.high - iv.low < 0.25  # about +-1.96 * 0.041 for 100 vs 100


def test_fast_image_auroc_resamples_match_sklearn_on_the_resampled_images():
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(12), np.ones(9)].astype(int)
    scores = np.round(rng.random(21), 1)  # ties on purpose
    counts = stratified_counts(labels, resamples=25, seed=11)
    samples = auroc_resampling.image_auroc_resamples(scores_data(labels, scores), counts)
    for b in range(25):
        index = np.repeat(np.arange(21), counts[b].astype(int))
        assert np.isclose(samples[b], roc_auc_score(labels[index], scores[index]))


def test_fast_image_ap_resamples_match_sklearn_on_the_resampled_images():
    rng = np.random.default_rng(8)
    labels = np.r_[np.zeros(14), np.ones(11)].astype(int)
    scores = np.round(rng.random(25), 1)  # ties on purpose
    counts = stratified_counts(labels, resamples=40, seed=2)
    samples = image.image_ap_resamples(scores_data(labels, scores), counts)
    assert np.isclose(image.ap_resamples(labels, scores, np.ones((1, 25)))[0], average_precision_score(labels, scores))
    for b in range(40):
        index = np.repeat(np.arange(25), counts[b].astype(int))
        assert np.isclose(samples[b], average_precision_score(labels[index], scores[index]))


def test_fast_f1_resamples_match_sklearn_on_the_resampled_images():
    from sklearn.metrics import f1_score

    from iadbench.metrics import classification

    rng = np.random.default_rng(9)
    labels = np.r_[np.zeros(16), np.ones(9)].astype(int)
    scores = np.round(rng.random(25), 1)  # ties with the threshold on purpose
    data = replace(scores_data(labels, scores), threshold=0.5)
    counts = stratified_counts(labels, resamples=60, seed=3)
    samples = classification.f1_resamples(data, counts)
    assert samples.shape == (60,) and np.isfinite(samples).all() and len(set(samples.round(6))) > 5
    for b in range(60):
        index = np.repeat(np.arange(25), counts[b].astype(int))
        assert np.isclose(samples[b], f1_score(labels[index], scores[index] > 0.5))
    # no threshold, or no defective image: undefined everywhere, as f1 itself
    assert np.isnan(classification.f1_resamples(replace(data, threshold=float("nan")), counts)).all()
    good_only = replace(scores_data(np.zeros(25, int), scores), threshold=0.5)
    assert np.isnan(classification.f1_resamples(good_only, counts)).all()


def test_generic_recomputation_calls_fn_on_each_resample_without_maps():
    rng = np.random.default_rng(4)
    labels = np.r_[np.zeros(15), np.ones(10)].astype(int)
    data = scores_data(labels, rng.random(25))
    seen = []

    def ap(d: EvalData) -> float:
        seen.append((d.maps.shape[0], d.masks))
        return image.image_ap(d)

    samples = resampled(MetricSpec("image_ap", ap, interval="image"), data)
    counts = stratified_counts(labels)
    for b in (0, 500, 999):
        index = np.repeat(np.arange(25), counts[b].astype(int))
        assert np.isclose(samples[b], average_precision_score(labels[index], data.scores[index]))
    assert len(seen) == 1000 and set(seen) == {(0, None)}  # "image" resamples carry no maps


def test_binned_pixel_auroc_is_close_to_sklearn_and_its_interval_covers_it():
    data = pixel_data()
    exact = roc_auc_score(data.masks.ravel(), data.maps.ravel())
    edges = auroc_resampling.pixel_bin_edges(data.maps)
    pos, neg = auroc_resampling.pixel_histograms(data.maps, data.masks, edges)
    assert abs(auroc_resampling.auroc_from_histograms(pos.sum(0), neg.sum(0)) - exact) < 1e-3
    iv = metric_interval(PIXEL_AUROC, data)
    assert abs(iv.estimate - exact) < 1e-6 and iv.low < exact < iv.high
    assert metric_interval(PIXEL_AUROC, replace(data, masks=np.zeros_like(data.masks))) is None


def test_fast_pixel_resamples_agree_with_recomputing_the_metric_by_image():
    data = pixel_data(seed=2)
    counts = stratified_counts(data.labels, resamples=20, seed=3)
    fast = auroc_resampling.pixel_auroc_resamples(data, counts)
    for b in range(20):
        index = np.repeat(np.arange(30), counts[b].astype(int))
        assert abs(fast[b] - roc_auc_score(data.masks[index].ravel(), data.maps[index].ravel())) < 1e-3


def test_paired_p_value_self_is_one_and_a_real_gap_is_small():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(40), np.ones(40)]
    noisy = scores_data(labels, rng.random(80))
    assert paired_p_value(IMAGE_AUROC, noisy, noisy) == 1.0
    good = scores_data(labels, labels + 0.3 * rng.random(80))
    assert paired_p_value(IMAGE_AUROC, good, noisy) < 0.01
    one_class = scores_data(np.zeros(5), rng.random(5))
    assert paired_p_value(IMAGE_AUROC, one_class, one_class) is None  # AUROC undefined
    with pytest.raises(ValueError, match="labels differ"):
        paired_p_value(IMAGE_AUROC, noisy, scores_data(labels[::-1], rng.random(80)))


def test_metric_intervals_only_for_declared_specs_and_never_raising():
    rng = np.random.default_rng(9)
    labels = np.r_[np.zeros(20), np.ones(20)]
    data = scores_data(labels, labels + rng.random(40), threshold=1.0)

    def broken(d, counts):
        raise RuntimeError("plugin bug")

    def undefined(d):
        raise UndefinedMetric("never defined")

    specs = {
        "image_auroc": IMAGE_AUROC,
        "no_interval": MetricSpec("no_interval", image.image_ap),
        "broken": MetricSpec("broken", image.image_ap, interval="image", resample=broken),
        "undefined": MetricSpec("undefined", undefined, interval="image"),
        "nan_value": MetricSpec("nan_value", image.image_ap, interval="image"),
    }
    out = metric_intervals(data, specs, values={"nan_value": math.nan})
    assert set(out) == {"image_auroc", "broken", "undefined", "nan_value"}
    low, high = out["image_auroc"]
    assert low <= roc_auc_score(labels, data.scores) <= high
    assert out["broken"] is None and out["undefined"] is None and out["nan_value"] is None
    with pytest.raises(ValueError, match="interval must be one of"):
        metric_intervals(data, {"odd": MetricSpec("odd", image.image_ap, interval="voxel")})


def test_interval_record_keeps_the_shape_reports_read():
    labels = np.r_[np.zeros(10), np.ones(10)]
    record = interval_record(scores_data(labels, labels + np.linspace(0, 0.5, 20)), {"image_auroc": IMAGE_AUROC})
    assert record["image_auroc"] == [1.0, 1.0]
    assert (record["level"], record["resamples"], record["seed"]) == (0.95, 1000, 0)
    assert record["method"].startswith("percentile bootstrap") and "pair matrix" in record["method"]


def test_built_in_specs_declare_fast_paths_and_cheap_intervals():
    from iadbench.plugins import get_registry

    specs = get_registry().metrics
    assert all(specs[n].resample is not None for n in ("image_auroc", "image_ap", "pixel_auroc"))
    assert specs["aupro"].interval is None and specs["pixel_ap"].interval is None  # 1,000 re-rankings: too slow
    assert {n for n, s in specs.items() if s.needs_threshold} == {"precision", "recall", "f1", "accuracy", "fpr"}
