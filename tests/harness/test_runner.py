"""The grid runner through the real CLI: records, crash isolation, resume after
kill -9 and Ctrl-C, failed cells rerun, artifacts that reload to the same scores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit import adbench, plugin_env

GRID = ["--detector", "example.median_distance", "--dataset", "example.blobs"]
REQUIRED = [
    "key", "detector", "dataset", "category", "seed", "params", "status", "error",
    "metrics.image_auroc", "metrics.image_ap", "metrics.image_f1_max", "metrics.pixel_auroc",
    "metrics.pixel_ap", "metrics.aupro", "metrics.precision", "metrics.recall", "metrics.f1",
    "metrics.accuracy", "cost.fit_s", "cost.latency_ms_p50", "cost.latency_ms_p95",
    "cost.backbone_latency_ms_p50", "cost.throughput_ips", "cost.peak_rss_mb", "cost.artifact_mb",
]


@pytest.fixture
def env(example_site, tmp_path):
    return plugin_env(example_site, allow="example,metrics", IADBENCH_CACHE=str(tmp_path / "cache"))


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]


def test_run_records_every_field_and_reloads(env, tmp_path):
    run_dir = tmp_path / "run"
    out = adbench("run", *GRID, "--dataset-path", f"example.blobs={tmp_path / 'blobs'}",
                  "--run-dir", str(run_dir), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    recs = records(run_dir)
    assert sorted(r["category"] for r in recs) == ["dark", "light"]
    for rec in recs:
        for field in REQUIRED:
            group, _, name = field.partition(".")
            assert (name in rec[group]) if name else (group in rec), field
        assert rec["status"] == "ok" and rec["error"] is None
        assert rec["metrics"]["image_auroc"] > 0.9  # bright blobs are easy
        assert rec["cost"]["fit_s"] > 0 and rec["cost"]["peak_rss_mb"] > 10
        assert rec["cost"]["backbone_latency_ms_p50"] is None  # no backbone here
        assert rec["counts"]["holdout"] >= 1 and rec["threshold"]["value"] is not None

    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["environment"]["cpu_count"] == os.cpu_count()
    assert run_info["environment"]["packages"]["iadbench"]
    assert len(run_info["cells"]) == 2
    # The visual report lands beside the leaderboard, which links it.
    assert (run_dir / "report.html").is_file()
    assert "report.html" in (run_dir / "leaderboard.md").read_text()

    # The saved artifact reloads through the registry and scores identically.
    rec = recs[0]
    code = f"""
import numpy as np, csv, sys
from iadbench.artifacts import load_detector
from iadbench.images import load_images
from iadbench.types import Sample
det = load_detector({rec['artifact']!r})
rows = list(csv.DictReader(open({str(Path(rec['artifact']).parent / 'scores.csv')!r})))
imgs = load_images([Sample(r['path']) for r in rows], det.input_size)
np.testing.assert_allclose(det.predict(imgs).scores, [float(r['score']) for r in rows], rtol=1e-6)
print('same')
"""
    check = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert check.returncode == 0 and "same" in check.stdout, check.stderr

    again = adbench("run", *GRID, "--run-dir", str(run_dir), env=env, cwd=tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr
    assert len(records(run_dir)) == 2


def test_a_crashing_cell_is_recorded_and_the_others_finish(env, tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f"""
[[detector]]
name = "example.median_distance"
label = "crashes"
params = {{ crash = "abort" }}

[[detector]]
name = "example.median_distance"
label = "fine"

[[dataset]]
name = "example.blobs"
path = "{tmp_path / 'blobs'}"
categories = ["dark"]
"""
    )
    run_dir = tmp_path / "run"
    out = adbench("run", "--plan", str(plan), "--run-dir", str(run_dir), env=env, cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    by_label = {r["detector"]: r for r in records(run_dir)}
    assert by_label["fine"]["status"] == "ok"
    assert by_label["crashes"]["status"] == "failed"
    assert "SIGABRT" in by_label["crashes"]["error"]
    assert "failed" in out.stdout and "crashes" in out.stdout  # the summary table


def test_failed_cells_rerun_on_resume(env, tmp_path):
    run_dir = tmp_path / "run"
    args = ["run", *GRID, "--category", "dark", "--set", "example.median_distance.crash=env",
            "--dataset-path", f"example.blobs={tmp_path / 'blobs'}", "--run-dir", str(run_dir)]
    first = adbench(*args, env={**env, "EXAMPLE_CRASH": "1"}, cwd=tmp_path)
    assert first.returncode == 1
    assert "asked to fail" in records(run_dir)[0]["error"]
    second = adbench("run", "--resume", "--run-dir", str(run_dir), env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert [r["status"] for r in records(run_dir)] == ["failed", "ok"]


def _start(env, tmp_path, run_dir):
    args = [sys.executable, "-m", "iadbench", "run", *GRID, "--seed", "0", "--seed", "1", "--seed", "2",
            "--set", "example.median_distance.fit_sleep=1.0",
            "--dataset-path", f"example.blobs={tmp_path / 'blobs'}", "--run-dir", str(run_dir)]
    return subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_records(run_dir: Path, n: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    path = run_dir / "records.jsonl"
    while time.time() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {n} records within {timeout} s")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_to_one_ok_record_per_cell(env, tmp_path, sig, ctrl_c_reaches_children):
    run_dir = tmp_path / "run"
    proc = _start(env, tmp_path, run_dir)
    _wait_for_records(run_dir, 1)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    # A kill can land mid-write: simulate the torn line it would leave.
    with (run_dir / "records.jsonl").open("a") as f:
        f.write('{"key": "torn", "status": "o')
    time.sleep(1.5)  # an orphaned cell, had it survived, would append nothing anyway
    written = (run_dir / "records.jsonl").read_text().count("\n")
    assert written < 6, "the kill came too late to test anything"

    out = adbench("run", "--resume", "--run-dir", str(run_dir), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "repaired" in out.stdout
    recs = records(run_dir)
    cells = json.loads((run_dir / "run.json").read_text())["cells"]
    ok_keys = [r["key"] for r in recs if r["status"] == "ok"]
    assert sorted(ok_keys) == sorted(c["key"] for c in cells)  # exactly one ok per cell
    assert len(cells) == 6


def test_usage_errors_are_one_line_exit_2(env, tmp_path):
    cases = [
        (["run", "--detector", "nope"], "unknown detector 'nope'"),
        (["run", *GRID, "--set", "example.median_distance.bogus=1",
          "--dataset-path", f"example.blobs={tmp_path}"], "unknown parameter(s) bogus"),
        (["run", "--plan", str(tmp_path / "missing.toml")], "plan file not found"),
        (["run", "--resume"], "--resume needs --run-dir"),
        (["leaderboard", str(tmp_path)], "not a run folder"),
    ]
    for args, message in cases:
        out = adbench(*args, env=env, cwd=tmp_path)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, out.stderr)
        assert "Traceback" not in out.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[[detector]\nname=")
    out = adbench("run", "--plan", str(bad), env=env, cwd=tmp_path)
    assert out.returncode == 2 and str(bad) in out.stderr and "invalid TOML" in out.stderr
    debug = adbench("--debug", "run", "--detector", "nope", env=env, cwd=tmp_path)
    assert "Traceback" in debug.stderr
