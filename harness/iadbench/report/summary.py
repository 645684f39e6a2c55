"""The table `adbench run` prints when a run ends: per cell for a small grid, per
detector for a large one, with means over ok cells only and failures visible. Its
metric columns are the registered metrics whose specs set ``summary``."""

from __future__ import annotations

import math
from collections.abc import Mapping

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from iadbench.report.protocol import protocol_line
from iadbench.report.training import CAPPED_MARK, RULE, capped
from iadbench.types import MetricSpec

#: Above this many cells the summary shows one row per detector (means over its cells);
#: the leaderboard written beside it has every cell.
PER_CELL_LIMIT = 24


def _num(value, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _mean(values: list) -> float | None:
    finite = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(finite) / len(finite) if finite else None


def summary_columns(specs: Mapping[str, MetricSpec] | None = None) -> list[tuple[str, str]]:
    """(metric, header) of the summary's metric columns, in registration order."""
    if specs is None:
        from iadbench.plugins import get_registry

        specs = get_registry().metrics
    return [(name, spec.column) for name, spec in specs.items() if spec.summary]


def summary(outcome, console: Console, specs: Mapping[str, MetricSpec] | None = None) -> None:
    """Per cell for a small grid; per detector (ok cells / all, then means over the ok
    ones) for a large one, so that it stays readable in an 80-column log. ``console``:
    where to print (the CLI passes its own; report never imports the CLI). ``specs``:
    the metrics to show (default: the registry's)."""
    columns = summary_columns(specs)
    per_cell = len(outcome.cells) <= PER_CELL_LIMIT
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("detector", no_wrap=True)
    table.add_column("dataset/category" if per_cell else "cells ok", no_wrap=per_cell)
    for _, header in columns:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("fit s", justify="right", no_wrap=True)
    table.add_column("ms/img", justify="right", no_wrap=True)

    smoke = sorted({r.get("detector") for r in outcome.records.values() if capped(r.get("training"))})
    groups: dict[tuple, list] = {}
    for cell in outcome.cells:
        label = cell.row_label
        for record_key, category in zip(cell.record_keys, cell.categories or [cell.category]):
            key = (label, f"{cell.dataset}/{category} s{cell.seed}") if per_cell else (label,)
            groups.setdefault(key, []).append(outcome.records.get(record_key, {}))
    for key, recs in groups.items():
        label = key[0]
        ok = [r for r in recs if r.get("status") == "ok"]
        if per_cell:
            status = recs[0].get("status", "missing")
            second = key[1] if status == "ok" else f"{key[1]} [red]{status}[/]"
        else:
            second = f"{len(ok)}/{len(recs)}" if len(ok) == len(recs) else f"[red]{len(ok)}/{len(recs)}[/]"
        metrics = [_mean([(r.get("metrics") or {}).get(name) for r in ok]) for name, _ in columns]
        fit = _mean([(r.get("cost") or {}).get("fit_s") for r in ok])
        latency = _mean([(r.get("cost") or {}).get("latency_ms_p50") for r in ok])
        name = f"{label} {CAPPED_MARK}" if label in smoke else label
        table.add_row(escape(name), second, *map(_num, metrics), _num(fit, 1), _num(latency, 1))
    if not per_cell:
        table.caption = "means over each detector's ok cells; every cell is in the leaderboard"
    records = [r for r in outcome.records.values() if r]
    if records:
        console.print(protocol_line(records), highlight=False, markup=False)
    console.print(table)
    if smoke:
        labels = {c.label for c in outcome.cells}
        console.print(
            f"{CAPPED_MARK} {len(smoke)} of {len(labels)} detectors ran at smoke length: training under half "
            f"the method's published length ({RULE}); the leaderboard lists the steps used.",
            highlight=False, markup=False,
        )
    for rec in outcome.failed:
        where = f"{rec['detector']} {rec['dataset']}/{rec['category']} seed {rec['seed']}: {rec.get('error')}"
        console.print(f"[red]failed[/] {escape(where)}", highlight=False)  # errors may hold [brackets]
