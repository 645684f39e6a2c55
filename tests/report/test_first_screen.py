"""The pieces of the report's first screen, each against an independent reference:
the winner per dataset against a brute force over the records, the interval of a mean
against hand-computed numbers, the Pareto front against an O(n^2) dominance check,
label placement against pairwise box overlap, and the heat table's colours against
the WCAG contrast rule."""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pandas as pd
import pytest

from iadbench.report.first_screen import heat_colour, heat_table_html, summary_html
from iadbench.report.label_layout import overlaps, place_labels
from iadbench.report.pareto import pareto_front
from iadbench.report.records import load_runs
from iadbench.report.standings import best_per_dataset, mean_interval


def _random_records(rng: random.Random) -> list[dict]:
    """Records over 2-3 datasets with 1-3 categories, 2-5 detectors, 1-2 seeds; some
    cells failed, some missing, some without an interval; values on a coarse grid so
    that exact ties happen."""
    records = []
    for d in range(rng.randint(2, 3)):
        categories = [f"cat{c}" for c in range(rng.randint(1, 3))]
        for det in [f"det{k}" for k in range(rng.randint(2, 5))]:
            for category in categories:
                if rng.random() < 0.1:
                    continue  # missing
                for seed in range(rng.randint(1, 2)):
                    value = rng.randint(10, 20) / 20
                    ok = rng.random() > 0.1
                    low, high = value - rng.randint(0, 4) / 40, value + rng.randint(0, 4) / 40
                    records.append({"detector": det, "dataset": f"ds{d}", "category": category, "seed": seed,
                                    "status": "ok" if ok else "failed",
                                    "metrics.image_auroc": value if ok else None,
                                    "ci.image_auroc": [low, high] if ok and rng.random() > 0.1 else None})
    return records


def _brute_force(records: list[dict], higher_is_better: bool) -> dict[str, tuple[str, float, list[str]]]:
    """dataset -> (winner, its mean, detectors tied with it), by plain loops."""
    out = {}
    for dataset in {r["dataset"] for r in records}:
        rows = [r for r in records if r["dataset"] == dataset]
        # a category where no detector has a value is left out
        categories = {r["category"] for r in rows if r["status"] == "ok"}
        scored = {}
        for det in {r["detector"] for r in rows}:
            values, lows, highs = [], [], []
            for category in sorted(categories):
                ok = [r for r in rows if r["detector"] == det and r["category"] == category and r["status"] == "ok"]
                if not ok:
                    break
                values.append(sum(r["metrics.image_auroc"] for r in ok) / len(ok))
                ends = [r["ci.image_auroc"] for r in ok if r["ci.image_auroc"] is not None]
                lows.append(sum(e[0] for e in ends) / len(ends) if ends else None)
                highs.append(sum(e[1] for e in ends) / len(ends) if ends else None)
            else:
                mean = sum(values) / len(values)
                interval = None
                if None not in lows:
                    k = len(values)
                    interval = (mean - math.sqrt(sum(max(v - lo, 0) ** 2 for v, lo in zip(values, lows))) / k,
                                mean + math.sqrt(sum(max(hi - v, 0) ** 2 for v, hi in zip(values, highs))) / k)
                scored[det] = (mean, interval)
        if not scored:
            continue
        key = max if higher_is_better else min
        best_value = key(m for m, _ in scored.values())
        winner = min(d for d, (m, _) in scored.items() if m == best_value)
        best_iv = scored[winner][1]
        tied = sorted(d for d, (m, iv) in scored.items() if d != winner and best_iv and iv
                      and iv[0] <= best_iv[1] and best_iv[0] <= iv[1])
        out[dataset] = (winner, best_value, tied)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_best_per_dataset_matches_a_brute_force_over_the_records(seed):
    rng = random.Random(seed)
    records = _random_records(rng)
    frame = pd.DataFrame(records)
    higher_is_better = seed % 4 != 3
    expected = _brute_force(records, higher_is_better)
    got = {b.dataset: (b.best.detector, b.best.mean, sorted(s.detector for s in b.tied))
           for b in best_per_dataset(frame, "image_auroc", higher_is_better) if b.ranked}
    assert got.keys() == expected.keys()
    for dataset, (winner, mean, tied) in expected.items():
        assert got[dataset][0] == winner
        assert got[dataset][1] == pytest.approx(mean)
        assert got[dataset][2] == tied


