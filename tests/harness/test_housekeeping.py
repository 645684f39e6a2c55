"""Disk housekeeping: which model folders a run keeps (--keep-models), the note a removed
one leaves and the error that reads it; `adbench runs` and `adbench clean` (dry run by
default, never a run whose lock is held)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iadbench.errors import InputError
from iadbench.model.folder import load_model, read_model_json
from iadbench.results import housekeeping as hk
from iadbench.results.store import RunStore
from testkit import cli

# (detector, category, image AUROC, status): gamma failed; beta is best on a, alpha on b
CELLS = [("alpha", "a", 0.80, "ok"), ("beta", "a", 0.95, "ok"), ("gamma", "a", None, "failed"),
         ("alpha", "b", 0.90, "ok"), ("beta", "b", 0.70, "ok")]


def make_run(root: Path, name: str = "run", created: float | None = None, model_bytes: int = 4096) -> Path:
    """A finished run folder: run.json, a record per cell and a model folder per cell."""
    run_dir = root / name
    store = RunStore(run_dir)
    store.create({"run_id": name, "created": created if created is not None else time.time(),
                  "cells": [{"key": f"{d}-{c}"} for d, c, _, _ in CELLS]})
    for det, cat, auroc, status in CELLS:
        key = f"{det}-{cat}"
        model = run_dir / "cells" / key / "model"
        model.mkdir(parents=True)
        (model / "model.safetensors").write_bytes(b"\0" * model_bytes)
        (model / "model.json").write_text("{}")
        (run_dir / "cells" / key / "scores.csv").write_text("path,label,defect_type,score\n")
        store.append({"key": key, "detector": det, "detector_name": det, "dataset": "ds", "category": cat, "seed": 0,
                      "status": status, "error": None if status == "ok" else "boom",
                      "metrics": {"image_auroc": auroc} if auroc is not None else {}})
    return run_dir


def models_left(run_dir: Path) -> set[str]:
    return {p.parent.parent.name for p in (run_dir / "cells").glob("*/model/model.safetensors")}


def test_best_keeps_the_best_cell_of_each_category_and_notes_the_rest(tmp_path):
    run_dir = make_run(tmp_path, model_bytes=1 << 20)
    pruned = hk.prune_models(RunStore(run_dir), "best")
    assert models_left(run_dir) == {"beta-a", "alpha-b"}
    assert sorted(pruned.kept) == ["alpha-b", "beta-a"]
    assert sorted(pruned.removed) == ["alpha-a", "beta-b", "gamma-a"]
    assert pruned.freed_bytes >= 2 << 20  # two 1 MiB models (gamma's is one too)
    # scores and the rest of each cell stay: the report reads them
    assert all((run_dir / "cells" / k / "scores.csv").is_file() for k in pruned.removed)
    note = hk.not_kept_note(run_dir / "cells" / "alpha-a" / "model")
    assert note["keep_models"] == "best" and "beta-a" in note["kept_instead"] and "0.950" in note["kept_instead"]
    info = json.loads((run_dir / "run.json").read_text())["models"]
    assert info["keep_models"] == "best" and sorted(info["removed"]) == sorted(pruned.removed)


def test_all_keeps_everything_and_none_keeps_nothing(tmp_path):
    run_all = make_run(tmp_path, "all")
    assert hk.prune_models(RunStore(run_all), "all").removed == []
    assert len(models_left(run_all)) == len(CELLS)
    run_none = make_run(tmp_path, "none")
    pruned = hk.prune_models(RunStore(run_none), "none")
    assert models_left(run_none) == set() and len(pruned.removed) == len(CELLS)
    assert hk.not_kept_note(run_none / "cells" / "beta-a" / "model")["kept_instead"] is None


def test_pruning_again_keeps_what_it_kept_and_remembers_what_went(tmp_path):
    """A resumed run prunes again: nothing kept goes, and run.json still lists every removal."""
    run_dir = make_run(tmp_path)
    first = hk.prune_models(RunStore(run_dir), "best")
    second = hk.prune_models(RunStore(run_dir), "best")
    assert second.removed == [] and sorted(second.kept) == sorted(first.kept)
    assert sorted(json.loads((run_dir / "run.json").read_text())["models"]["removed"]) == sorted(first.removed)


def test_a_removed_model_is_one_clear_error_naming_the_kept_one(tmp_path):
    run_dir = make_run(tmp_path)
    hk.prune_models(RunStore(run_dir), "best")
    gone = run_dir / "cells" / "alpha-a" / "model"
    for read in (load_model, read_model_json):
        with pytest.raises(InputError) as err:
            read(gone)
        text = str(err.value)
        assert "\n" not in text and "--keep-models best" in text and "beta-a" in text and str(gone) in text


def test_keep_models_value_is_checked():
    assert hk.check_keep_models(" Best ") == "best"
    with pytest.raises(InputError, match="'some' is not one of all, best, none"):
        hk.check_keep_models("some")


@pytest.mark.parametrize(("text", "seconds"), [("7d", 7 * 86400), ("12h", 43200), ("30m", 1800), ("1d12h", 129600), ("2w", 1209600)])
def test_durations(text, seconds):
    assert hk.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "7d 3"])
def test_bad_durations_are_refused(text):
    with pytest.raises(InputError, match="not a duration"):
        hk.parse_duration(text)


def test_selection_by_age_and_count(tmp_path):
    now = time.time()
    for name, days in (("new", 0), ("week", 8), ("month", 30)):
        make_run(tmp_path, name, created=now - days * 86400)
    runs = hk.list_runs(tmp_path)
    assert [r.name for r in runs] == ["new", "week", "month"]
    assert runs[0].ok == 4 and runs[0].failed == 1 and runs[0].cells == 5 and runs[0].holder is None
    assert {r.name for r in hk.select_runs(runs, older_than_s=7 * 86400)} == {"week", "month"}
    assert {r.name for r in hk.select_runs(runs, keep=1)} == {"week", "month"}
    assert {r.name for r in hk.select_runs(runs, older_than_s=7 * 86400, keep=2)} == {"month"}
    assert hk.select_runs(runs, keep=5) == []


@pytest.fixture
def held_lock(tmp_path):
    """A run whose lock another process holds (as a running `adbench run` does)."""
    run_dir = make_run(tmp_path, "busy", created=time.time() - 30 * 86400)
    code = ("import sys, time\nfrom iadbench.results.store import RunStore\n"
            "with RunStore(sys.argv[1]).locked():\n    print('locked', flush=True)\n    time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield run_dir, holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_run_whose_lock_is_held_is_listed_in_use_and_never_removed(held_lock, capsys):
    run_dir, pid = held_lock
    root = run_dir.parent
    (info,) = hk.list_runs(root)
    assert info.holder == str(pid)
    assert hk.remove_run(run_dir) is False and run_dir.is_dir()
    assert cli("clean", "--root", str(root), "--older-than", "1d", "--yes") == 0
    assert run_dir.is_dir() and f"pid {pid}" in capsys.readouterr().out
    assert cli("clean", str(run_dir), "--yes") == 1  # named, and not removed: a failure
    assert run_dir.is_dir()


def test_clean_lists_only_until_told_yes(tmp_path, capsys):
    now = time.time()
    old, new = make_run(tmp_path, "old", created=now - 10 * 86400), make_run(tmp_path, "new", created=now)
    assert cli("clean", "--root", str(tmp_path), "--older-than", "7d") == 0
    out = capsys.readouterr().out
    assert "would remove" in out and "old" in out and "--yes" in out and old.is_dir()
    assert cli("clean", "--root", str(tmp_path), "--keep", "1", "--yes") == 0
    assert not old.exists() and new.is_dir()
    assert cli("clean", "new", "--root", str(tmp_path), "-y") == 0
    assert not new.exists()


def test_clean_and_runs_refuse_bad_input_in_one_line(tmp_path, capsys):
    make_run(tmp_path, "r")
    (tmp_path / "plain").mkdir()
    cases = [(("clean", "--root", str(tmp_path)), "nothing chosen"),
             (("clean", "r", "--keep", "1", "--root", str(tmp_path)), "not both"),
             (("clean", "plain", "--root", str(tmp_path)), "not a run folder"),
             (("clean", "--older-than", "soon", "--root", str(tmp_path)), "'soon' is not a duration"),
             (("clean", "--keep", "-1", "--root", str(tmp_path)), "--keep -1 must be >= 0"),
             (("runs", "--root", str(tmp_path / "missing")), "no such folder")]
    for args, words in cases:
        capsys.readouterr()
        assert cli(*args) == 2, args
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "r").is_dir() and (tmp_path / "plain").is_dir()


def test_runs_lists_each_run(tmp_path, capsys):
    run_dir = make_run(tmp_path, "r1")
    hk.prune_models(RunStore(run_dir), "best")
    make_run(tmp_path, "r2")
    assert cli("runs", "--root", str(tmp_path)) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip().startswith("r")}
    assert rows["r1"][1] == "4/5" and rows["r1"][1:3] == ["4/5", "1"]
    assert "2" in rows["r1"] and "all" in rows["r2"]  # r1 kept 2 models; r2 never pruned
    assert "2 run(s)" in out


def test_disk_bytes_counts_what_du_counts(tmp_path):
    (tmp_path / "f").write_bytes(os.urandom(100_000))
    du = int(subprocess.run(["du", "-s", "--block-size=1", str(tmp_path)], capture_output=True, text=True).stdout.split()[0])
    # du counts the folder's own blocks too
    assert abs(hk.disk_bytes(tmp_path) - du) <= 8192


PLAN = """
[run]
{keep}

