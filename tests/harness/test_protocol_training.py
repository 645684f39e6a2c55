"""Cells trained far under the method's published length are marked in every table,
with a footnote, from the `training` entry each record carries."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from iadbench.report.compare import compare
from iadbench.report.leaderboard import cost_table, metric_table, render
from iadbench.report.records import load_runs
from iadbench.report.summary import summary
from iadbench.results.store import RunStore
from iadbench.runner.cell import _training
from iadbench.runner.plan import Cell
from iadbench.runner.runner import RunOutcome

SHORT = {"unit": "epochs", "used": 3.0, "published": 100, "source": "stfpm.yaml", "steps": 12}
LONG = {"unit": "epochs", "used": 60.0, "published": 100, "source": "stfpm.yaml", "steps": 240}


def rec(det: str, training: dict | None, category: str = "c1") -> dict:
    return {
        "key": f"{det}-{category}", "detector": det, "detector_name": det, "detector_version": "1",
        "dataset": "ds", "category": category, "seed": 0, "status": "ok", "error": None,
        "params": {"max_epochs": 3}, "training": training,
        "metrics": {"image_auroc": 0.9}, "cost": {"fit_s": 1.0, "latency_ms_p50": 2.0},
    }


def make_run(path: Path, records: list[dict]) -> Path:
    store = RunStore(path)
    store.create({"run_id": path.name, "plan": {"settings": {}}, "environment": {}})
    for r in records:
        store.append(r)
    return path


def test_capped_detector_is_marked_in_every_table_with_a_footnote(tmp_path):
    run = make_run(tmp_path / "run", [rec("stfpm", SHORT), rec("fastflow", LONG), rec("padim", None)])
    frame, _ = load_runs([run])
    assert sorted(metric_table(frame, "image_auroc").index) == ["fastflow", "padim", "stfpm †"]
    assert "stfpm †" in cost_table(frame).index
    text = render([run])
    assert "| stfpm †" in text and "- `stfpm †`:" in text
    assert "used < published / 2" in text
    assert "`stfpm †` 12 steps (3 epochs) of 100 epochs published (stfpm.yaml)" in text
    assert "fastflow †" not in text and "padim †" not in text


def test_no_footnote_without_a_capped_cell(tmp_path):
    assert "†" not in render([make_run(tmp_path / "run", [rec("fastflow", LONG), rec("padim", None)])])


def test_compare_marks_capped_rows(tmp_path):
    a = make_run(tmp_path / "a", [rec("stfpm", SHORT)])
    b = make_run(tmp_path / "b", [rec("stfpm", SHORT)])
    assert list(compare(a, b)["detector"]) == ["stfpm †"]


def test_run_summary_counts_detectors_at_smoke_length():
    records = [rec("stfpm", SHORT), rec("fastflow", LONG)]
    cells = [
        Cell(key=r["key"], detector=r["detector"], label=r["detector"], detector_version="1", params={},
             dataset="ds", dataset_version="1", dataset_path=None, dataset_params={}, data_root=None,
             category="c1", seed=0, settings={})
        for r in records
    ]
    console = Console(width=300, record=True)
    summary(RunOutcome(Path("."), cells, 0, {r["key"]: r for r in records}), console)
    text = console.export_text()
    assert "stfpm †" in text and "fastflow †" not in text
    assert "1 of 2 detectors ran at smoke length" in text


def test_cell_records_training_used_next_to_the_published_length():
    spec = SimpleNamespace(published_training={"param": "max_epochs", "value": 100, "unit": "epochs", "source": "cfg"})
    # a step cap ended training before max_epochs: what ran counts, not the param
    det = SimpleNamespace(training_done={"steps": 12, "epochs": 1.5})
    assert _training(spec, det, {"max_epochs": 3}) == {
        "unit": "epochs", "used": 1.5, "published": 100, "source": "cfg", "steps": 12}
    assert _training(spec, SimpleNamespace(training_done=None), {"max_epochs": 3})["used"] == 3
    assert _training(SimpleNamespace(published_training=None), det, {}) is None
