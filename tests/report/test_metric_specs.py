"""Reports take what they show of each metric from its MetricSpec (headline, summary,
labels, oracle bound, interval), so a third-party metric gets the same treatment as a
built-in one and a metric nobody registers any more shows with neutral defaults."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from iadbench.calibration.verdicts import verdicts
from iadbench.metrics import auroc_resampling, image
from iadbench.report.compare import compare
from iadbench.report.html import write_report
from iadbench.report.leaderboard import render, verdict_table
from iadbench.report.records import load_runs
from iadbench.report.summary import summary, summary_columns
from iadbench.results.store import RunStore
from iadbench.runner.plan import Cell
from iadbench.runner.runner import RunOutcome
from iadbench.types import MetricSpec

from .conftest import TWO_DETECTORS, make_run


def _spec(name: str, **flags) -> MetricSpec:
    return MetricSpec(name, image.image_auroc, **flags)


SPECS = {
    # the exact resampler keeps the paired bootstrap of `compare` fast (recomputing fn costs ~10 s)
    "gap": _spec("gap", headline=True, summary=True, label="score gap", short="gap", interval="image",
                 resample=auroc_resampling.image_auroc_resamples, description="Mean defective minus mean good score"),
    "hits": _spec("hits", headline=True, needs_threshold=True, interval="image", label="hit rate"),
    "hits_best": _spec("hits_best", oracle_of="hits", short="best hits"),
    "quiet": _spec("quiet"),
}


def _with_metrics(run: Path, metrics: dict) -> Path:
    """The same run with other metrics in every record."""
    store = RunStore(run)
    for rec in store.latest_records().values():
        rec = rec.to_json() if hasattr(rec, "to_json") else dict(rec)
        rec["metrics"] = metrics
        rec["verdicts"] = verdicts([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.9], 0.5, 0.01, [0.1, 0.2, 0.3])
        store.append(rec)
    return run


def test_default_specs_keep_the_built_in_columns():
    assert summary_columns() == [("image_auroc", "img AUROC"), ("pixel_auroc", "px AUROC"), ("aupro", "AUPRO"),
                                 ("f1", "F1")]


def test_summary_shows_the_specs_marked_summary_with_their_short_headers():
    record = {"key": "k", "detector": "alpha", "status": "ok", "metrics": {"gap": 0.25, "hits": 0.5, "gone": 0.1},
              "cost": {"fit_s": 1.0, "latency_ms_p50": 2.0}, "params": {}, "settings": {}}
    cell = Cell(key="k", detector="alpha", label="alpha", detector_version="1", params={}, dataset="ds",
                dataset_version="1", dataset_path=None, dataset_params={}, data_root=None, category="c1", seed=0,
                settings={})
    console = Console(width=300, record=True)
    summary(RunOutcome(Path("."), [cell], 0, {"k": record}), console, specs=SPECS)
    text = console.export_text()
    header = next(line for line in text.splitlines() if "detector" in line)
    assert re.findall(r"gap|hit rate|fit s", header) == ["gap", "fit s"]
    assert "0.250" in text and "0.100" not in text  # an unregistered metric is not a summary column


def test_leaderboard_tables_and_oracle_pairs_come_from_the_specs(tmp_path):
    run = _with_metrics(make_run(tmp_path / "run", TWO_DETECTORS), {"gap": 0.3, "hits": 0.6, "hits_best": 0.8})
    text = render([run], SPECS)
    assert "## gap" in text and "## hits" in text and "## image_auroc" not in text and "## quiet" not in text
    assert "_Mean defective minus mean good score_" in text
    assert "best hits chooses its threshold on the test labels: an oracle bound, not a verdict._" in text
    row = verdict_table(load_runs([run])[0], SPECS).iloc[0]
    assert row["hit rate / best hits"] == "0.60 / 0.80"
    no_oracle = verdict_table(load_runs([run])[0], {"gap": SPECS["gap"]})
    assert not [c for c in no_oracle.columns if " / " in c and "FPR" not in c]


def test_compare_deltas_headline_metrics_and_pairs_those_from_scores_alone(tmp_path):
    run = _with_metrics(make_run(tmp_path / "run", TWO_DETECTORS), {"gap": 0.3, "hits": 0.6, "quiet": 0.1})
    table = compare(run, run, SPECS)
    assert "Δ gap" in table and "Δ hits" in table and "Δ quiet" not in table
    assert (table["p score gap"] == 1.0).all()  # a cell against itself
    assert "p hit rate" not in table  # needs a threshold scores.csv does not hold
    assert list(compare(run, run, {"quiet": SPECS["quiet"]}).columns) == [
        "detector", "dataset", "category", "seed", "status", "fit_s B/A", "latency_ms_p50 B/A", "peak_rss_mb B/A"]


def test_html_cost_chart_plots_the_first_headline_metric(tmp_path):
    run = _with_metrics(make_run(tmp_path / "run", TWO_DETECTORS), {"gap": 0.3, "hits": 0.6})
    page = write_report([run], tmp_path / "out" / "index.html", SPECS)
    text = page.read_text()
    assert 'alt="latency per image vs score gap, one point per detector"' in text
    assert "<h3>gap</h3>" in text and "<h3>quiet</h3>" not in text
