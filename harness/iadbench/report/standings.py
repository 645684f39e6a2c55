"""Who wins each dataset, and who cannot be told apart from the winner.

A detector's score on a dataset is the mean over the dataset's categories of its
per-category value (itself the mean over seeds); only detectors with a value in every
category are ranked, as in the leaderboard (averaging over the cells that happen to
exist would flatter whoever failed). A category where no detector has a value (all
failed, or the metric is undefined there) tells nobody apart: it is left out, and said so.

The interval of that mean: averaging the per-category interval ends would not be an
interval of the mean (it is as wide as a typical category's, not narrower). The
categories' test sets are disjoint, so their sampling errors are independent; each
category's 95% bootstrap interval gives its error below and above the point value, and
the mean's error on each side is the root sum of squares of those, over the number of
categories (the normal approximation; exact for a single category). A detector whose
interval of the mean overlaps the winner's is "not separable from the winner": the
same overlap rule the leaderboard's bold uses, conservative because the detectors were
scored on the same images (a paired test, ``adbench compare``, separates more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Standing:
    """One detector on one dataset."""

    detector: str
    mean: float
    interval: tuple[float, float] | None  # approximate 95% interval of ``mean``


@dataclass(frozen=True)
class DatasetBest:
    """The winner of one dataset and those not separable from it."""

    dataset: str
    categories: list[str]
    ranked: list[Standing]  # best first
    tied: list[Standing] = field(default_factory=list)  # others whose interval overlaps the winner's
    incomplete: list[str] = field(default_factory=list)  # detectors without a value in every category
    left_out: list[str] = field(default_factory=list)  # categories where no detector has a value

    @property
    def best(self) -> Standing:
        return self.ranked[0]


def cell_values(frame: pd.DataFrame, metric: str) -> dict[tuple[str, str, str], tuple[float, tuple[float, float] | None]]:
    """(detector, dataset, category) -> (mean over ok seeds, mean interval ends over
    seeds or None) for every cell with a finite value of ``metric``."""
    column, ci = f"metrics.{metric}", f"ci.{metric}"
    ok = frame[frame["status"] == "ok"]
    out = {}
    for (det, dataset, category), group in ok.groupby(["detector", "dataset", "category"]):
        values = pd.to_numeric(group[column], errors="coerce").dropna() if column in group else pd.Series(dtype=float)
        values = values[np.isfinite(values)]
        if values.empty:
            continue
        ends = [v for v in group[ci] if isinstance(v, (list, tuple)) and len(v) == 2 and None not in v] \
            if ci in group else []
        interval = tuple(float(e) for e in np.mean(np.asarray(ends, float), axis=0)) if ends else None
        out[(str(det), str(dataset), str(category))] = (float(values.mean()), interval)
    return out


def mean_interval(values: list[float], intervals: list[tuple[float, float] | None]) -> tuple[float, float] | None:
    """Approximate 95% interval of the mean of independent per-category values (see the
    module's docstring); None unless every category has an interval."""
    if not values or any(iv is None for iv in intervals):
        return None
    k = len(values)
    mean = sum(values) / k
    below = math.sqrt(sum(max(v - lo, 0.0) ** 2 for v, (lo, _) in zip(values, intervals))) / k
    above = math.sqrt(sum(max(hi - v, 0.0) ** 2 for v, (_, hi) in zip(values, intervals))) / k
    return mean - below, mean + above


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def best_per_dataset(frame: pd.DataFrame, metric: str, higher_is_better: bool = True) -> list[DatasetBest]:
    """Per dataset (sorted by name): detectors ranked by their mean over categories
    (ties by name), the winner's ties and the detectors left unranked."""
    cells = cell_values(frame, metric)
    results = []
    for dataset in sorted(frame["dataset"].astype(str).unique()):
        rows = frame[frame["dataset"].astype(str) == dataset]
        every = sorted(rows["category"].astype(str).unique())
        categories = [c for c in every if any(key[1:] == (dataset, c) for key in cells)]
        left_out = [c for c in every if c not in categories]
        detectors = sorted(rows["detector"].astype(str).unique())
        standings, incomplete = [], []
        for det in detectors:
            found = [cells.get((det, dataset, c)) for c in categories]
            if not found or any(f is None for f in found):
                incomplete.append(det)
                continue
            values = [v for v, _ in found]
            standings.append(Standing(det, sum(values) / len(values), mean_interval(values, [iv for _, iv in found])))
        if not standings:
            results.append(DatasetBest(dataset, categories, [], [], incomplete, left_out))
            continue
        sign = -1.0 if higher_is_better else 1.0
        standings.sort(key=lambda s: (sign * s.mean, s.detector))
        best = standings[0]
        tied = [s for s in standings[1:] if best.interval and s.interval and _overlap(best.interval, s.interval)]
        results.append(DatasetBest(dataset, categories, standings, tied, incomplete, left_out))
    return results
