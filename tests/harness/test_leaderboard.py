"""Leaderboards and comparisons rendered from records written by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from iadbench.report.compare import compare
from iadbench.report.leaderboard import cost_table, metric_table, render
from iadbench.report.records import load_runs
from iadbench.results.store import RunStore


def make_run(path: Path, rows: list[tuple], params: dict | None = None, version: str = "1") -> Path:
    params = {"k": 1} if params is None else params
    store = RunStore(path)
    store.create({"run_id": path.name, "plan": {"settings": {"threshold_rule": "quantile:0.99", "holdout_fraction": 0.1}},
                  "environment": {"cpu": "Test CPU", "cpu_count": 2, "packages": {"iadbench": "0.1.0"}}})
    for det, cat, seed, status, auroc, fit in rows:
        store.append({
            # the runner's key hashes params and version too
            "key": f"{det}-{cat}-{seed}-{sorted(params.items())}-{version}", "detector": det,
            "detector_name": det, "detector_version": version, "dataset": "ds", "category": cat, "seed": seed,
            "status": status, "error": None if status == "ok" else "boom", "params": params,
            "metrics": {"image_auroc": auroc, "pixel_auroc": auroc, "aupro": None, "f1": auroc},
            "cost": {"fit_s": fit, "latency_ms_p50": 10.0, "backbone_latency_ms_p50": 8.0, "peak_rss_mb": 500.0},
        })
    return path


@pytest.fixture
def run_a(tmp_path):
    return make_run(tmp_path / "a", [
        ("alpha", "c1", 0, "ok", 0.90, 1.0), ("alpha", "c1", 1, "ok", 0.80, 3.0),
        ("alpha", "c2", 0, "ok", 0.70, 2.0),
        ("beta", "c1", 0, "ok", 0.95, 5.0),
        ("beta", "c2", 0, "failed", None, None),
        ("gamma", "c1", 0, "ok", 0.60, 1.0),  # gamma has no c2 cell at all
    ])


def test_metric_table_marks_missing_and_failed_and_never_averages_over_them(run_a):
    frame, _ = load_runs([run_a])
    table = metric_table(frame, "image_auroc")
    assert table.loc["alpha", "ds/c1"] == "0.850 ± 0.071"  # mean ± std over seeds
    assert table.loc["alpha", "mean"] == "**0.775**"  # (0.85 + 0.70) / 2, the only complete row
    assert table.loc["beta", "ds/c1"] == "**0.950**"
    assert table.loc["beta", "ds/c2"] == "failed" and table.loc["beta", "mean"] == ""
    assert table.loc["gamma", "ds/c2"] == "missing" and table.loc["gamma", "mean"] == ""
    undefined = metric_table(frame, "aupro")
    assert undefined.loc["alpha", "ds/c1"] == "n/a"


def test_lower_is_better_bolds_the_minimum(run_a):
    frame, _ = load_runs([run_a])
    table = metric_table(frame, "image_auroc", higher_is_better=False)
    assert table.loc["gamma", "ds/c1"] == "**0.600**"


def test_cost_table_and_rendered_markdown(run_a):
    frame, _ = load_runs([run_a])
    costs = cost_table(frame)
    assert costs.loc["alpha", "fit s"] == "2.0" and costs.loc["alpha", "backbone share"] == "80%"
    text = render([run_a])
    for part in ("## image_auroc", "## Cost", "- `alpha`: k=1", "## Failed cells", "beta on ds/c2 (seed 0): boom", "Test CPU", "quantile:0.99"):
        assert part in text


def test_compare_reports_deltas_and_unmatched_cells(run_a, tmp_path):
    run_b = make_run(tmp_path / "b", [("alpha", "c1", 0, "ok", 0.95, 2.0), ("delta", "c1", 0, "ok", 0.5, 1.0)])
    table = compare(run_a, run_b).set_index(["detector", "category", "seed"])
    assert table.loc[("alpha", "c1", 0), "Δ image_auroc"] == pytest.approx(0.05)
    assert table.loc[("alpha", "c1", 0), "fit_s B/A"] == pytest.approx(2.0)
    assert table.loc[("delta", "c1", 0), "status"] == "only in B"
    assert table.loc[("beta", "c1", 0), "status"] == "only in A"


def test_merging_runs_prefers_ok_records(run_a, tmp_path):
    retry = make_run(tmp_path / "retry", [("beta", "c2", 0, "ok", 0.85, 4.0)])
    frame, _ = load_runs([run_a, retry])
    assert metric_table(frame, "image_auroc").loc["beta", "mean"] == "**0.900**"


# --- one label, several setups ------------------------------------------------------


def test_same_label_with_other_params_is_two_rows_with_a_notice(tmp_path):
    a = make_run(tmp_path / "a", [("padim", "c1", 0, "ok", 0.90, 1.0)], params={"n_features": 50})
    b = make_run(tmp_path / "b", [("padim", "c1", 0, "ok", 0.70, 1.0)], params={"n_features": 100})
    frame, _ = load_runs([a, b])
    table = metric_table(frame, "image_auroc")
    assert len(table) == 2 and all(name.startswith("padim [") for name in table.index)
    assert sorted(table["ds/c1"].str.strip("*")) == ["0.700", "0.900"]  # not averaged into 0.800
    text = render([a, b])
    assert "Same label, different setups" in text and "`padim`" in text
    for name in table.index:
        assert f"| {name} " in text and f"- `{name}`: padim version 1; n_features=" in text


def test_same_label_with_another_version_is_two_rows(tmp_path):
    a = make_run(tmp_path / "a", [("padim", "c1", 0, "ok", 0.90, 1.0)], version="1")
    b = make_run(tmp_path / "b", [("padim", "c1", 0, "ok", 0.70, 1.0)], version="2")
    frame, _ = load_runs([a, b])
    assert frame["detector"].nunique() == 2


def test_latest_keeps_each_detectors_newest_version_and_names_what_it_left_out(tmp_path):
    old = make_run(tmp_path / "old", [("padim", "c1", 0, "ok", 0.90, 1.0), ("padim", "c2", 0, "ok", 0.80, 1.0),
                                      ("beta", "c1", 0, "ok", 0.50, 1.0)], version="9")
    new = make_run(tmp_path / "new", [("padim", "c1", 0, "ok", 0.70, 1.0)], version="10")  # 10 is newer than 9
    other = make_run(tmp_path / "other", [("padim", "c1", 0, "ok", 0.60, 1.0)], params={"k": 2}, version="10")
    frame, _ = load_runs([old, new, other], latest=True)
    assert sorted(zip(frame["detector_name"], frame["detector_version"])) == [("beta", "9"), ("padim", "10"), ("padim", "10")]
    assert frame["detector"].nunique() == 3  # the two version-10 setups stay two rows
    assert [(r["detector_name"], r["category"]) for r in frame.attrs["superseded"]] == [("padim", "c1"), ("padim", "c2")]
    text = render([old, new, other], latest=True)
    assert f"`padim` version 9 from {old} (2 cells)" in text and "0.900" not in text
    assert len(load_runs([old, new, other])[0]) == 5  # without latest nothing is left out


def test_same_label_and_setup_from_two_runs_are_seeds_of_one_row(tmp_path):
    a = make_run(tmp_path / "a", [("padim", "c1", 0, "ok", 0.90, 1.0)], params={"n_features": 50})
    b = make_run(tmp_path / "b", [("padim", "c1", 1, "ok", 0.70, 1.0)], params={"n_features": 50})
    frame, _ = load_runs([a, b])
    table = metric_table(frame, "image_auroc")
    assert list(table.index) == ["padim"]
    assert table.loc["padim", "ds/c1"] == "**0.800 ± 0.141**"
    assert "Same label, different setups" not in render([a, b])


def test_compare_does_not_pair_a_label_whose_setup_changed(tmp_path):
    a = make_run(tmp_path / "a", [("padim", "c1", 0, "ok", 0.90, 1.0)], params={"n_features": 50})
    b = make_run(tmp_path / "b", [("padim", "c1", 0, "ok", 0.70, 1.0)], params={"n_features": 100})
    table = compare(a, b)
    assert sorted(table["status"]) == ["only in A", "only in B"]
    assert all(name.startswith("padim [") for name in table["detector"])
    same = compare(a, make_run(tmp_path / "c", [("padim", "c1", 0, "ok", 0.70, 1.0)], params={"n_features": 50}))
    assert list(same["status"]) == ["ok/ok"] and same["Δ image_auroc"].iloc[0] == pytest.approx(-0.2)


def test_verdict_table_shows_achieved_against_target(tmp_path):
    from iadbench.calibration.verdicts import verdicts
    from iadbench.report.leaderboard import verdict_table

    run = make_run(tmp_path / "v", [("alpha", "c1", 0, "ok", 0.9, 1.0)])
    store = RunStore(run)
    rec = store.latest_records().popitem()[1].to_json()
    labels = [0] * 50 + [1] * 10
    scores = [0.1] * 48 + [0.9, 0.9] + [0.95] * 7 + [0.2] * 3  # 2 of 50 goods and 7 of 10 defects flagged
    rec["verdicts"] = verdicts(labels, scores, 0.5, 0.01, [0.1 * i for i in range(30)])
    rec["threshold"] = {"rule": "fpr:0.01", "value": 0.5, "calibration": {"method": "leave-one-out", "images": 30}}
    rec["metrics"]["image_f1_max"] = 0.88
    store.append(rec)
    row = verdict_table(load_runs([run])[0]).iloc[0]
    assert row["FPR achieved / target"].startswith("4.0% [") and row["FPR achieved / target"].endswith("/ 1.0%")
    assert row["recall"].startswith("0.70 [") and row["calibration"] == "leave-one-out, 30 images"
    assert row["F1 / F1-max"] == "0.90 / 0.88" and row["threshold"] == "`fpr:0.01`"
    assert "## Verdicts" in render([run])
    assert "## Verdicts" not in render([make_run(tmp_path / "old", [("alpha", "c1", 0, "ok", 0.9, 1.0)])])  # old records
