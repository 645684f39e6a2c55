"""Per-defect-type results of a cell, from its ``scores.csv``: for each defect folder,
image AUROC of that defect type against the good test images, and recall at the
held-out threshold (the share of its images scored above it)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

SCORES_FILE = "scores.csv"


def read_scores(cell_dir: str | Path) -> pd.DataFrame | None:
    """A cell's per-image scores (path, label, defect_type, score), or None."""
    path = Path(cell_dir) / SCORES_FILE
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, dtype={"path": str, "defect_type": str})
    except Exception:  # noqa: BLE001 - a damaged file only loses its table
        return None
    if not {"path", "label", "defect_type", "score"} <= set(frame.columns):
        return None
    return frame


def read_calibration(cell_dir: str | Path):
    """A cell's calibration scores (good training images scored by models that did not
    fit them; ``calibration.csv``) as an array, or None."""
    import numpy as np

    path = Path(cell_dir) / "calibration.csv"
    if not path.is_file():
        return None
    try:
        values = pd.read_csv(path)["score"].to_numpy(dtype=float)
    except Exception:  # noqa: BLE001 - a damaged file only loses its picture
        return None
    return values if values.size and np.isfinite(values).all() else None


def tail_curve(calibration, threshold: float | None, points: int = 12) -> list[tuple[float, float]] | None:
    """(threshold, estimated false-alarm rate) beyond the largest calibration score, up to
    ``threshold``, from the tail fit: where the threshold lies past the data."""
    import math

    import numpy as np

    from iadbench.calibration.tail import rate_above

    top = float(np.max(calibration))
    if threshold is None or not math.isfinite(threshold) or threshold <= top:
        return None
    try:
        return [(float(t), rate_above(calibration, float(t)).value) for t in np.linspace(top, threshold, points)]
    except Exception:  # noqa: BLE001 - the picture goes without its tail
        return None


def defect_breakdown(scores: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """One row per defect type: ``images``, ``auroc`` (vs good images; NaN without any)
    and ``recall`` at ``threshold`` (NaN without one)."""
    from sklearn.metrics import roc_auc_score

    good = scores.loc[scores["label"] == 0, "score"].to_numpy(dtype=float)
    rows = []
    for defect, group in scores[scores["label"] == 1].groupby("defect_type", sort=True):
        bad = group["score"].to_numpy(dtype=float)
        auroc = float("nan")
        if len(good) and np.isfinite(bad).all() and np.isfinite(good).all():
            y = np.r_[np.zeros(len(good)), np.ones(len(bad))]
            auroc = float(roc_auc_score(y, np.r_[good, bad]))
        has_threshold = threshold is not None and math.isfinite(threshold)
        recall = float(np.mean(bad > threshold)) if has_threshold else float("nan")
        rows.append({"defect_type": defect, "images": len(bad), "auroc": auroc, "recall": recall})
    return pd.DataFrame(rows, columns=["defect_type", "images", "auroc", "recall"])


def dataset_breakdown(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Rows (category, defect type), one column per detector: ``AUROC / recall``,
    averaged over seeds; ``–`` where a cell has no scores."""
    ok = frame[(frame["dataset"] == dataset) & (frame["status"] == "ok")]
    parts = []
    for _, row in ok.iterrows():
        scores = read_scores(row["cell_dir"])
        if scores is None:
            continue
        table = defect_breakdown(scores, row.get("threshold"))
        if table.empty:
            continue
        table["category"] = row["category"]
        table["detector"] = row["detector"]
        parts.append(table)
    if not parts:
        return pd.DataFrame()
    long = pd.concat(parts).groupby(["category", "defect_type", "detector"], as_index=False)[["images", "auroc", "recall"]].mean()
    long["cell"] = [f"{_fmt(a)} / {_fmt(r)}" for a, r in zip(long["auroc"], long["recall"])]
    wide = long.pivot_table(index=["category", "defect_type"], columns="detector", values="cell", aggfunc="first")
    images = long.groupby(["category", "defect_type"])["images"].max().astype(int)
    wide.insert(0, "images", images)
    wide = wide.fillna("–")
    wide.columns.name = None
    return wide.reset_index().rename(columns={"defect_type": "defect type"})


def _fmt(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"

