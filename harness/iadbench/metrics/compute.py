"""Run every registered metric on one grid cell's EvalData, never failing the cell."""

from __future__ import annotations

import math
from collections.abc import Mapping

from iadbench.errors import UndefinedMetric
from iadbench.types import EvalData, MetricSpec


def compute_metrics(
    data: EvalData, specs: Mapping[str, MetricSpec], threshold_note: str | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """(values, reasons): each metric's value, NaN where it is undefined or failed.

    ``reasons`` maps each NaN metric to why: the UndefinedMetric message, or
    ``"error: <Type>: <message>"`` when the metric itself raised something else.
    ``threshold_note`` says why no threshold could be fixed; it then becomes the
    reason of every NaN metric that ``needs_threshold`` (it says more than "the
    threshold is NaN").
    """
    values: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for name, spec in specs.items():
        try:
            value = float(spec.fn(data))
        except UndefinedMetric as exc:
            values[name], reasons[name] = math.nan, str(exc) or "undefined"
            continue
        except Exception as exc:  # one broken metric must not lose the cell's others
            values[name] = math.nan
            reasons[name] = f"error: {type(exc).__name__}: {exc}"
            continue
        if not math.isfinite(value):
            reasons[name] = f"metric returned {value}"
            value = math.nan
        values[name] = value
    if threshold_note:
        for name, spec in specs.items():
            if spec.needs_threshold and name in reasons:
                reasons[name] = f"no threshold: {threshold_note}"
    return values, reasons
