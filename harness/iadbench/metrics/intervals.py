"""Bootstrap uncertainty of a cell's metrics: 95% intervals and paired p-values.

With 20-80 test images per category a 0.03 AUROC gap is often noise, so each cell
records a percentile bootstrap interval for every metric whose MetricSpec declares
one (``interval``): test images are resampled with replacement, stratified by label
(each resample keeps the numbers of good and defective images), 1,000 times from a
fixed seed, and the metric is recomputed on each resample -- by the spec's own fast
``resample`` where it has one (iadbench.metrics.auroc_resampling), else by calling
``fn`` on the resampled images. A "pixel" metric without a fast path is recomputed
on whole images with their maps, which costs seconds per resample, so it gets fewer.

Which metrics ask for one is the metrics plugin's choice; the record keeps the shape
``intervals: {metric: [low, high] | null, level, resamples, seed, method}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from iadbench.errors import UndefinedMetric
from iadbench.types import EvalData, MetricSpec

RESAMPLES = 1000
PIXEL_RESAMPLES = 200  # a pixel metric recomputed from its maps, without a fast path
LEVEL = 0.95
SEED = 0
INTERVAL_KINDS = ("image", "pixel")


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def as_list(self) -> list[float]:
        return [self.low, self.high]


def stratified_counts(labels: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, N): how often each test image is drawn in each resample; defective
    and good images are drawn separately (in that order), each as many as there are."""
    labels = np.asarray(labels).astype(bool).reshape(-1)
    rng = np.random.default_rng(seed)
    counts = np.zeros((resamples, labels.size), dtype=np.float64)
    for group in (np.flatnonzero(labels), np.flatnonzero(~labels)):
        if group.size:
            draws = rng.integers(0, group.size, size=(resamples, group.size))
            np.add.at(counts, (np.arange(resamples)[:, None], group[draws]), 1.0)
    return counts


def percentile_interval(estimate: float, samples: np.ndarray, level: float = LEVEL) -> Interval:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return Interval(float(estimate), float(low), float(high))


def _subset(data: EvalData, index: np.ndarray, with_maps: bool) -> EvalData:
    """The resampled test set; an "image" metric's resample carries no maps (copying
    them 1,000 times would cost more than the metric)."""
    return replace(
        data,
        labels=data.labels[index],
        scores=data.scores[index],
        maps=data.maps[index] if with_maps else data.maps[:0],
        masks=data.masks[index] if with_maps and data.masks is not None else None,
        defect_types=[data.defect_types[i] for i in index],
    )


def _recomputed(spec: MetricSpec, data: EvalData, counts: np.ndarray) -> np.ndarray:
    """``spec.fn`` on each resample; NaN where it is undefined there."""
    with_maps = spec.interval == "pixel"
    images = np.arange(counts.shape[1])
    samples = np.full(len(counts), np.nan)
    for b, row in enumerate(counts):
        index = np.repeat(images, row.astype(np.int64))
        try:
            samples[b] = float(spec.fn(_subset(data, index, with_maps)))
        except UndefinedMetric:
            continue
    return samples


def resample_count(spec: MetricSpec) -> int:
    return PIXEL_RESAMPLES if spec.interval == "pixel" and spec.resample is None else RESAMPLES


def resampled(spec: MetricSpec, data: EvalData, seed: int = SEED) -> np.ndarray:
    """The metric on each stratified resample of ``data`` (finite values only).
    Raises UndefinedMetric when it has no value on any resample."""
    counts = stratified_counts(data.labels, resample_count(spec), seed)
    samples = spec.resample(data, counts) if spec.resample is not None else _recomputed(spec, data, counts)
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if not samples.size:
        raise UndefinedMetric("undefined on every resample")
    return samples


def metric_interval(spec: MetricSpec, data: EvalData, value: float | None = None) -> Interval | None:
    """The spec's percentile bootstrap interval on ``data``; None where the metric is
    undefined. ``value``, the metric on the full set where the caller has it, saves
    recomputing it (NaN: undefined, no interval)."""
    if value is None:
        try:
            value = float(spec.fn(data))
        except UndefinedMetric:
            return None
    if not math.isfinite(value):
        return None
    try:
        samples = resampled(spec, data)
    except UndefinedMetric:
        return None
    return percentile_interval(value, samples)


def metric_intervals(
    data: EvalData, specs: Mapping[str, MetricSpec], values: Mapping[str, float] | None = None
) -> dict[str, list[float] | None]:
    """[low, high] for every spec that declares an ``interval``; None where undefined
    or where its computation failed (an interval is extra: it never fails a cell).
    ``values`` are compute_metrics' values, so that no full-set metric is computed twice."""
    out: dict[str, list[float] | None] = {}
    for name, spec in specs.items():
        if spec.interval is None:
            continue
        if spec.interval not in INTERVAL_KINDS:
            raise ValueError(f"metric {name}: interval must be one of {', '.join(INTERVAL_KINDS)} or None, "
                             f"got {spec.interval!r}")
        try:
            interval = metric_interval(spec, data, None if values is None else values.get(name))
        except Exception:  # noqa: BLE001 - one broken resampler must not lose the others
            interval = None
        out[name] = interval.as_list() if interval is not None else None
    return out


def interval_record(
    data: EvalData, specs: Mapping[str, MetricSpec], values: Mapping[str, float] | None = None
) -> dict:
    """What a cell records under ``intervals``: metric_intervals plus how they were made."""
    notes = [f"{name} {getattr(spec.resample, 'method', '')}".rstrip() if spec.resample is not None
             else f"{name} recomputed on {resample_count(spec)} resamples"
             for name, spec in specs.items() if spec.interval is not None]
    return {
        **metric_intervals(data, specs, values),
        "level": LEVEL,
        "resamples": RESAMPLES,
        "seed": SEED,
        "method": "percentile bootstrap, test images resampled stratified by label"
        + (f"; {'; '.join(notes)}" if notes else ""),
    }


def paired_p_value(spec: MetricSpec, data_a: EvalData, data_b: EvalData, seed: int = SEED) -> float | None:
    """Two-sided paired bootstrap p-value for metric(a) = metric(b) on the same test
    images (same labels, in the same order): the same stratified resamples score both,
    and p = 2 min(P(delta <= 0), P(delta >= 0)), capped at 1. A detector against
    itself gives exactly 1. None where the metric is undefined for either."""
    if not np.array_equal(np.asarray(data_a.labels), np.asarray(data_b.labels)):
        raise ValueError("paired p-value: the two sets' labels differ")
    counts = stratified_counts(data_a.labels, resample_count(spec), seed)

    def samples(data: EvalData) -> np.ndarray | None:
        try:
            out = spec.resample(data, counts) if spec.resample is not None else _recomputed(spec, data, counts)
        except UndefinedMetric:
            return None
        return np.asarray(out, dtype=np.float64)

    a, b = samples(data_a), samples(data_b)
    if a is None or b is None:
        return None
    delta = a - b
    delta = delta[np.isfinite(delta)]
    if not delta.size:
        return None
    return float(min(1.0, 2.0 * min(np.mean(delta <= 0), np.mean(delta >= 0))))
