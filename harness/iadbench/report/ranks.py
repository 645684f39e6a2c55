"""Mean ranks across datasets, the Friedman test and the Nemenyi critical difference
(Demšar 2006, "Statistical comparisons of classifiers over multiple data sets").

A block, what detectors are ranked within, is one dataset/category: each category has
its own training and test images, which is what the anomaly-detection papers rank over
(MVTec AD's 15 categories, VisA's 12), and a handful of dataset means would be too few
for the test. Categories of one dataset share how they were imaged, so a conclusion
holds for categories like these, and a dataset with more categories weighs more.

Within a block detectors are ranked on the first headline metric (its mean over seeds),
1 = best, ties sharing the average rank. Ranks compare only over the same blocks, so
only blocks where every ranked detector has a value count; a detector with a value in
under half of the blocks is left out first (named), so one short run does not drop the
rest of a merged leaderboard.

The Friedman test (tie-corrected, ``scipy.stats.friedmanchisquare``) asks whether the
mean ranks differ at all; the Iman-Davenport F form of its statistic, less
conservative, is what decides. Only where it rejects at ``ALPHA`` does the Nemenyi
post-hoc test separate pairs: two detectors whose mean ranks differ by at least
CD = q * sqrt(k(k+1) / 6N) differ. With two detectors there is no omnibus test, and none
is needed: Nemenyi's test is then the sign test (normal approximation, ties split).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from iadbench.report.standings import cell_values

ALPHA = 0.05
MIN_BLOCKS = 3  # what the section needs to be shown


@lru_cache(maxsize=64)
def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """The Nemenyi test's critical value for ``k`` detectors: the studentized range
    quantile over sqrt(2) (Demšar 2006, Table 5a)."""
    from scipy.stats import studentized_range

    return float(studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n_blocks: int, alpha: float = ALPHA) -> float:
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n_blocks))


def value_matrix(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Blocks (``dataset/category``) x detectors: each cell's mean over its ok seeds, NaN
    where it has none (failed, missing, metric undefined)."""
    cells = cell_values(frame, metric)
    blocks = sorted({f"{d}/{c}" for d, c in zip(frame["dataset"].astype(str), frame["category"].astype(str))})
    detectors = sorted(frame["detector"].astype(str).unique())
    matrix = pd.DataFrame(np.nan, index=blocks, columns=detectors)
    for (det, dataset, category), (value, _) in cells.items():
        matrix.loc[f"{dataset}/{category}", det] = value
    return matrix


