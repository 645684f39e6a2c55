"""Results people can trust: cell identity, the run-folder lock, Ctrl-C, the forkserver
between runs, plan-time checks, worker-count invariance, cell timeouts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from iadbench.errors import InputError
from iadbench.plugins import Registry
from iadbench.results.store import LOCK_FILE, RunStore
from iadbench.runner.plan import DatasetEntry, DetectorEntry, Plan, expand
from iadbench.types import DatasetSpec, DetectorSpec
from testkit import adbench, plugin_env

DET = "example.median_distance"


@pytest.fixture
def env(example_site, tmp_path):
    return plugin_env(example_site, allow="example,metrics", IADBENCH_CACHE=str(tmp_path / "cache"))


def grid(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "-d", DET, "--dataset", "example.blobs", "--dataset-path", f"example.blobs={tmp_path / 'blobs'}", *extra]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]


def one_line_error(out: subprocess.CompletedProcess, *needles: str) -> str:
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# --- 1. cell identity ------------------------------------------------------------------


@pytest.fixture
def registry():
    reg = Registry()
    reg.detectors["a"] = DetectorSpec("a", factory=dict, params={"k": 1})
    reg.datasets["ds"] = DatasetSpec("ds", factory=dict)
    return reg


def test_same_detector_and_params_under_two_labels_is_refused(registry):
    plan = Plan([DetectorEntry("a", label="x"), DetectorEntry("a", {"k": 1}, label="y")], [DatasetEntry("ds")])
    with pytest.raises(InputError, match="'x' and 'y' are the same detector with the same parameters"):
        expand(plan, registry, lambda e: ["c"])
    different = Plan([DetectorEntry("a", label="x"), DetectorEntry("a", {"k": 2}, label="y")], [DatasetEntry("ds")])
    cells = expand(different, registry, lambda e: ["c"])
    assert len({c.key for c in cells}) == 2


def test_all_skips_a_detector_an_entry_already_runs_at_its_defaults(registry):
    plan = Plan([DetectorEntry("a", label="mine")], [DatasetEntry("ds")], all_detectors=True)
    cells = expand(plan, registry, lambda e: ["c"])
    assert [c.label for c in cells] == ["mine"]
    plan = Plan([DetectorEntry("a", {"k": 5}, label="mine")], [DatasetEntry("ds")], all_detectors=True)
    assert sorted(c.label for c in expand(plan, registry, lambda e: ["c"])) == ["a", "mine"]


def test_duplicate_identity_in_a_plan_file_is_a_one_line_error(env, tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f'[[detector]]\nname = "{DET}"\nlabel = "one"\n'
        f'[[detector]]\nname = "{DET}"\nlabel = "two"\nparams = {{ input_size = 32 }}\n'
        f'[[dataset]]\nname = "example.blobs"\npath = "{tmp_path / "blobs"}"\n'
    )
    out = adbench("run", "--plan", str(plan), "--run-dir", str(tmp_path / "run"), env=env, cwd=tmp_path)
    one_line_error(out, "'one' and 'two' are the same detector")
    assert not (tmp_path / "run").exists()  # refused before the run folder was touched


# --- 3. the run-folder lock ------------------------------------------------------------


def test_lock_is_exclusive_and_names_the_holder(tmp_path):
    store = RunStore(tmp_path / "run")
    with store.locked():
        assert (tmp_path / "run" / LOCK_FILE).read_text().strip() == str(os.getpid())
        code = (
            "from pathlib import Path; from iadbench.results.store import RunStore\n"
            f"with RunStore(Path({str(tmp_path / 'run')!r})).locked(): pass\n"
        )
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.returncode != 0
        assert f"in use by another adbench run (pid {os.getpid()})" in other.stderr
    with store.locked():  # released on exit: taken again
        pass


def test_stale_lock_of_a_dead_holder_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_FILE).write_text(f"{dead.pid}\n")
    with RunStore(tmp_path / "run").locked():
        assert (tmp_path / "run" / LOCK_FILE).read_text().strip() == str(os.getpid())


@pytest.mark.slow
def test_second_resume_of_a_running_folder_is_refused(env, tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "iadbench", *grid(tmp_path, "--set", f"{DET}.fit_sleep=20", "--run-dir", str(run_dir))],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while not (run_dir / "run.json").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert (run_dir / "run.json").exists()
        second = adbench("run", "--resume", "--run-dir", str(run_dir), env=env, cwd=tmp_path)
        one_line_error(second, str(run_dir), f"pid {first.pid}")
    finally:
        first.kill()
        first.wait()
    assert (run_dir / "records.jsonl").read_text() == ""  # the refused run wrote nothing


# --- 4. Ctrl-C -------------------------------------------------------------------------


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _run_with_sleeping_cells(env, tmp_path: Path, run_dir: Path, cells: int, sleep_s: int, *extra: str,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    """`adbench run` started in the background and returned once ``cells`` cells are
    inside a fit that sleeps ``sleep_s`` seconds."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "iadbench", *grid(tmp_path, *extra, "--set", f"{DET}.fit_sleep={sleep_s}",
                                                "--run-dir", str(run_dir))],
        env=env, cwd=tmp_path, stdout=stdout, stderr=stderr,
    )
    deadline = time.time() + 90
    while len(list(run_dir.glob("cells/*/cell.log"))) < cells and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the cells are inside fit's sleep now
    return proc


