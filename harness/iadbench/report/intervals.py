"""Kept importable for older callers: bootstrap intervals are declared per metric
(``MetricSpec.interval``) and computed in iadbench.metrics.intervals."""

from iadbench.metrics.intervals import (
    LEVEL,
    RESAMPLES,
    SEED,
    Interval,
    interval_record,
    metric_interval,
    metric_intervals,
    paired_p_value,
    percentile_interval,
    stratified_counts,
)

__all__ = [
    "LEVEL", "RESAMPLES", "SEED", "Interval", "interval_record", "metric_interval", "metric_intervals",
    "paired_p_value", "percentile_interval", "stratified_counts",
]
