"""The report's matplotlib figures (Agg backend, PNG bytes): a cell's ROC, PR and
score histograms in one figure, and the cost chart (latency vs a quality metric, with its
Pareto front and labels placed without overlaps).

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
    fig.savefig(buf, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


class _CellFigure:
    """One figure reused for every cell a process draws: its axes, lines, step
    histograms and legend are built once and only their data change, which skips
    most of matplotlib's per-figure work (artist creation, text layout)."""

    def __init__(self):
        from matplotlib.ticker import MaxNLocator

        fig = _figure(11, 3.2)
        self.fig = fig
        self.roc_ax, self.pr_ax, self.hist_ax = fig.subplots(1, 3)
        fig.subplots_adjust(left=0.05, right=0.99, bottom=0.16, top=0.9, wspace=0.28)
        for ax, xlabel, ylabel in ((self.roc_ax, "false positive rate", "true positive rate"),
                                   (self.pr_ax, "recall", "precision")):
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.set_xticks([0, 0.5, 1])
            ax.set_yticks([0, 0.5, 1])
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
        self.roc_ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        (self.roc,) = self.roc_ax.plot([], [], color="C0")
        (self.pr,) = self.pr_ax.plot([], [], color="C1")
        self.pr_ax.set_title("precision-recall (image)", fontsize=10)
        self.undefined = [ax.text(0.5, 0.5, "undefined: needs good and defective images", ha="center",
                                  va="center", fontsize=8) for ax in (self.roc_ax, self.pr_ax)]
        edges = np.linspace(0, 1, 31)
        self.good = self.hist_ax.stairs(np.zeros(30), edges, fill=True, alpha=0.55, color="C2", label="good")
        self.bad = self.hist_ax.stairs(np.zeros(30), edges, fill=True, alpha=0.55, color="C3", label="defective")
        self.threshold = self.hist_ax.axvline(0, color="k", ls="--", lw=1, label="threshold")
        self.hist_ax.legend(fontsize=7, loc="upper center")
        self.hist_ax.set_xlabel("raw score")
        self.hist_ax.xaxis.set_major_locator(MaxNLocator(4))
        self.hist_ax.yaxis.set_major_locator(MaxNLocator(4, integer=True))

    def draw(self, labels: np.ndarray, scores: np.ndarray, threshold: float | None) -> bytes:
        from sklearn.metrics import auc, precision_recall_curve, roc_curve

        labels = np.asarray(labels).astype(int)
        scores = np.asarray(scores, dtype=float)
        defined = bool(0 < labels.sum() < len(labels) and np.isfinite(scores).all())
        for text in self.undefined:
            text.set_visible(not defined)
        if defined:
            fpr, tpr, _ = roc_curve(labels, scores)
            self.roc.set_data(fpr, tpr)
            self.roc_ax.set_title(f"ROC (AUROC {auc(fpr, tpr):.3f})", fontsize=10)
            precision, recall, _ = precision_recall_curve(labels, scores)
            self.pr.set_data(recall, precision)
        else:
            self.roc.set_data([], [])
            self.pr.set_data([], [])
            self.roc_ax.set_title("ROC", fontsize=10)
        finite = np.isfinite(scores)
        values = scores[finite]
        low = float(values.min()) if values.size else 0.0
        high = float(values.max()) if values.size else 1.0
        high = high if high > low else low + 1.0
        has_threshold = threshold is not None and math.isfinite(threshold)
        if has_threshold:
            low, high = min(low, threshold), max(high, threshold)
        edges = np.linspace(low, high, 31)
        top = 1
        for artist, label in ((self.good, 0), (self.bad, 1)):
            counts, _ = np.histogram(scores[finite & (labels == label)], bins=edges)
            artist.set_data(values=counts, edges=edges)
            top = max(top, int(counts.max()))
        self.threshold.set_visible(has_threshold)
        if has_threshold:
            self.threshold.set_xdata([threshold, threshold])
        pad = (high - low) * 0.03
        self.hist_ax.set_xlim(low - pad, high + pad)
        self.hist_ax.set_ylim(0, top * 1.15)
        n_good, n_bad = int((labels == 0).sum()), int((labels == 1).sum())
        self.hist_ax.set_title(f"test image scores ({n_good} good, {n_bad} defective)", fontsize=10)
        return _png(self.fig)