@pytest.mark.slow
def test_ctrl_c_stops_every_cell_within_5_s_and_leaves_a_resumable_run(env, tmp_path, ctrl_c_reaches_children):
    run_dir = tmp_path / "run"
    out, err = (tmp_path / "out.txt").open("w"), (tmp_path / "err.txt").open("w")  # pipes would wait on grandchildren
    proc = _run_with_sleeping_cells(env, tmp_path, run_dir, 2, 60, "--seed", "0", "--seed", "1", "--workers", "2",
                                    stdout=out, stderr=err)
    family = _descendants(proc.pid)  # the forkserver, its two cells, multiprocessing's resource tracker
    assert len(family) >= 3, "expected the forkserver and two cells"
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    _, alive = psutil.wait_procs(family, timeout=max(0.1, 5 - (time.time() - sent)))
    running = [p for p in alive if _running(p)]  # a zombie has stopped; init reaps it late here
    assert not running, f"still running 5 s after Ctrl-C: {running}"
    assert time.time() - sent < 5
    assert proc.returncode == 130
    assert "interrupted: resume with `adbench run --resume --run-dir" in (tmp_path / "out.txt").read_text()
    assert records(run_dir) == []  # nothing half-recorded; all four cells rerun on resume


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_runner_leaves_no_cell_running(env, tmp_path, sig):
    """kill -9 or a scheduler's SIGTERM on `adbench run`: its cells stop too, not only
    its records. A surviving cell would keep writing into its cell folder, which a
    resumed run gives to a new process (before the fix the cell held the forkserver
    alive and both ran on for the whole fit)."""
    run_dir = tmp_path / "run"
    proc = _run_with_sleeping_cells(env, tmp_path, run_dir, 1, 120)
    family = _descendants(proc.pid)  # the forkserver, the cell, multiprocessing's resource tracker
    assert len(family) >= 2, "expected the forkserver and a cell"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    # the forkserver tears down an interpreter with torch loaded before the cell's
    # parent-death signal fires: seconds, more on a loaded machine; the bug was 120 s
    _, alive = psutil.wait_procs(family, timeout=60)
    running = [p for p in alive if _running(p)]
    assert not running, f"still running after the runner died: {running}"
    assert (run_dir / "records.jsonl").read_text() == ""


def test_no_cell_starts_after_shutdown(tmp_path):
    from iadbench.runner.executor import CellTask, ExecutorClosed, LocalProcessExecutor

    cell = expand(Plan([DetectorEntry("a")], [DatasetEntry("ds")]),
                  Registry(detectors={"a": DetectorSpec("a", factory=dict)}, datasets={"ds": DatasetSpec("ds", factory=dict)}),
                  lambda e: ["c"])[0]
    executor = LocalProcessExecutor(workers=1)
    executor.shutdown(cancel=True)
    with pytest.raises(ExecutorClosed):
        executor.submit(CellTask(cell, tmp_path / "cell"))
    with pytest.raises(ExecutorClosed):  # a worker thread that was about to start it
        executor._run(CellTask(cell, tmp_path / "cell"))
    assert not executor._procs


