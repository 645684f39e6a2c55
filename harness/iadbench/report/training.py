"""Training far shorter than the method's published length, read from records.

A cell of a detector whose spec names its published training length records
``training = {unit, used, published, source, steps}``. The report reads that, never
the live registry, since records may come from another machine or version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CAPPED_MARK = "†"
RULE = "used < published / 2"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


def capped(training: Any) -> bool:
    """True when the training used was under half the published length."""
    if not isinstance(training, Mapping):
        return False
    used, published = _number(training.get("used")), _number(training.get("published"))
    return used is not None and published is not None and used < published / 2


def _amount(values: list[float], unit: str) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:g} {unit}" if lo == hi else f"{lo:g}-{hi:g} {unit}"


def describe(trainings: list[Mapping[str, Any]]) -> str:
    """``12 steps (3 epochs) of 100 epochs published (source)`` over one detector's cells."""
    first = trainings[0]
    unit = first.get("unit", "")
    used = [v for t in trainings if (v := _number(t.get("used"))) is not None]
    steps = [v for t in trainings if (v := _number(t.get("steps"))) is not None]
    text = _amount(used, unit) if used else "unknown"
    if steps and unit != "steps":
        text = f"{_amount(steps, 'steps')} ({text})"
    source = f" ({first['source']})" if first.get("source") else ""
    return f"{text} of {first.get('published')} {unit} published{source}"


def capped_detectors(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Detector name -> description, for every detector with a capped cell."""
    found: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        training = row.get("training")
        if capped(training):
            found.setdefault(str(row.get("detector")), []).append(training)
    return {det: describe(ts) for det, ts in sorted(found.items())}


def footnote(rows: Iterable[Mapping[str, Any]]) -> str | None:
    """The paragraph under the mark, or None when no cell was capped."""
    found = capped_detectors(rows)
    if not found:
        return None
    listed = "; ".join(f"`{det}` {text}" for det, text in found.items())
    return (
        f"{CAPPED_MARK} Training capped far under the method's published length (marked when "
        f"{RULE}): a smoke run, not the method as published. Used: {listed}."
    )
