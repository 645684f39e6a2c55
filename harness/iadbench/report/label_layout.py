"""Placing text labels beside scatter points so that no two labels overlap and no
label covers a point: greedy, most important label first, each at the first free
spot on rings of growing distance around its point (no adjustText dependency).

Geometry is in display pixels, y up (matplotlib's display coordinates)."""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[float, float, float, float]  # x0, y0, x1, y1

# Directions tried on each ring, as (dx, dy) of the box's near corner from the point:
# right, above-right, below-right, left, above-left, below-left, above, below.
_DIRECTIONS = ((1, 0), (1, 1), (1, -1), (-1, 0), (-1, 1), (-1, -1), (0, 1), (0, -1))


def overlaps(a: Box, b: Box) -> bool:
    """Whether two boxes share interior area (touching edges do not overlap)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _start(c: float, size: float, d: int, r: float) -> float:
    """Where a box of ``size`` starts along one axis: past c + r (d > 0), before c - r
    (d < 0), or centred on c (d == 0)."""
    return c + r if d > 0 else c - r - size if d < 0 else c - size / 2


def _candidate(x: float, y: float, w: float, h: float, dx: int, dy: int, r: float) -> Box:
    """A w x h box at distance r from (x, y) in direction (dx, dy)."""
    x0, y0 = _start(x, w, dx, r), _start(y, h, dy, r)
    return x0, y0, x0 + w, y0 + h


def place_labels(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]], bounds: Box,
                 obstacles: Sequence[Box] = (), marker: float = 4.0, gap: float = 3.0, step: float = 6.0,
                 rings: int = 40) -> list[Box | None]:
    """A box per label (in the order given, which is the priority), None where no free
    spot was found within ``rings`` rings. ``marker``: half-size of the square each
    point occupies; boxes stay inside ``bounds`` and off ``obstacles`` (lines, a legend)."""
    points = [(x - marker, y - marker, x + marker, y + marker) for x, y in anchors] + list(obstacles)
    placed: list[Box] = []
    result: list[Box | None] = []
    for (x, y), (w, h) in zip(anchors, sizes):
        chosen = None
        for ring in range(rings):
            r = marker + gap + ring * step
            for dx, dy in _DIRECTIONS:
                box = _candidate(x, y, w, h, dx, dy, r)
                inside = bounds[0] <= box[0] and box[2] <= bounds[2] and bounds[1] <= box[1] and box[3] <= bounds[3]
                if inside and not any(overlaps(box, other) for other in (*placed, *points)):
                    chosen = box
                    break
            if chosen is not None:
                break
        if chosen is not None:
            placed.append(chosen)
        result.append(chosen)
    return result