def complete_matrix(values: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(the blocks where every kept detector has a value, the blocks dropped, the
    detectors left out for a value in under half of the blocks)."""
    counts = values.notna().sum(axis=0)
    left_out = sorted(counts.index[counts * 2 < len(values)])
    kept = values.drop(columns=left_out)
    complete = kept.notna().all(axis=1)
    dropped = sorted(kept.index[~complete & kept.notna().any(axis=1)])
    return kept[complete], dropped, left_out


def block_ranks(matrix: pd.DataFrame, higher_is_better: bool = True) -> pd.DataFrame:
    """Each block's ranks (1 = best, ties averaged)."""
    from scipy.stats import rankdata

    # rounded: a mean over seeds should not lose a tie to the last bit
    signed = np.round(matrix.to_numpy(float), 12) * (-1 if higher_is_better else 1)
    return pd.DataFrame(rankdata(signed, axis=1), index=matrix.index, columns=matrix.columns)


def friedman(matrix: pd.DataFrame) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """((chi2, p), (Iman-Davenport F, p)) for blocks x detectors, None under 3 detectors.
    Every block tied throughout: no evidence (statistic 0, p 1)."""
    from scipy.stats import f, friedmanchisquare

    n, k = matrix.shape
    if k < 3:
        return None
    values = np.round(matrix.to_numpy(float), 12)
    if (values == values[:, :1]).all():  # every block tied throughout
        return (0.0, 1.0), (0.0, 1.0)
    chi2, p = friedmanchisquare(*values.T)
    denominator = n * (k - 1) - chi2
    # perfect agreement in every block: chi2 reaches N(k-1) and F is unbounded
    f_stat = (n - 1) * chi2 / denominator if denominator > 1e-12 else math.inf
    f_p = float(f.sf(f_stat, k - 1, (k - 1) * (n - 1))) if math.isfinite(f_stat) else 0.0
    return (float(chi2), float(p)), (float(f_stat), f_p)


def cliques(mean_ranks: pd.Series, cd: float) -> list[list[str]]:
    """The groups a critical-difference diagram joins with a bar: maximal runs of
    detectors (by mean rank) spanning less than ``cd``, two or more detectors each."""
    ordered = mean_ranks.sort_values(kind="stable")
    names, ranks = list(ordered.index), ordered.to_numpy()
    runs = []
    for i in range(len(names)):
        j = i
        while j + 1 < len(names) and ranks[j + 1] - ranks[i] < cd:
            j += 1
        if j > i and not (runs and runs[-1][1] >= j):  # not inside the previous run
            runs.append((i, j))
    return [names[i:j + 1] for i, j in runs]


@dataclass(frozen=True)
class Ranking:
    """Detectors' mean ranks over blocks and what the tests say about them."""

    metric: str
    mean_ranks: pd.Series  # detector -> mean rank, best first
    blocks: list[str]
    dropped: list[str]  # blocks where a ranked detector has no value
    left_out: list[str]  # detectors with a value in under half of the blocks
    friedman: tuple[float, float] | None  # (chi2, p)
    iman_davenport: tuple[float, float] | None  # (F, p)
    cd: float
    alpha: float

    @property
    def separated(self) -> bool:
        """Whether pairs may be told apart: the omnibus test rejects (or k = 2)."""
        return self.iman_davenport is None or self.iman_davenport[1] < self.alpha

    @property
    def groups(self) -> list[list[str]]:
        names = list(self.mean_ranks.index)
        if not self.separated:
            return [names] if len(names) > 1 else []
        return cliques(self.mean_ranks, self.cd)

    def not_separable(self, detector: str) -> list[str]:
        if not self.separated:
            return [d for d in self.mean_ranks.index if d != detector]
        mine = self.mean_ranks[detector]
        return [d for d, r in self.mean_ranks.items() if d != detector and abs(r - mine) < self.cd]

    @property
    def shown(self) -> bool:
        return len(self.blocks) >= MIN_BLOCKS and len(self.mean_ranks) >= 2


def rank_detectors(frame: pd.DataFrame, metric: str, higher_is_better: bool = True,
                   alpha: float = ALPHA) -> Ranking:
    values = value_matrix(frame, metric)
    matrix, dropped, left_out = complete_matrix(values)
    n, k = matrix.shape
    ranks = block_ranks(matrix, higher_is_better).mean(axis=0) if n and k else pd.Series(dtype=float)
    # best first, ties by name
    ranks = ranks.iloc[sorted(range(len(ranks)), key=lambda i: (ranks.iloc[i], ranks.index[i]))]
    tests = friedman(matrix) if n >= 2 else None
    return Ranking(metric, ranks, list(matrix.index), dropped, left_out, tests[0] if tests else None,
                   tests[1] if tests else None, critical_difference(k, n, alpha) if n and k >= 2 else math.nan, alpha)


def _headline(specs) -> tuple[str, bool] | None:
    """(name, higher_is_better) of the first headline metric."""
    for name, spec in specs.items():
        if spec.headline:
            return name, spec.higher_is_better
    return None


def _p(p: float) -> str:
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.3g}"


def _tests_text(r: Ranking) -> str:
    k, n = len(r.mean_ranks), len(r.blocks)
    if r.friedman is None:
        omnibus = "Two detectors: no omnibus test needed (Nemenyi's test is then the sign test)."
    else:
        (chi2, p), (f_stat, f_p) = r.friedman, r.iman_davenport
        omnibus = (f"Friedman χ²({k - 1}) = {chi2:.2f}, {_p(p)}; Iman-Davenport F({k - 1}, {(k - 1) * (n - 1)}) "
                   f"= {f_stat:.2f}, {_p(f_p)}".replace("= inf", "= ∞")
                   + ("." if r.separated else f": the mean ranks are not shown to differ at α = {r.alpha:g}, "
                      "so no pair is separated."))
    return (f"{omnibus} Nemenyi critical difference at α = {r.alpha:g}: CD = {nemenyi_q(k, r.alpha):.3f} · "
            f"√(k(k+1)/6N) = {r.cd:.2f} (k = {k}, N = {n}); mean ranks closer than that are not separable.")


def _coverage_text(r: Ranking) -> str:
    parts = []
    if r.dropped:
        parts.append(f"{len(r.dropped)} block(s) dropped, a ranked detector has no value there: {', '.join(r.dropped)}.")
    if r.left_out:
        parts.append(f"Left out, a value in under half of the blocks: {', '.join(r.left_out)}.")
    return " ".join(parts)


def ranks_table(r: Ranking) -> pd.DataFrame:
    rows = [{"detector": d, "mean rank": f"{rank:.2f}", "blocks": len(r.blocks),
             "not separable from": ", ".join(r.not_separable(d)) or "–"} for d, rank in r.mean_ranks.items()]
    return pd.DataFrame(rows)


def across_ranking(frame: pd.DataFrame, specs) -> Ranking | None:
    """The ranking on the first headline metric, None without one or without 2 detectors."""
    headline = _headline(specs)
    if headline is None or frame["detector"].nunique() < 2:
        return None
    return rank_detectors(frame, headline[0], headline[1])


def _title(specs, metric: str) -> str:
    """The metric's name in prose ("image AUROC"), else its registered name."""
    spec = specs.get(metric) if specs else None
    return spec.title if spec is not None else metric