# --- 5. a second execute() in one process -----------------------------------------------


@pytest.mark.slow
def test_second_execute_in_one_process_sees_its_own_environment(example_site, use_sites, tmp_path, monkeypatch):
    from rich.console import Console

    from iadbench.plugins import get_registry
    from iadbench.runner.runner import execute

    use_sites(example_site)
    monkeypatch.setenv("IADBENCH_PLUGINS", "example,metrics")
    monkeypatch.setenv("IADBENCH_CACHE", str(tmp_path / "cache"))
    registry = get_registry()

    def plan():
        return Plan([DetectorEntry(DET, {"crash": "env"})],
                    [DatasetEntry("example.blobs", ["dark"], str(tmp_path / "blobs"))])

    quiet = Console(file=open(os.devnull, "w"))
    first = execute(plan(), registry, tmp_path / "a", console=quiet)
    assert [r["status"] for r in first.records.values()] == ["ok"]
    monkeypatch.setenv("EXAMPLE_CRASH", "1")  # the cell must now fail, if it sees it
    second = execute(plan(), registry, tmp_path / "b", console=quiet)
    assert [r["status"] for r in second.records.values()] == ["failed"]
    assert "asked to fail" in next(iter(second.records.values()))["error"]


# --- 6, 7. checks before any cell starts ------------------------------------------------


