"""The report's matplotlib figures (Agg backend, PNG bytes): a cell's ROC, PR and
score histograms in one figure, and the cost chart (latency vs image AUROC).

A default grid has ~80 cells, so figures are built for speed: object-oriented Figure
on an Agg canvas (no pyplot state), one figure per cell, a fixed layout instead of
tight_layout (which draws twice) and histograms as two step artists, not 60 bars.
"""

from __future__ import annotations

import io
import math

import numpy as np

DPI = 72


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def cell_figure(labels: np.ndarray, scores: np.ndarray, threshold: float | None) -> bytes:
    """ROC and PR curves (image level) and histograms of good vs defective test
    scores with the held-out threshold drawn, side by side."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=float)
    fig = _figure(11, 3.2)
    roc_ax, pr_ax, hist_ax = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.16, top=0.9, wspace=0.28)
    defined = 0 < labels.sum() < len(labels) and np.isfinite(scores).all()
    if defined:
        fpr, tpr, _ = roc_curve(labels, scores)
        roc_ax.plot(fpr, tpr, color="C0")
        roc_ax.set_title(f"ROC (AUROC {auc(fpr, tpr):.3f})", fontsize=10)
        precision, recall, _ = precision_recall_curve(labels, scores)
        pr_ax.plot(recall, precision, color="C1")
        pr_ax.set_title("precision-recall (image)", fontsize=10)
    else:
        for ax in (roc_ax, pr_ax):
            ax.text(0.5, 0.5, "undefined: needs good and defective images", ha="center", va="center", fontsize=8)
    roc_ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    roc_ax.set_xlabel("false positive rate")
    roc_ax.set_ylabel("true positive rate")
    pr_ax.set_xlabel("recall")
    pr_ax.set_ylabel("precision")
    finite = scores[np.isfinite(scores)]
    if finite.size:
        bins = np.linspace(finite.min(), finite.max() if finite.max() > finite.min() else finite.min() + 1, 31)
        for label, name, colour in ((0, "good", "C2"), (1, "defective", "C3")):
            values = scores[(labels == label) & np.isfinite(scores)]
            if values.size:
                counts, edges = np.histogram(values, bins=bins)
                hist_ax.stairs(counts, edges, fill=True, alpha=0.55, color=colour, label=f"{name} ({values.size})")
    if threshold is not None and math.isfinite(threshold):
        hist_ax.axvline(threshold, color="k", ls="--", lw=1, label="held-out threshold")
    hist_ax.set_title("test image scores", fontsize=10)
    hist_ax.set_xlabel("raw score")
    hist_ax.legend(fontsize=7)
    return _png(fig)


def cost_chart(points: list[tuple[str, float, float]]) -> bytes:
    """One point per detector: (name, latency ms/image p50, mean image AUROC)."""
    fig = _figure(7, 4.2)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.13, top=0.92)
    shown = [(n, x, y) for n, x, y in points if x and y is not None and math.isfinite(x) and math.isfinite(y) and x > 0]
    for i, (name, latency, quality) in enumerate(shown):
        ax.scatter([latency], [quality], color=f"C{i % 10}")
        ax.annotate(name, (latency, quality), fontsize=7, xytext=(4, 3), textcoords="offset points")
    if shown:
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no detector with both latency and image AUROC", ha="center", va="center")
    ax.set_xlabel("latency per image, ms (batch 1, p50, log scale)")
    ax.set_ylabel("image AUROC (mean over cells)")
    ax.set_title("speed vs quality (up and left is better)", fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)
