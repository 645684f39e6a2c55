"""What labelled defects buy: a mixed-supervision sweep (``--defects-in-train 0,1,5``)
shown as a table and a chart of each metric against K.

Every cell of a sweep is scored on the test set its largest K leaves
(iadbench.model.defects), so the values at different K compare. A detector that does
not learn from labels runs once per category; its value stands for every K and is drawn
as a flat line: the yardstick the learners' curves must clear.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: The metrics a sweep is judged on, where registered and recorded.
SWEEP_METRICS = ("image_auroc", "image_ap", "pixel_ap")


def sweep_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The ok rows of sweep cells (those with defects set aside)."""
    if "defects_reserve" not in frame:
        return frame.iloc[:0]
    return frame[(frame["defects_reserve"] > 0) & (frame["status"] == "ok")]


def sweep_ks(rows: pd.DataFrame) -> list[int]:
    """The Ks the learners of ``rows`` ran at, in order."""
    learners = rows[rows["defects_learns"]]
    return sorted({int(k) for k in learners["defects_k"].dropna()})


def _interval(group: pd.DataFrame, metric: str) -> tuple[float, float] | None:
    """The bootstrap interval of a single cell (one category, one seed), else None: an
    interval of a mean over categories is not the mean of their intervals."""
    column = f"ci.{metric}"
    if len(group) != 1 or column not in group:
        return None
    ends = group[column].iloc[0]
    if not isinstance(ends, (list, tuple)) or len(ends) != 2 or None in ends:
        return None
    return float(ends[0]), float(ends[1])


def curves(rows: pd.DataFrame, metric: str) -> dict[str, dict[str, object]]:
    """Per detector (base label): ``learns``, and ``points`` [(K, mean, interval or None)]
    of ``metric`` averaged over categories and seeds. A learner's mean at a K is left
    out unless every category has a value there (a partial mean would flatter it)."""
    column = f"metrics.{metric}"
    if column not in rows:
        return {}
    categories = rows["column"].nunique()
    out: dict[str, dict[str, object]] = {}
    for label, group in rows.groupby("base_label"):
        learns = bool(group["defects_learns"].any())
        keyed = group.groupby(group["defects_k"].fillna(0).astype(int)) if learns else [(None, group)]
        points = []
        for k, cells in keyed:
            values = pd.to_numeric(cells[column], errors="coerce")
            if values.isna().any() or cells["column"].nunique() < categories:
                continue
            points.append((k, float(values.mean()), _interval(cells, metric)))
        if points:
            out[str(label)] = {"learns": learns, "points": points}
    return out


def sweep_table(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Detector x K table of ``metric`` (strings): a learner's value per K, a detector
    that does not learn from labels its one value under every K."""
    ks = sweep_ks(rows)
    table = pd.DataFrame(index=[], columns=[f"K={k}" for k in ks], dtype=object)
    for label, curve in sorted(curves(rows, metric).items()):
        if curve["learns"]:
            by_k = {k: _shown(v, iv) for k, v, iv in curve["points"]}
            table.loc[label] = [by_k.get(k, "") for k in ks]
        else:
            _, value, interval = curve["points"][0]
            table.loc[label] = [_shown(value, interval)] * len(ks)
    table.index.name = "detector"
    return table


def _shown(value: float, interval: tuple[float, float] | None) -> str:
    text = "" if math.isnan(value) else f"{value:.3f}"
    return text + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def describe(rows: pd.DataFrame) -> str:
    """The sweep's protocol in one sentence."""
    reserve = int(rows["defects_reserve"].max())
    return (f"_Each category set aside {reserve} labelled defective image(s) (seeded); a detector that learns from "
            "labels trained on the first K of them, and every row is scored on the test set that remains, so the "
            "columns compare. Detectors that do not learn from labels ran once: their value stands for every K. "
            "Mean over categories and seeds; brackets: 95% bootstrap interval where one cell makes the value._")


def sweep_section(frame: pd.DataFrame, specs) -> list[str]:
    """The leaderboard's "What labelled defects buy" section (empty without a sweep)."""
    rows = sweep_frame(frame)
    if rows.empty or not sweep_ks(rows):
        return []
    parts = ["", "## What labelled defects buy", "", describe(rows)]
    for dataset in sorted(rows["dataset"].unique()):
        in_dataset = rows[rows["dataset"] == dataset]
        for metric in SWEEP_METRICS:
            if metric not in specs or f"metrics.{metric}" not in in_dataset:
                continue
            table = sweep_table(in_dataset, metric)
            if table.empty:
                continue
            parts += ["", f"**{dataset}: {specs[metric].title}**", "", table.to_markdown(disable_numparse=True)]
    return parts


def sweep_chart(rows: pd.DataFrame, metrics: list[tuple[str, str]]) -> bytes:
    """One panel per (metric name, title): each learner's mean against K (its interval
    as a band where a single cell makes each point), each other detector a flat dashed
    line. K on a symmetric-log axis: 0, 1, 5, 20 spread evenly enough to read."""
    from iadbench.report.plots import _figure, _png

    ks = sweep_ks(rows)
    fig = _figure(3.4 * len(metrics), 2.9)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.3, top=0.88, wspace=0.3)
    handles = {}
    for ax, (metric, title) in zip(axes, metrics):
        for i, (label, curve) in enumerate(sorted(curves(rows, metric).items())):
            color = f"C{i % 10}"
            if curve["learns"]:
                x = np.array([p[0] for p in curve["points"]], dtype=float)
                y = np.array([p[1] for p in curve["points"]])
                (line,) = ax.plot(x, y, marker="o", color=color, lw=1.6)
                bands = [p[2] for p in curve["points"]]
                if all(b is not None for b in bands):
                    ax.fill_between(x, [b[0] for b in bands], [b[1] for b in bands], color=color, alpha=0.15, lw=0)
            else:
                line = ax.axhline(curve["points"][0][1], color=color, ls="--", lw=1.2)
            handles[label] = line
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
        ax.set_xlabel("labelled defects in training (K)")
        ax.set_title(title, fontsize=10)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 5), fontsize=8,
               frameon=False)
    return _png(fig)
