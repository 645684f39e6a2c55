"""A training progress bar: rich on a terminal, nothing otherwise (cells, CI logs)."""

from __future__ import annotations

import sys


def training_progress(total: int, what: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=not sys.stderr.isatty(), transient=True,
    )
    return progress, progress.add_task(what, total=total)
