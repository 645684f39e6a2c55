"""Keeping a fit's heap bounded on glibc without slowing every forward pass.

glibc serves an allocation above its mmap threshold straight from the OS and hands
it back on free; below it, from the heap, which it rarely returns. The threshold
starts at 128 KiB and rises to the size of each large block freed (up to 32 MiB), so
a loop that keeps allocating and freeing multi-MiB temporaries (anomalib's PatchCore
coreset) ends up in a heap it fragments: peak RSS reached 4.3 GB where 1 GB was live.

A small fixed threshold cures that, but costs dearly elsewhere: every conv activation
then comes fresh from the OS, page faults and all, and a batch-1 forward of
EfficientNet-Lite0 took 2.5x as long. So the small threshold is held only around the
code that needs it, never for a whole process.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager

_M_MMAP_THRESHOLD = -3
SMALL = 64 * 1024
#: glibc's ceiling for its own dynamic threshold: what a long-running process drifts to.
LARGE = 32 * 1024 * 1024


def _mallopt() -> ctypes._CFuncPtr | None:
    try:
        return ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return None


def set_mmap_threshold(nbytes: int) -> bool:
    """Fix glibc's mmap threshold (this ends its dynamic adjustment); False off glibc."""
    mallopt = _mallopt()
    return bool(mallopt and mallopt(_M_MMAP_THRESHOLD, int(nbytes)) == 1)


@contextmanager
def bounded_heap() -> Iterator[bool]:
    """Inside: large temporaries go back to the OS when freed. After: a large fixed
    threshold, so later inference allocates as a default process would. Yields
    whether the setting took effect (False off glibc)."""
    applied = set_mmap_threshold(SMALL)
    try:
        yield applied
    finally:
        if applied:
            set_mmap_threshold(LARGE)
