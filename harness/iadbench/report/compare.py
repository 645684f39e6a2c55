"""Per-cell deltas between two runs (B minus A), matched by detector label and
identity (params, detector name and version), dataset, category and seed: a label
whose setup changed between the runs is two detectors, not one with a delta.

Each shared cell also gets a paired bootstrap p-value for its image AUROC difference
(iadbench.report.intervals.paired_p_value): both cells' per-image scores (scores.csv),
matched by image path, are resampled together, so the test images' own difficulty
cancels out. Pairs of the same detector on the same images differ only by seed or
version; a small p says the difference is larger than test-set sampling explains."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from iadbench.report.records import ID_COLUMNS, MATCH_COLUMNS, display_names, load_runs

COMPARED = [
    "metrics.image_auroc",
    "metrics.pixel_auroc",
    "metrics.aupro",
    "metrics.f1",
    "cost.fit_s",
    "cost.latency_ms_p50",
    "cost.peak_rss_mb",
]


def compare(run_a: Path, run_b: Path) -> pd.DataFrame:
    a, _ = load_runs([run_a])
    b, _ = load_runs([run_b])
    merged = a.merge(b, on=MATCH_COLUMNS, how="outer", suffixes=(" A", " B"), indicator=True)
    # names over both runs, so a label whose identity changed shows its two hashes
    merged["detector"] = display_names(merged)
    out = merged[ID_COLUMNS].copy()
    out["status"] = [
        {"both": f"{sa}/{sb}", "left_only": "only in A", "right_only": "only in B"}[m]
        for sa, sb, m in zip(merged.get("status A"), merged.get("status B"), merged["_merge"])
    ]
    out["p image AUROC"] = [
        _paired_p(da, db) if m == "both" and sa == "ok" and sb == "ok" else float("nan")
        for da, db, sa, sb, m in zip(merged.get("cell_dir A"), merged.get("cell_dir B"), merged.get("status A"),
                                     merged.get("status B"), merged["_merge"])
    ]
    for col in COMPARED:
        ca, cb = f"{col} A", f"{col} B"
        if ca not in merged or cb not in merged:
            continue
        va, vb = pd.to_numeric(merged[ca], errors="coerce"), pd.to_numeric(merged[cb], errors="coerce")
        short = col.split(".", 1)[1]
        if col.startswith("cost."):
            out[f"{short} B/A"] = vb / va
        else:
            out[f"Δ {short}"] = vb - va
    return out.sort_values(ID_COLUMNS).reset_index(drop=True)


def _paired_p(cell_a: str, cell_b: str) -> float:
    """Paired bootstrap p-value of two cells' image AUROC on their shared test images
    (NaN when scores are missing, the images differ, or AUROC is undefined)."""
    from iadbench.report.breakdown import read_scores
    from iadbench.report.intervals import paired_p_value

    a, b = read_scores(cell_a), read_scores(cell_b)
    if a is None or b is None:
        return float("nan")
    both = a.merge(b, on="path", suffixes=(" a", " b"))
    if both.empty or (both["label a"] != both["label b"]).any():
        return float("nan")
    p = paired_p_value(both["label a"].to_numpy(), both["score a"].to_numpy(), both["score b"].to_numpy())
    return float("nan") if p is None else p
