"""A training progress bar for detectors trained by gradient steps (public for plugins).

Rich on a terminal; nothing otherwise, so cell logs and CI output stay free of
redraw noise.
"""

from __future__ import annotations

import sys


def training_progress(total: int, what: str):
    """``(progress, task)``: use ``with progress:`` and ``progress.advance(task)`` per step."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=not sys.stderr.isatty(), transient=True,
    )
    return progress, progress.add_task(what, total=total)
