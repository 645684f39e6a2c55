"""Per-cell deltas between two runs (B minus A), matched by detector label and
identity (params, detector name and version), dataset, category and seed: a label
whose setup changed between the runs is two detectors, not one with a delta.

The metrics compared are the registered headline metrics. Each shared cell also gets
a paired bootstrap p-value (iadbench.metrics.intervals.paired_p_value) for each of
those that can be recomputed from per-image scores alone (an image-level interval,
no threshold): both cells' scores (scores.csv), matched by image path, are resampled
together, so the test images' own difficulty cancels out. Pairs of the same detector
on the same images differ only by seed or version; a small p says the difference is
larger than test-set sampling explains."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from iadbench.report.records import ID_COLUMNS, MATCH_COLUMNS, display_names, load_runs
from iadbench.types import EvalData, MetricSpec

COMPARED_COST = ["cost.fit_s", "cost.latency_ms_p50", "cost.peak_rss_mb"]


def _registry_metrics() -> dict[str, MetricSpec]:
    from iadbench.plugins import get_registry

    return get_registry().metrics


def compared_metrics(specs: Mapping[str, MetricSpec]) -> list[str]:
    return [name for name, spec in specs.items() if spec.headline]


def paired_metrics(specs: Mapping[str, MetricSpec]) -> list[str]:
    """Headline metrics a paired p-value can be computed for from scores.csv."""
    return [name for name in compared_metrics(specs)
            if specs[name].interval == "image" and not specs[name].needs_threshold]


def compare(run_a: Path, run_b: Path, specs: Mapping[str, MetricSpec] | None = None) -> pd.DataFrame:
    specs = _registry_metrics() if specs is None else specs
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
    for name in paired_metrics(specs):
        out[f"p {specs[name].title}"] = [
            _paired_p(specs[name], da, db) if m == "both" and sa == "ok" and sb == "ok" else float("nan")
            for da, db, sa, sb, m in zip(merged.get("cell_dir A"), merged.get("cell_dir B"), merged.get("status A"),
                                         merged.get("status B"), merged["_merge"])
        ]
    for col in [f"metrics.{name}" for name in compared_metrics(specs)] + COMPARED_COST:
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


def _scores_data(frame: pd.DataFrame, suffix: str) -> EvalData:
    """A cell's per-image scores as EvalData with no maps and no threshold."""
    n = len(frame)
    return EvalData(labels=frame[f"label{suffix}"].to_numpy(), scores=frame[f"score{suffix}"].to_numpy(dtype=float),
                    maps=np.zeros((n, 0, 0), np.float32), masks=None, threshold=math.nan,
                    defect_types=[str(d) for d in frame[f"defect_type{suffix}"]])


def _paired_p(spec: MetricSpec, cell_a: str, cell_b: str) -> float:
    """Paired bootstrap p-value of two cells' ``spec`` metric on their shared test
    images (NaN when scores are missing, the images differ, or the metric is undefined)."""
    from iadbench.metrics.intervals import paired_p_value
    from iadbench.report.breakdown import read_scores

    a, b = read_scores(cell_a), read_scores(cell_b)
    if a is None or b is None:
        return float("nan")
    both = a.merge(b, on="path", suffixes=(" a", " b"))
    if both.empty or (both["label a"] != both["label b"]).any():
        return float("nan")
    try:
        p = paired_p_value(spec, _scores_data(both, " a"), _scores_data(both, " b"))
    except Exception:  # noqa: BLE001 - a plugin's broken resampler only loses its p-value
        return float("nan")
    return float("nan") if p is None else p
