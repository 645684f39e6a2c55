"""Per-cell deltas between two runs (B minus A), matched by detector label and
identity (params, detector name and version), dataset, category and seed: a label
whose setup changed between the runs is two detectors, not one with a delta."""

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
