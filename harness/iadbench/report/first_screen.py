"""The report's first screen as HTML: per dataset the winner with its interval and its
ties (``standings``), and a detectors x categories table coloured by score.

Static markup with inline styles: it renders the same with scripts off and from disk.
The colours come from viridis (perceptually uniform, readable with the common colour
vision deficiencies and in greyscale) on a fixed scale, so a colour means the same
score in every report; each number is written in black or white, whichever contrasts
more with its cell.
"""

from __future__ import annotations

import html
import math
from functools import lru_cache

import numpy as np
import pandas as pd

from iadbench.report.standings import DatasetBest, Standing, cell_values

#: Scores in [0, 1] are coloured from 0.5 (chance for an AUROC) to 1; lower ones share
#: the lowest colour. A metric outside [0, 1] is coloured over the values shown.
UNIT_SCALE = (0.5, 1.0)
MISSING_BACKGROUND = "#eeeeee"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt_interval(interval: tuple[float, float] | None) -> str:
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "(no interval)"


@lru_cache(maxsize=256)
def heat_colour(t: float) -> tuple[str, str]:
    """(background, text) colours for a position ``t`` in [0, 1] on the scale."""
    from matplotlib import colormaps

    r, g, b, _ = colormaps["viridis"](min(max(t, 0.0), 1.0))

    def linear(c: float) -> float:  # sRGB to linear light, for the WCAG luminance
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    luminance = 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
    # contrast against black (L + 0.05) / 0.05 vs against white 1.05 / (L + 0.05)
    text = "#000000" if (luminance + 0.05) ** 2 > 0.05 * 1.05 else "#ffffff"
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}", text


