"""The speed/quality Pareto front: the detectors no other detector beats on both cost
and quality (at least as fast and at least as good, and strictly better in one)."""

from __future__ import annotations


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool = True) -> list[int]:
    """Indices of the non-dominated (cost, quality) points, lower cost first; cost is
    lower-is-better. Equal points are all kept (neither beats the other). One sweep
    over the points sorted by cost: a point is on the front when its quality beats
    every cheaper (or equally cheap) point's."""
    sign = 1.0 if higher_is_better else -1.0
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -sign * points[i][1]))
    front: list[int] = []
    for i in order:
        cost, quality = points[i][0], sign * points[i][1]
        if not front:
            front.append(i)
            continue
        last_cost, last_quality = points[front[-1]][0], sign * points[front[-1]][1]
        if quality > last_quality or (quality == last_quality and cost == last_cost):
            front.append(i)
    return front