def test_the_interval_of_a_mean_narrows_as_independent_errors_do():
    # one category: its own interval, unchanged
    assert mean_interval([0.9], [(0.85, 0.93)]) == pytest.approx((0.85, 0.93))
    # half-widths 0.03 and 0.04: the mean's is sqrt(0.03^2 + 0.04^2) / 2 = 0.025
    assert mean_interval([0.8, 0.9], [(0.77, 0.83), (0.86, 0.94)]) == pytest.approx((0.825, 0.875))
    # asymmetric ends keep their sides: below 0.06 and 0.08 -> 0.05, above 0 and 0 -> 0
    assert mean_interval([1.0, 1.0], [(0.94, 1.0), (0.92, 1.0)]) == pytest.approx((0.95, 1.0))
    # nine equal categories: a third of one category's width, not the average width
    assert mean_interval([0.5] * 9, [(0.4, 0.6)] * 9) == pytest.approx((0.5 - 0.1 / 3, 0.5 + 0.1 / 3))
    assert mean_interval([0.8, 0.9], [(0.7, 0.9), None]) is None


def _dominated(p: tuple[float, float], points: list[tuple[float, float]], higher_is_better: bool) -> bool:
    sign = 1 if higher_is_better else -1
    return any(q[0] <= p[0] and sign * q[1] >= sign * p[1] and (q[0] < p[0] or sign * q[1] > sign * p[1])
               for q in points)


@pytest.mark.parametrize("seed", range(60))
def test_pareto_front_matches_the_quadratic_dominance_check(seed):
    rng = random.Random(seed)
    points = [(float(rng.randint(1, 6)), float(rng.randint(1, 6))) for _ in range(rng.randint(1, 14))]
    higher_is_better = seed % 2 == 0
    front = pareto_front(points, higher_is_better)
    assert sorted(front) == [i for i, p in enumerate(points) if not _dominated(p, points, higher_is_better)]
    costs = [points[i][0] for i in front]
    assert costs == sorted(costs)  # fastest first: a staircase


@pytest.mark.parametrize("seed", range(30))
def test_placed_labels_overlap_neither_each_other_nor_a_point_and_stay_inside(seed):
    rng = random.Random(seed)
    bounds = (0.0, 0.0, 500.0, 300.0)
    # clustered points: the case that made the old chart's labels collide
    centre = (rng.uniform(100, 400), rng.uniform(80, 220))
    anchors = [(centre[0] + rng.gauss(0, 25), centre[1] + rng.gauss(0, 15)) for _ in range(rng.randint(2, 12))]
    sizes = [(rng.uniform(20, 80), 10.0) for _ in anchors]
    obstacles = [(centre[0] - 60, centre[1] - 1, centre[0] + 60, centre[1] + 1)]  # a line through the cluster
    boxes = place_labels(anchors, sizes, bounds, obstacles, marker=4)
    placed = [b for b in boxes if b is not None]
    assert len(placed) == len(anchors)  # room enough for all
    for i, box in enumerate(placed):
        assert bounds[0] <= box[0] and box[2] <= bounds[2] and bounds[1] <= box[1] and box[3] <= bounds[3]
        assert not any(overlaps(box, other) for other in placed[i + 1:])
        assert not any(overlaps(box, (x - 4, y - 4, x + 4, y + 4)) for x, y in anchors)
        assert not overlaps(box, obstacles[0])
    for box, (w, h) in zip(boxes, sizes):
        if box is not None:
            assert (box[2] - box[0], box[3] - box[1]) == pytest.approx((w, h))


def test_a_lone_label_sits_right_beside_its_point():
    (box,) = place_labels([(100.0, 100.0)], [(40.0, 10.0)], (0, 0, 500, 300), marker=4, gap=3)
    assert box == pytest.approx((107.0, 95.0, 147.0, 105.0))


