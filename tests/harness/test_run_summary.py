"""The summary `adbench run` prints: per cell for a small grid, per detector for a
large one, with means over ok cells only and failures visible."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from iadbench.cli import run as run_cli
from iadbench.report import summary as summary_mod
from iadbench.runner.plan import Cell
from iadbench.runner.runner import RunOutcome


def cell(detector: str, category: str) -> Cell:
    return Cell(
        key=f"{detector}-{category}", detector=detector, label=detector, detector_version="1",
        params={}, dataset="factory", dataset_version="1", dataset_path=None, dataset_params={},
        data_root=None, category=category, seed=0, settings={},
    )


def record(c: Cell, status: str = "ok", auroc: float | None = None, fit: float = 1.0) -> dict:
    return {
        "key": c.key, "detector": c.detector, "dataset": c.dataset, "category": c.category,
        "seed": c.seed, "status": status, "error": None if status == "ok" else "boom",
        "metrics": {"image_auroc": auroc} if status == "ok" else {},
        "cost": {"fit_s": fit, "latency_ms_p50": 10.0} if status == "ok" else {},
    }


def summary(outcome: RunOutcome, monkeypatch, limit: int) -> str:
    console = Console(width=120, record=True)
    monkeypatch.setattr(summary_mod, "PER_CELL_LIMIT", limit)
    summary_mod.summary(outcome, console)
    return console.export_text()


def outcome() -> RunOutcome:
    cells = [cell("alpha", "a"), cell("alpha", "b"), cell("beta", "a"), cell("beta", "b")]
    recs = [record(cells[0], auroc=0.8, fit=2.0), record(cells[1], auroc=0.6, fit=4.0),
            record(cells[2], auroc=0.9), record(cells[3], status="failed")]
    return RunOutcome(Path("."), cells, 0, {r["key"]: r for r in recs})


def test_large_grid_summarises_per_detector_over_ok_cells(monkeypatch):
    text = summary(outcome(), monkeypatch, limit=2)
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.strip().startswith(("alpha", "beta"))}
    assert rows["alpha"][1:3] == ["2/2", "0.700"]  # mean of 0.8 and 0.6
    assert rows["alpha"][-2] == "3.0"  # mean fit seconds
    assert rows["beta"][1:3] == ["1/2", "0.900"]  # the failed cell is not averaged in
    assert "failed beta factory/b seed 0: boom" in text


def test_small_grid_lists_every_cell_and_its_failure(monkeypatch):
    text = summary(outcome(), monkeypatch, limit=10)
    rows = [line.split()[:3] for line in text.splitlines() if line.strip().startswith(("alpha", "beta"))]
    assert rows == [["alpha", "factory/a", "s0"], ["alpha", "factory/b", "s0"],
                    ["beta", "factory/a", "s0"], ["beta", "factory/b", "s0"]]
    assert "factory/b s0 failed" in text


def test_adbench_run_prints_this_summary():
    # run imports it inside the command (at the top it would cost every --help its imports)
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(run_cli.run))
    imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert (summary_mod.__name__, summary_mod.summary.__name__) in imported


def test_errors_with_brackets_are_printed_whole(monkeypatch):
    run = outcome()
    run.records[run.cells[3].key]["error"] = "layers ['blocks.9'] not in [anomalib]"
    assert "layers ['blocks.9'] not in [anomalib]" in summary(run, monkeypatch, limit=10)
