"""Evaluating a model on a category's test set: every test image scored, and what a
run cell measures from the scores (metrics, their intervals, the threshold's verdicts)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from iadbench.types import EvalData, Prediction


@dataclass
class Evaluation:
    images: np.ndarray  # the test images at the model's input size, uint8 (N, H, W, 3)
    masks: np.ndarray | None  # (N, H, W) bool; None when the dataset has no masks
    labels: np.ndarray  # (N,) 0 good, 1 defective
    prediction: Prediction
    predict_s: float  # the scoring pass alone, feature cache off
    data: EvalData
    metrics: dict[str, float]
    metric_notes: dict[str, str]  # why a metric is NaN
    intervals: dict[str, Any]
    verdicts: dict[str, Any]


def evaluate(model, split, *, metrics=None, predict_batch: int = 16) -> Evaluation:
    """Score ``split.test`` with ``model`` and measure it.

    ``model``: a fitted model in memory (``fit_model``'s FitResult) or an opened one
    (``open_model``): anything with ``score`` (uint8 batch at ``input_size`` ->
    Prediction), ``input_size``, ``threshold``, ``threshold_rule``, ``threshold_note``
    and ``calibration_scores``. ``metrics``: MetricSpecs by name (default: every
    registered metric). The scoring pass runs with the feature cache off, so its time
    is an honest throughput."""
    from iadbench.calibration.rules import parse_rule
    from iadbench.calibration.verdicts import verdicts
    from iadbench.features import cache_disabled
    from iadbench.images import load_images, load_masks
    from iadbench.model.fit import predict_batched

    if metrics is None:
        from iadbench.plugins import get_registry

        metrics = get_registry().metrics
    size = tuple(model.input_size)
    crop = float(getattr(model, "crop", 1.0))
    images = load_images(split.test, size, crop)
    masks = load_masks(split.test, size, crop) if split.has_masks else None
    regions = None
    if any(s.regions for s in split.test):  # per-region ground truth (MVTec LOCO): masks are their union
        from iadbench.metrics.spro import load_regions

        masks, regions = load_regions(split.test, size, crop)
    labels = np.array([t.label for t in split.test], dtype=np.int64)
    with cache_disabled():
        started = time.perf_counter()
        prediction = predict_batched(model.score, images, predict_batch, size)
        predict_s = time.perf_counter() - started
    data = EvalData(
        labels=labels,
        scores=prediction.scores,
        maps=prediction.maps,
        masks=masks,
        threshold=model.threshold,
        defect_types=[t.defect_type for t in split.test],
        calibration_scores=model.calibration_scores,
        pixel_threshold=getattr(model, "pixel_threshold", None),
        regions=regions,
    )
    rule = parse_rule(model.threshold_rule)
    unlabelled = split.notes.get("unlabelled_test")
    if unlabelled:  # a private test set: scored, but there is nothing to measure against
        values, notes, intervals = _unmeasured(metrics, unlabelled)
        verdict = verdicts(labels[:0], prediction.scores[:0], model.threshold, rule.target_fpr, model.calibration_scores)
    else:
        values, notes, intervals = _measure(data, metrics, model.threshold_note)
        verdict = verdicts(labels, prediction.scores, model.threshold, rule.target_fpr, model.calibration_scores)
    return Evaluation(images=images, masks=masks, labels=labels, prediction=prediction, predict_s=predict_s,
                      data=data, metrics=values, metric_notes=notes, intervals=intervals, verdicts=verdict)


def _unmeasured(specs, why: str):
    """(metrics, notes, intervals) of a test set without labels (``Split.notes
    ["unlabelled_test"]`` says why): every metric recorded undefined with that reason."""
    return {name: float("nan") for name in specs}, {name: f"no test labels: {why}" for name in specs}, {}


def _measure(data: EvalData, specs, threshold_note: str | None):
    """(metrics, notes, intervals) of one test set: the metrics' values (with the fit's
    note as the reason of each threshold metric it left NaN) and their intervals."""
    from iadbench.metrics import compute_metrics
    from iadbench.metrics.intervals import interval_record

    values, notes = compute_metrics(data, specs, threshold_note=threshold_note)
    try:  # uncertainty is extra: a failure here must not cost the cell its metrics
        intervals = interval_record(data, specs, values)
    except Exception as exc:  # noqa: BLE001
        intervals = {"error": f"{type(exc).__name__}: {exc}"}
    return values, notes, intervals