def test_the_drawn_cost_chart_labels_do_not_overlap():
    from matplotlib.text import Text

    from iadbench.report.plots import MARKER_HALF, cost_figure

    points = [("padim", 23.0, 0.917), ("padim_r18", 22.5, 0.915), ("patchcore", 24.0, 0.905),
              ("patchcore_wrn", 24.5, 0.910), ("feature_ae", 19.5, 0.867), ("pixel_gaussian", 1.07, 0.609),
              ("conv_ae", 11.8, 0.569), ("efficientad", 79.0, 0.75)]
    fig = cost_figure(points, "image AUROC", cpu="Test CPU")
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    labels = {t.get_text(): Text.get_window_extent(t, renderer).extents for t in ax.texts}
    assert set(labels) == {name for name, _, _ in points}
    markers = ax.transData.transform([(x, y) for _, x, y in points])
    boxes = list(labels.values())
    for i, box in enumerate(boxes):
        assert not any(overlaps(tuple(box), tuple(other)) for other in boxes[i + 1:])
        assert not any(overlaps(tuple(box), (x - MARKER_HALF, y - MARKER_HALF, x + MARKER_HALF, y + MARKER_HALF))
                       for x, y in markers)
    assert "Test CPU" in ax.get_xlabel() and "ms" in ax.get_xlabel()
    # the front is drawn: the staircase passes the front's points, fastest first
    (line,) = ax.lines
    assert list(line.get_xdata()) == [1.07, 19.5, 22.5, 23.0]


def _contrast(a: str, b: str) -> float:
    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_every_heat_colour_keeps_its_number_readable():
    for t in np.linspace(0, 1, 101):
        background, text = heat_colour(float(t))
        assert _contrast(background, text) >= 4.5, (t, background, text)  # WCAG AA for normal text


def test_heat_table_and_summary_of_a_run(two_detector_run):
    frame, _ = load_runs([two_detector_run])
    table = heat_table_html(frame, "image_auroc", "image AUROC").split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    names = [re.search(r"<td>(.*?)</td>", r).group(1) for r in rows if r.startswith("<td>")]
    assert names == ["alpha", "beta", "gamma"]  # best first
    assert "<b>0.950</b>" in table and "<b>0.920</b>" not in table
    assert f"background:{heat_colour(1.0)[0]}" not in table  # 0.95 is not at the top of the scale
    assert f"background:{heat_colour(round((0.95 - 0.5) / 0.5, 3))[0]}" in table
    assert f"background:{heat_colour(0.4)[0]};color:#ffffff'>0.700<" in table  # 0.70: a dark cell, white text
    assert "title='95% interval [0.900, 0.990]'" in table
    text = summary_html(best_per_dataset(frame, "image_auroc"), "image AUROC")
    assert "<b class='winner'>alpha</b>" in text and "<b>0.950</b> [0.900, 0.990]" in text
    assert "not separable from 1 of the other 2: beta 0.920 [0.850, 0.970]" in text


def test_a_category_nobody_scored_is_left_out_and_said_so():
    def row(det, category, value, status="ok"):
        return {"detector": det, "dataset": "ds", "category": category, "seed": 0, "status": status,
                "metrics.image_auroc": value, "ci.image_auroc": [value - 0.05, value + 0.05] if value else None}

    frame = pd.DataFrame([row("a", "c1", 0.9), row("a", "c2", 0.7), row("a", "c3", None, "failed"),
                          row("b", "c1", 0.8), row("b", "c2", 0.6),
                          row("c", "c1", 0.99)])  # c2 missing: not ranked
    (entry,) = best_per_dataset(frame, "image_auroc")
    assert entry.categories == ["c1", "c2"] and entry.left_out == ["c3"] and entry.incomplete == ["c"]
    assert [(s.detector, round(s.mean, 6)) for s in entry.ranked] == [("a", 0.8), ("b", 0.7)]
    # half-widths 0.05 in two categories: sqrt(2) * 0.05 / 2 either side
    assert entry.best.interval == pytest.approx((0.8 - 0.05 / math.sqrt(2), 0.8 + 0.05 / math.sqrt(2)))
    assert [s.detector for s in entry.tied] == []  # 0.7 + 0.035 < 0.8 - 0.035
    text = summary_html([entry], "image AUROC")
    assert "Not ranked (a category missing or failed): c" in text and "no detector has a value there: c3" in text
    assert "ahead of the other detector (no interval overlaps its own)" in text


def test_a_dataset_where_every_cell_failed_says_so():
    frame = pd.DataFrame([{"detector": "a", "dataset": "ds", "category": "c1", "seed": 0, "status": "failed",
                           "metrics.image_auroc": None, "ci.image_auroc": None}])
    (entry,) = best_per_dataset(frame, "image_auroc")
    assert entry.ranked == [] and entry.left_out == ["c1"]
    assert "<b>ds</b>: no detector has a value (every cell failed" in summary_html([entry], "image AUROC")
    assert ">failed</td>" in heat_table_html(frame, "image_auroc", "image AUROC")