def colour_scale(values: list[float]) -> tuple[float, float]:
    """The (low, high) the colours span: ``UNIT_SCALE`` for scores in [0, 1]."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite or (min(finite) >= 0.0 and max(finite) <= 1.0):
        return UNIT_SCALE
    low, high = min(finite), max(finite)
    return (low, high if high > low else low + 1.0)


def _position(value: float, scale: tuple[float, float], higher_is_better: bool) -> float:
    t = (value - scale[0]) / (scale[1] - scale[0])
    return t if higher_is_better else 1.0 - t


def _standing_text(standing: Standing) -> str:
    return f"{_esc(standing.detector)} {standing.mean:.3f} {_fmt_interval(standing.interval)}"


def summary_html(bests: list[DatasetBest], metric_title: str) -> str:
    """The "best per dataset" block: one paragraph per dataset."""
    items = []
    for entry in bests:
        n_cat = len(entry.categories)
        where = f"<b>{_esc(entry.dataset)}</b> ({n_cat} categor{'y' if n_cat == 1 else 'ies'})"
        if not entry.categories:
            items.append(f"<li><b>{_esc(entry.dataset)}</b>: no detector has a value (every cell failed or the "
                         "metric was undefined).</li>")
            continue
        if not entry.ranked:
            items.append(f"<li>{where}: no detector has a value in every category.</li>")
            continue
        best = entry.best
        others = len(entry.ranked) - 1
        text = (f"{where}: <b class='winner'>{_esc(best.detector)}</b>, {_esc(metric_title)} "
                f"<b>{best.mean:.3f}</b> {_fmt_interval(best.interval)}")
        if best.interval is None:
            text += "; no bootstrap interval recorded, so ties are not assessed"
        elif not others:
            text += "; the only detector ranked"
        elif entry.tied:
            text += ("; not separable from the other detector: " if others == 1 else
                     f"; not separable from {len(entry.tied)} of the other {others}: ") + ", ".join(
                _standing_text(s) for s in entry.tied)
        else:
            text += ("; ahead of the other detector" if others == 1 else f"; ahead of all {others} others") + \
                " (no interval overlaps its own)"
        if entry.incomplete:
            text += f". Not ranked (a category missing or failed): {_esc(', '.join(entry.incomplete))}"
        if entry.left_out:
            text += f". Left out, no detector has a value there: {_esc(', '.join(entry.left_out))}"
        items.append(f"<li>{text}.</li>")
    return ("<div id='best-per-dataset'><h2>Best per dataset</h2><ul class='best'>" + "".join(items) + "</ul>"
            f"<p class='note'>Mean {_esc(metric_title)} over the dataset's categories, its approximate 95% interval "
            "in brackets (the categories' bootstrap intervals combined as independent errors); not separable: "
            "the intervals overlap.</p></div>")


def heat_table_html(frame: pd.DataFrame, metric: str, metric_title: str, higher_is_better: bool = True) -> str:
    """Detectors x categories (grouped by dataset, each group with its mean column),
    cells coloured by score, the best of each column in bold; intervals on hover."""
    cells = cell_values(frame, metric)
    datasets = {d: sorted(frame.loc[frame["dataset"].astype(str) == d, "category"].astype(str).unique())
                for d in sorted(frame["dataset"].astype(str).unique())}
    detectors = sorted(frame["detector"].astype(str).unique())
    failed = {(str(r.detector), str(r.dataset), str(r.category)) for r in frame.itertuples() if r.status != "ok"}
    means = {}
    for det in detectors:
        for dataset, categories in datasets.items():
            # as in the summary: categories where nobody has a value do not blank the mean
            found = [cells.get((det, dataset, c)) for c in categories
                     if any(key[1:] == (dataset, c) for key in cells)]
            means[(det, dataset)] = float(np.mean([v for v, _ in found])) if found and all(found) else math.nan
    # rows: best first by the mean of the detector's dataset means
    sign = -1.0 if higher_is_better else 1.0

    def rank(det: str) -> tuple[float, str]:
        values = [means[(det, d)] for d in datasets if not math.isnan(means[(det, d)])]
        return (sign * float(np.mean(values)) if values else math.inf, det)

    detectors.sort(key=rank)
    # None: the dataset's mean column (none for a single category: it would repeat it)
    columns = [(d, c) for d, cats in datasets.items() for c in [*cats, *([None] if len(cats) > 1 else [])]]

    def value(det: str, dataset: str, category: str | None) -> float:
        if category is None:
            return means[(det, dataset)]
        found = cells.get((det, dataset, category))
        return found[0] if found else math.nan

    scale = colour_scale([value(d, ds, c) for d in detectors for ds, c in columns])
    best = {}
    for dataset, category in columns:
        column = [value(d, dataset, category) for d in detectors]
        finite = [v for v in column if not math.isnan(v)]
        if finite:
            best[(dataset, category)] = max(finite) if higher_is_better else min(finite)

    head1 = "<tr><th rowspan='2'>detector</th>" + "".join(
        f"<th colspan='{len(cats) + (len(cats) > 1)}'>{_esc(d)}</th>" for d, cats in datasets.items()) + "</tr>"
    head2 = "<tr>" + "".join(f"<th>{_esc(c if c is not None else 'mean')}</th>" for _, c in columns) + "</tr>"
    rows = [head1, head2]
    for det in detectors:
        tds = [f"<td>{_esc(det)}</td>"]
        for dataset, category in columns:
            v = value(det, dataset, category)
            if math.isnan(v):
                word = "" if category is None else (
                    "failed" if (det, dataset, category) in failed else "missing")
                tds.append(f"<td class='na' style='background:{MISSING_BACKGROUND}'>{word}</td>")
                continue
            background, colour = heat_colour(round(_position(v, scale, higher_is_better), 3))
            interval = cells[(det, dataset, category)][1] if category is not None else None
            hover = f" title='95% interval {_fmt_interval(interval)}'" if interval else ""
            text = f"{v:.3f}"
            if math.isclose(v, best[(dataset, category)], rel_tol=0, abs_tol=5e-4):
                text = f"<b>{text}</b>"
            mean_class = " class='mean'" if category is None else ""
            tds.append(f"<td{mean_class}{hover} style='background:{background};color:{colour}'>{text}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    legend = "".join(
        f"<span style='background:{heat_colour(t)[0]};color:{heat_colour(t)[1]}'>"
        f"{scale[0] + (t if higher_is_better else 1 - t) * (scale[1] - scale[0]):.2f}</span>"
        for t in (0.0, 0.25, 0.5, 0.75, 1.0))
    return (f"<div id='heat'><h2>{_esc(metric_title)} by category</h2>"
            f"<table class='heat' id='heat-table'>{''.join(rows)}</table>"
            f"<p class='note scale'>Colour scale {legend}; bold: best of the column. Mean over seeds; "
            "hover a cell for its 95% interval.</p></div>")
