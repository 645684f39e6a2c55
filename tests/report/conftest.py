"""Hand-made run folders for the report tests: records, per-image scores and galleries
written directly (no detector runs), so the expected numbers are known in advance."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from iadbench.results.store import RunStore
from iadbench.types import Sample
from iadbench.visual.gallery import write_gallery

#: (path, label, defect_type, score) of one category's test set.
SCORES = [
    ("good/0.png", 0, "good", 0.10), ("good/1.png", 0, "good", 0.20), ("good/2.png", 0, "good", 0.30),
    ("good/3.png", 0, "good", 0.55),
    ("crack/0.png", 1, "crack", 0.90), ("crack/1.png", 1, "crack", 0.60), ("crack/2.png", 1, "crack", 0.25),
    ("scratch/0.png", 1, "scratch", 0.50), ("scratch/1.png", 1, "scratch", 0.95),
]


def write_cell(run_dir: Path, key: str, rows, gallery: bool = True) -> Path:
    cell = run_dir / "cells" / key
    cell.mkdir(parents=True)
    with (cell / "scores.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "defect_type", "score"])
        w.writerows(rows)
    if gallery:
        rng = np.random.default_rng(0)
        n = len(rows)
        images = rng.integers(0, 255, (n, 24, 24, 3)).astype(np.uint8)
        maps = rng.random((n, 24, 24)).astype(np.float32)
        masks = np.zeros((n, 24, 24), bool)
        masks[[r[1] == 1 for r in rows], 8:16, 8:16] = True
        samples = [Sample(Path(p), label, d) for p, label, d, _ in rows]
        write_gallery(cell, samples, images, maps, masks, np.array([r[3] for r in rows]))
    return cell


def make_run(run_dir: Path, cells: list[dict]) -> Path:
    """cells: dicts with detector, category, image_auroc, ci, threshold, latency, scores."""
    store = RunStore(run_dir)
    store.create({"run_id": run_dir.name, "plan": {"settings": {"threshold_rule": "quantile:0.99", "holdout_fraction": 0.1}},
                  "environment": {"cpu": "Test CPU", "cpu_count": 2, "packages": {}}})
    for c in cells:
        key = f"{c['detector']}-{c['category']}-{c.get('seed', 0)}"
        write_cell(run_dir, key, c.get("scores", SCORES), c.get("gallery", True))
        store.append({
            "key": key, "detector": c["detector"], "detector_name": c["detector"], "detector_version": "1",
            "dataset": "ds", "category": c["category"], "seed": c.get("seed", 0), "status": "ok", "error": None,
            "params": {}, "metrics": {"image_auroc": c["image_auroc"], "pixel_auroc": None, "aupro": None, "f1": 0.5},
            "intervals": {"image_auroc": c.get("ci")},
            "threshold": {"value": c.get("threshold", 0.5), "display_range": [0.2, 0.9], "pixel_value": 0.8},
            "cost": {"fit_s": 1.0, "latency_ms_p50": c.get("latency", 10.0), "peak_rss_mb": 100.0},
        })
    return run_dir


TWO_DETECTORS = [
        {"detector": "alpha", "category": "c1", "image_auroc": 0.95, "ci": [0.90, 0.99], "latency": 5.0},
        {"detector": "beta", "category": "c1", "image_auroc": 0.92, "ci": [0.85, 0.97], "latency": 50.0},
        {"detector": "gamma", "category": "c1", "image_auroc": 0.70, "ci": [0.60, 0.80], "latency": 1.0},
]


@pytest.fixture
def two_detector_run(tmp_path) -> Path:
    return make_run(tmp_path / "run", TWO_DETECTORS)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    """The HTML report of the three-detector run (written once per module)."""
    from iadbench.report.html import write_report

    root = tmp_path_factory.mktemp("report")
    return write_report([make_run(root / "run", TWO_DETECTORS)], root / "out" / "index.html")