[[detector]]
name = "example.median_distance"
label = "wide"

[[detector]]
name = "example.median_distance"
label = "narrow"
params = {{ input_size = 16 }}

[[dataset]]
name = "example.blobs"
path = "{blobs}"
"""


def test_a_real_run_keeps_one_model_per_category_and_its_report_still_renders(example_site, tmp_path):
    """Through the runner and the CLI: the default keeps the best model per category, the
    others leave their note, the leaderboard and report are written, predict on a removed
    model is one line, and a plan's keep_models = "all" keeps every model."""
    from testkit import adbench, plugin_env

    env = plugin_env(example_site, allow="example,metrics", IADBENCH_CACHE=str(tmp_path / "cache"))
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.format(keep="", blobs=tmp_path / "blobs"))
    out = adbench("run", "--plan", str(plan), "--run-dir", str(tmp_path / "best"), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    run_dir = tmp_path / "best"
    recs = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs)
    kept = models_left(run_dir)
    assert len(kept) == 2 and {r["category"] for r in recs if r["key"] in kept} == {"dark", "light"}
    assert "models: kept 2, removed 2" in " ".join(out.stdout.split())
    assert (run_dir / "leaderboard.md").is_file() and (run_dir / "report.html").is_file()
    gone = next(r for r in recs if r["key"] not in kept)
    image = next((tmp_path / "blobs" / gone["category"] / "test").glob("*.png"))
    out = adbench("predict", gone["artifact"], str(image), env=env, cwd=tmp_path)
    assert out.returncode == 2 and "--keep-models best" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    kept_rec = next(r for r in recs if r["key"] in kept)
    assert adbench("predict", kept_rec["artifact"], str(image), env=env, cwd=tmp_path).returncode == 0

    plan.write_text(PLAN.format(keep='keep_models = "all"', blobs=tmp_path / "blobs"))
    out = adbench("run", "--plan", str(plan), "--run-dir", str(tmp_path / "all"), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(models_left(tmp_path / "all")) == 4 and "models: kept" not in out.stdout