def test_a_run_without_metrics_is_refused(env, tmp_path):
    out = adbench(*grid(tmp_path, "--run-dir", str(tmp_path / "run")),
                  env={**env, "IADBENCH_PLUGINS": "example"}, cwd=tmp_path)
    one_line_error(out, "no metric is registered")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, needles",
    [
        (["-c", "nosuchcat"], ["unknown category 'nosuchcat' for dataset 'factory'", "known: "]),
        (["--set", "padim.n_features=-4"], ["n_features must be >= 1, got -4"]),
        (["--set", "padim.n_features=\"many\""], ["padim", "many"]),
        (["--seed", "abc"], ["'--seed'", "valid integer"]),
    ],
)
def test_bad_values_fail_at_plan_time(tmp_path, args, needles):
    env = plugin_env(allow="padim,factory,metrics", IADBENCH_CACHE=str(tmp_path / "cache"))
    out = adbench("run", "-d", "padim", *args, "--run-dir", str(tmp_path / "run"), env=env, cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert all(n in out.stderr for n in needles), out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_typer_usage_errors_exit_2(env, tmp_path):
    out = adbench("run", "--no-such-flag", env=env, cwd=tmp_path)
    assert out.returncode == 2 and "No such option" in out.stderr


# --- 8. what the runner promises ------------------------------------------------------


@pytest.mark.slow
def test_two_workers_record_what_one_worker_records(tmp_path):
    """On a small factory grid: the same keys, the same metrics (to float noise: one
    worker gets 2 torch threads, two workers 1 each)."""
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[[detector]]\nname = "pixel_gaussian"\n'
        '[[detector]]\nname = "padim"\nparams = { input_size = 64 }\n'
        '[[dataset]]\nname = "factory"\ncategories = ["fabric", "nut"]\n'
        'params = { image_size = 64, n_train = 10, n_test_good = 4, n_per_defect = 2 }\n'
    )
    env = plugin_env(allow="padim,baselines,factory,metrics")
    by_workers = {}
    for workers in (1, 2):
        run_dir = tmp_path / f"w{workers}"
        out = adbench("run", "--plan", str(plan), "--workers", str(workers), "--run-dir", str(run_dir), env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        by_workers[workers] = {r["key"]: r for r in records(run_dir)}
    one, two = by_workers[1], by_workers[2]
    assert set(one) == set(two) and len(one) == 4
    for key, rec in one.items():
        assert rec["status"] == two[key]["status"] == "ok"
        assert rec["cost"]["threads"] == 2 and two[key]["cost"]["threads"] == 1
        for name, value in rec["metrics"].items():
            assert two[key]["metrics"][name] == pytest.approx(value, abs=1e-6), (key, name)


@pytest.mark.slow
def test_cell_timeout_kills_a_hanging_cell_and_the_run_goes_on(env, tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f'[[detector]]\nname = "{DET}"\nlabel = "hangs"\nparams = {{ fit_sleep = 120 }}\n'
        f'[[detector]]\nname = "{DET}"\nlabel = "fine"\n'
        f'[[dataset]]\nname = "example.blobs"\npath = "{tmp_path / "blobs"}"\ncategories = ["dark"]\n'
    )
    run_dir = tmp_path / "run"
    started = time.time()
    # 8 s: room for the fine cell on a loaded machine (4 s was missed once with other jobs running)
    out = adbench("run", "--plan", str(plan), "--cell-timeout", "8", "--run-dir", str(run_dir), env=env, cwd=tmp_path)
    assert time.time() - started < 60
    assert out.returncode == 1, out.stdout + out.stderr
    by_label = {r["detector"]: r for r in records(run_dir)}
    assert by_label["hangs"]["status"] == "failed" and by_label["hangs"]["error"] == "timed out after 8 s"
    assert by_label["fine"]["status"] == "ok"


def test_list_shows_what_plugins_registered(env, tmp_path):
    out = adbench("list", "detectors", env=env, cwd=tmp_path)
    assert out.returncode == 0 and DET in out.stdout and "example" in out.stdout
    out = adbench("list", "datasets", env=env, cwd=tmp_path)
    assert out.returncode == 0 and "example.blobs" in out.stdout
    out = adbench("list", "metrics", env=env, cwd=tmp_path)
    assert out.returncode == 0 and "image_auroc" in out.stdout and "aupro" in out.stdout
    out = adbench("list", "widgets", env=env, cwd=tmp_path)
    assert out.returncode == 2


def test_compare_matches_cells_and_shows_deltas(env, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert adbench(*grid(tmp_path, "-c", "dark", "--run-dir", str(a)), env=env, cwd=tmp_path).returncode == 0
    assert adbench(*grid(tmp_path, "--run-dir", str(b)), env=env, cwd=tmp_path).returncode == 0
    out = adbench("compare", str(a), str(b), "--out", str(tmp_path / "cmp.md"), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = [line for line in (tmp_path / "cmp.md").read_text().splitlines() if "example.blobs" in line]
    assert len(rows) == 2
    dark = next(r for r in rows if "| dark" in r)
    light = next(r for r in rows if "| light" in r)
    assert "ok/ok" in dark and "0.000" in dark  # the same cell, the same numbers
    assert "only in B" in light


def test_dataset_defaults_enter_the_key_and_unknown_dataset_params_are_refused(registry):
    registry.datasets["ds"] = DatasetSpec("ds", factory=dict, params={"n_test": 8})
    before = expand(Plan([DetectorEntry("a")], [DatasetEntry("ds")]), registry, lambda e: ["c"])
    assert before[0].dataset_params == {"n_test": 8}
    registry.datasets["ds"] = DatasetSpec("ds", factory=dict, params={"n_test": 16})  # a new default
    after = expand(Plan([DetectorEntry("a")], [DatasetEntry("ds")]), registry, lambda e: ["c"])
    assert after[0].key != before[0].key
    explicit = expand(Plan([DetectorEntry("a")], [DatasetEntry("ds", params={"n_test": 16})]), registry, lambda e: ["c"])
    assert explicit[0].key == after[0].key  # the default spelt out is the same cell
    with pytest.raises(InputError, match=r"unknown parameter\(s\) n_tset for dataset 'ds' \(known: n_test\)"):
        expand(Plan([DetectorEntry("a")], [DatasetEntry("ds", params={"n_tset": 1})]), registry, lambda e: ["c"])