def across_section(frame: pd.DataFrame, specs) -> list[str]:
    """The leaderboard's "Across datasets" section (markdown lines): nothing under
    ``MIN_BLOCKS`` dataset/category columns, one line when too few are complete."""
    r = across_ranking(frame, specs)
    if r is None or frame["column"].nunique() < MIN_BLOCKS:
        return []
    if not r.shown:
        return ["", "## Across datasets", "",
                f"_Not ranked: {len(r.blocks)} block(s) where {len(r.mean_ranks)} detector(s) all have a value; "
                f"{MIN_BLOCKS} blocks and 2 detectors needed. "
                f"{_coverage_text(r)}".strip() + "_"]
    note = " ".join(filter(None, [
        f"Mean rank on {_title(specs, r.metric)} (1 = best, ties share the average rank) over {len(r.blocks)} blocks, a block "
        "being one dataset/category and the detectors' mean over seeds there (Demšar 2006).",
        _tests_text(r), _coverage_text(r)]))
    return ["", "## Across datasets", "", f"_{note}_", "", ranks_table(r).to_markdown(
        index=False, disable_numparse=True, colalign=("left", "right", "right", "left"))]


def cd_diagram(r: Ranking) -> bytes:
    """A critical-difference diagram (PNG): the rank axis (1 at the left), each detector
    at its mean rank labelled at the side nearer to it, thick bars joining groups not
    separable, the CD interval above the axis."""
    from iadbench.report.plots import _figure, _png

    names, ranks = list(r.mean_ranks.index), r.mean_ranks.to_numpy(float)
    k, groups = len(names), r.groups
    left = (k + 1) // 2
    row_gap, bar_gap = 0.28, 0.12
    bars_bottom = 0.15 + bar_gap * len(groups)
    rows = max(left, k - left)
    top, bottom = 0.8, -(bars_bottom + row_gap * (rows + 0.6))
    fig = _figure(8.0, 0.8 * (top - bottom))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    span = max(k - 1, 1)
    ax.set_xlim(1 - 0.6 * span, k + 0.6 * span)
    ax.set_ylim(bottom, top)
    ax.plot([1, k], [0, 0], color="k", lw=1)
    for tick in range(1, k + 1):
        ax.plot([tick, tick], [0, 0.06], color="k", lw=1)
        ax.text(tick, 0.1, str(tick), ha="center", va="bottom", fontsize=9)
    if math.isfinite(r.cd):
        ax.plot([1, 1 + r.cd], [0.5, 0.5], color="k", lw=1.5)
        for end in (1, 1 + r.cd):
            ax.plot([end, end], [0.45, 0.55], color="k", lw=1.5)
        ax.text(1 + r.cd / 2, 0.57, f"CD = {r.cd:.2f}", ha="center", va="bottom", fontsize=9)
    for i, group in enumerate(groups):
        lo, hi = r.mean_ranks[group[0]], r.mean_ranks[group[-1]]
        y = -0.15 - bar_gap * i
        ax.plot([lo - 0.03, hi + 0.03], [y, y], color="k", lw=4, solid_capstyle="butt")
    for i, (name, rank) in enumerate(zip(names, ranks)):
        on_left = i < left
        row = i if on_left else k - 1 - i
        y = -bars_bottom - row_gap * (row + 1)
        end = 1 - 0.12 * span if on_left else k + 0.12 * span
        ax.plot([rank, rank, end], [0, y, y], color="0.25", lw=1)
        label = f"{name} ({rank:.2f})" if on_left else f"({rank:.2f}) {name}"
        ax.text(end + (-0.03 if on_left else 0.03) * span, y, label, ha="right" if on_left else "left",
                va="center", fontsize=9)
    return _png(fig)


def across_html(frame: pd.DataFrame, specs, files: Path) -> str:
    """The report's "Across datasets" section with its diagram (``ranks.png`` in
    ``files``); "" where the leaderboard shows no ranking."""
    r = across_ranking(frame, specs)
    if r is None or not r.shown:
        return ""
    (files / "ranks.png").write_bytes(cd_diagram(r))
    esc = html.escape
    table = ranks_table(r)
    head = "".join(f"<th>{esc(str(c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>"
                   for row in table.itertuples(index=False))
    return (f"<section id='across-datasets'><h2>Across datasets</h2>"
            f"<img src=\"{esc(files.name)}/ranks.png\" alt=\"critical-difference diagram: mean ranks on {esc(_title(specs, r.metric))}\">"
            f"<p class='note'>Mean rank on {esc(_title(specs, r.metric))} over {len(r.blocks)} dataset/category blocks (1 = best). "
            f"A thick bar joins detectors not separable from one another. {esc(_tests_text(r))} "
            f"{esc(_coverage_text(r))}</p><table><tr>{head}</tr>{body}</table></section>")