_CELL_FIGURE: list[_CellFigure] = []


def cell_figure(labels: np.ndarray, scores: np.ndarray, threshold: float | None) -> bytes:
    """ROC and PR curves (image level) and histograms of good vs defective test
    scores with the calibrated threshold drawn, side by side."""
    if not _CELL_FIGURE:
        _CELL_FIGURE.append(_CellFigure())
    return _CELL_FIGURE[0].draw(labels, scores, threshold)


def calibration_figure(calibration: np.ndarray, labels: np.ndarray, scores: np.ndarray, threshold: float | None,
                       target: float | None, tail: list[tuple[float, float]] | None = None) -> bytes:
    """What a threshold does, as rates against the threshold (log scale): the share of
    calibration scores above each value (what the calibration predicts for good parts),
    the share of good test images above it (what happened), the share of defective ones
    (recall); the tail fit beyond the calibration data where one was used, the threshold
    and its false-alarm target."""
    fig = _figure(7.0, 3.4)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.1, right=0.7, bottom=0.15, top=0.9)
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=float)

    def survival(values: np.ndarray, **style) -> None:
        values = np.sort(values[np.isfinite(values)])
        if values.size:
            share = 1.0 - np.arange(1, values.size + 1) / values.size
            ax.step(np.r_[values[0], values], np.r_[1.0, share], where="post", **style)

    survival(np.asarray(calibration, dtype=float), color="C0", label=f"calibration, good ({len(calibration)})")
    survival(scores[labels == 0], color="C2", label=f"test, good ({int((labels == 0).sum())})")
    survival(scores[labels == 1], color="C3", label=f"test, defective ({int((labels == 1).sum())})")
    if tail:
        ax.plot([t for t, _ in tail], [r for _, r in tail], color="C0", ls=":", label="tail fit")
    if threshold is not None and math.isfinite(threshold):
        ax.axvline(threshold, color="k", ls="--", lw=1, label="threshold")
    if target:
        ax.axhline(target, color="0.5", lw=0.8, label=f"target {target:.1%}")
    ax.set_yscale("log")
    floor = 0.5 / max(len(calibration), 1, len(scores))
    ax.set_ylim(max(1e-4, min(floor, target / 3 if target else floor)), 1.5)
    ax.set_xlabel("raw score threshold")
    ax.set_ylabel("share of images above it")
    ax.set_title("false alarms and recall by threshold", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    ax.grid(alpha=0.3)
    return _png(fig)


#: Cost chart: label font size (points) and the room each point's marker takes (pixels).
LABEL_SIZE = 8
MARKER_HALF = 4.0
COST_FIGSIZE = (7.0, 4.2)  # inches; the page sizes the picture from it


def cost_figure(points: list[tuple[str, float, float]], metric: str, higher_is_better: bool = True,
                cpu: str | None = None):
    """The cost chart as a figure: one point per detector (name, latency ms/image p50,
    mean of ``metric``), the Pareto front as a staircase from the fastest detector to
    the best, labels placed where they overlap neither each other nor a point (front
    first; a label with no room nearby is listed under the chart instead)."""
    from iadbench.report.label_layout import place_labels
    from iadbench.report.pareto import pareto_front

    fig = _figure(*COST_FIGSIZE)
    fig.set_dpi(DPI)  # label geometry is measured in the pixels the PNG is saved at
    ax = fig.subplots()
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.15, top=0.9)
    shown = [(n, x, y) for n, x, y in points if x and y is not None and math.isfinite(x) and math.isfinite(y) and x > 0]
    ax.set_xlabel("latency per image, ms (batch 1, p50, log scale)" + (f", {cpu}" if cpu else ""), fontsize=9)
    ax.set_ylabel(f"{metric} (mean over cells)", fontsize=9)
    ax.set_title(f"speed vs quality ({'up' if higher_is_better else 'down'} and left is better)", fontsize=10)
    ax.grid(alpha=0.3)
    if not shown:
        ax.text(0.5, 0.5, f"no detector with both latency and {metric}", ha="center", va="center")
        return fig
    xs = np.array([x for _, x, _ in shown])
    ys = np.array([y for _, _, y in shown])
    front = pareto_front(list(zip(xs, ys)), higher_is_better)
    ax.set_xscale("log")
    ax.set_xlim(xs.min() / 2.0, xs.max() * 2.0)  # room for labels left and right of the extremes
    span = max(float(ys.max() - ys.min()), 0.02)
    ax.set_ylim(ys.min() - 0.15 * span, ys.max() + 0.15 * span)
    rest = [i for i in range(len(shown)) if i not in front]
    ax.scatter(xs[rest], ys[rest], s=(2 * MARKER_HALF) ** 2, color="0.6", zorder=3)
    ax.scatter(xs[front], ys[front], s=(2 * MARKER_HALF) ** 2, color="C0", zorder=4)
    ax.step(xs[front], ys[front], where="post", color="C0", lw=1.2, zorder=2,
            label="Pareto front: none both faster and better")
    legend = ax.legend(fontsize=7, loc="best")

    renderer = fig.canvas.get_renderer()
    sizes = []
    for name, _, _ in shown:
        probe = fig.text(0, 0, name, fontsize=LABEL_SIZE)
        extent = probe.get_window_extent(renderer)
        sizes.append((extent.width, extent.height))
        probe.remove()
    anchors = ax.transData.transform(np.column_stack([xs, ys]))
    area = ax.get_window_extent(renderer)
    order = front + sorted(rest, key=lambda i: -ys[i] if higher_is_better else ys[i])
    boxes = place_labels([tuple(anchors[i]) for i in order], [sizes[i] for i in order],
                         (area.x0, area.y0, area.x1, area.y1), _staircase_boxes(anchors[front]) + [
                             tuple(legend.get_window_extent(renderer).extents)], marker=MARKER_HALF)
    unplaced = []
    for i, box in zip(order, boxes):
        if box is None:
            unplaced.append(shown[i][0])
            continue
        # beyond the first ring a line ties the label to its point
        far = math.dist(anchors[i], (min(max(anchors[i][0], box[0]), box[2]),
                                     min(max(anchors[i][1], box[1]), box[3]))) > 2.5 * MARKER_HALF + 1
        ax.annotate(shown[i][0], (xs[i], ys[i]), xytext=(box[0], box[1]), textcoords="figure pixels",
                    ha="left", va="bottom", fontsize=LABEL_SIZE,
                    arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6} if far else None)
    if unplaced:
        fig.text(0.01, 0.01, "not labelled (no room): " + ", ".join(unplaced), fontsize=7)
    return fig


def _staircase_boxes(front: np.ndarray, half_width: float = 1.5) -> list[tuple[float, float, float, float]]:
    """The Pareto staircase (display pixels, cost ascending) as thin boxes labels avoid."""
    boxes = []
    for (x0, y0), (x1, y1) in zip(front[:-1], front[1:]):
        boxes.append((x0, y0 - half_width, x1, y0 + half_width))  # along at the old quality
        boxes.append((x1 - half_width, min(y0, y1), x1 + half_width, max(y0, y1)))  # up to the new
    return boxes


def cost_chart(points: list[tuple[str, float, float]], metric: str, higher_is_better: bool = True,
               cpu: str | None = None) -> bytes:
    """``cost_figure`` as PNG bytes."""
    return _png(cost_figure(points, metric, higher_is_better, cpu))
