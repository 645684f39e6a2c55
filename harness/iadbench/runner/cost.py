"""Cost measurements taken inside the cell's own process: wall time, latency
percentiles, throughput, peak resident memory and artifact size."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    box = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start


def per_image_latency_ms(fn: Callable[[np.ndarray], object], images: np.ndarray, warmup: int, count: int) -> list[float]:
    """Batch-1 latency of ``fn`` over up to ``count`` images after ``warmup`` calls.

    Cycles through the images when there are fewer than ``count`` + ``warmup``.
    """
    if len(images) == 0:
        return []
    for i in range(warmup):
        fn(images[i % len(images)][None])
    times = []
    for i in range(count):
        one = images[(warmup + i) % len(images)][None]
        start = time.perf_counter()
        fn(one)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None
