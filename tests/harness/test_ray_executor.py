"""The Ray executor through the real CLI: the same records as the local executor, a
killed worker retried once then recorded, --resume completing the run, Ctrl-C, and a
one-line hint where Ray is not installed.

One local Ray instance (2 CPUs) serves the whole module: starting one costs ~10 s here.
It is started by the executor's own ``LocalRay.start`` (what ``--executor ray`` without
``--address`` does) and the CLI runs join it with ``--address``.
"""

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

from iadbench.runner.plan import DatasetEntry, DetectorEntry, Plan, expand, load_plan_file
from testkit import adbench, make_plugin_site, plugin_env

# A detector that SIGKILLs the Ray worker running it, on its first ``kills`` attempts
# (counted in a marker file), as an out-of-memory killer or a lost node would.
VICTIM = '''
import os, signal, time
from pathlib import Path
import numpy as np
import psutil
from iadbench.api import Detector, DetectorSpec, Prediction, hookimpl

class Victim(Detector):
    name = "raykill.victim"

    def __init__(self, input_size=32, kills=0, marker=""):
        super().__init__(input_size=input_size, kills=kills, marker=marker)
        self.input_size = (input_size, input_size)
        self.kills, self.marker = kills, marker

    def fit(self, images, ctx):
        marker = Path(self.marker)
        attempt = len(marker.read_text().splitlines()) if marker.exists() else 0
        with marker.open("a") as f:
            f.write(f"{os.getpid()}\\n")
        if attempt < self.kills:
            for proc in psutil.Process().parents():
                if any("ray::" in part or "default_worker.py" in part for part in proc.cmdline()):
                    proc.send_signal(signal.SIGKILL)
                    break
            else:
                raise RuntimeError("not inside a Ray worker")
            time.sleep(60)  # mid-cell; our own parent's death ends us
        self.mean = images.astype(np.float32).mean(0)

    def predict(self, images):
        maps = np.abs(images.astype(np.float32) - self.mean).mean(-1)
        return Prediction(maps.reshape(len(maps), -1).max(1), maps)

    def state_tensors(self):
        import torch
        return {"mean": torch.from_numpy(self.mean)}

    def load_state_tensors(self, tensors):
        self.mean = tensors["mean"].numpy()

@hookimpl
def register_detectors(register):
    register(DetectorSpec(name="raykill.victim", factory=Victim, params={"input_size": 32, "kills": 0, "marker": ""}, version="1"))
'''

FACTORY_PLAN = (
    '[[detector]]\nname = "pixel_gaussian"\n'
    '[[detector]]\nname = "padim"\nparams = { input_size = 64 }\n'
    '[[dataset]]\nname = "factory"\ncategories = ["nut"]\n'
    "params = { image_size = 64, n_train = 10, n_test_good = 4, n_per_defect = 2 }\n"
)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cluster(example_site, tmp_path_factory):
    """A local Ray instance with 2 CPUs whose workers see the example and victim
    plugins and a private cache; yields (address, environment for the CLI)."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'iadbench[ray]')")
    from iadbench.runner.ray_executor import LocalRay

    root = tmp_path_factory.mktemp("ray")
    victim_site = make_plugin_site(root, "raykill", VICTIM)
    env = plugin_env(example_site, victim_site, IADBENCH_CACHE=str(root / "cache"))
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the raylet, and so every worker, starts from this environment
    try:
        local = LocalRay.start(num_cpus=2)
        # Ray turns token authentication on for a new local cluster; a driver that
        # joins it must say so (the token itself is read from ~/.ray/auth_token).
        if os.environ.get("RAY_AUTH_MODE"):
            env["RAY_AUTH_MODE"] = os.environ["RAY_AUTH_MODE"]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    raylet = [p for p in psutil.Process().children(recursive=True) if "raylet" in p.name()]
    try:
        yield local.address, env
    finally:
        local.stop()
    _, alive = psutil.wait_procs(raylet, timeout=10)
    assert not alive, f"the local Ray instance outlived stop(): {alive}"


def test_ray_records_match_the_local_executor(cluster, tmp_path):
    address, env = cluster
    env = {**env, "IADBENCH_PLUGINS": "padim,baselines,factory,metrics"}
    plan = tmp_path / "plan.toml"
    plan.write_text(FACTORY_PLAN)
    local, remote = tmp_path / "local", tmp_path / "ray"
    out = adbench("run", "--plan", str(plan), "--run-dir", str(local), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    out = adbench("run", "--plan", str(plan), "--executor", "ray", "--address", address, "--run-dir", str(remote),
                  env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr

    by_local = {r["key"]: r for r in records(local)}
    by_ray = {r["key"]: r for r in records(remote)}
    assert set(by_local) == set(by_ray) and len(by_ray) == 2
    for key, rec in by_ray.items():
        assert rec["status"] == by_local[key]["status"] == "ok"
        assert rec["cost"]["threads"] == by_local[key]["cost"]["threads"] == 2
        assert set(rec["metrics"]) == set(by_local[key]["metrics"])
        for name, value in by_local[key]["metrics"].items():
            assert rec["metrics"][name] == pytest.approx(value, abs=1e-6), (key, name)
        # The cell folder came back through Ray into this run folder, and the record
        # points at the copy here, not at the worker's scratch folder.
        cell_dir = remote / "cells" / key
        assert Path(rec["artifact"]) == cell_dir / "model"
        assert (cell_dir / "model" / "model.safetensors").is_file() and (cell_dir / "cell.log").is_file()
        ours = [line.split(",")[-1] for line in (cell_dir / "scores.csv").read_text().splitlines()[1:]]
        theirs = [line.split(",")[-1] for line in (local / "cells" / key / "scores.csv").read_text().splitlines()[1:]]
        assert [float(x) for x in ours] == pytest.approx([float(x) for x in theirs], rel=1e-6)
        assert "retried" not in rec
    assert json.loads((remote / "run.json").read_text())["plan"]["executor"] == "ray"


def test_a_killed_worker_is_retried_once_then_recorded_and_resume_completes(cluster, tmp_path):
    address, env = cluster
    env = {**env, "IADBENCH_PLUGINS": "example,raykill,metrics"}
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f'[run]\nexecutor = "ray"\naddress = "{address}"\n'
        f'[[detector]]\nname = "raykill.victim"\nlabel = "once"\nparams = {{ kills = 1, marker = "{tmp_path / "once"}" }}\n'
        f'[[detector]]\nname = "raykill.victim"\nlabel = "twice"\nparams = {{ kills = 2, marker = "{tmp_path / "twice"}" }}\n'
        '[[detector]]\nname = "example.median_distance"\nlabel = "fine"\n'
        f'[[dataset]]\nname = "example.blobs"\npath = "{tmp_path / "blobs"}"\ncategories = ["dark"]\n'
    )
    run_dir = tmp_path / "run"
    out = adbench("run", "--plan", str(plan), "--run-dir", str(run_dir), env=env, cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    by_label = {r["detector"]: r for r in records(run_dir)}
    assert len(records(run_dir)) == 3  # one record per cell: no duplicate for the retried ones
    assert by_label["fine"]["status"] == "ok" and "retried" not in by_label["fine"]
    once = by_label["once"]
    assert once["status"] == "ok" and once["retried"]["attempts"] == 2
    assert "WorkerCrashedError" in once["retried"]["errors"][0]
    twice = by_label["twice"]
    assert twice["status"] == "failed" and twice["retried"]["attempts"] == 2
    assert twice["error"].startswith("Ray worker died 2 times")
    assert len((tmp_path / "twice").read_text().splitlines()) == 2  # retried once, not more

    out = adbench("run", "--resume", "--run-dir", str(run_dir), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    recs = records(run_dir)
    assert len(recs) == 4 and recs[-1]["detector"] == "twice" and recs[-1]["status"] == "ok"
    cells = json.loads((run_dir / "run.json").read_text())["cells"]
    assert sorted(r["key"] for r in recs if r["status"] == "ok") == sorted(c["key"] for c in cells)


def _ray_cell_workers() -> list[psutil.Process]:
    """Workers of this module's Ray instance (all descendants of this process) that
    are running a cell task (Ray titles a busy worker after its task)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if any(part.startswith("ray::cell-") for part in proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_ctrl_c_cancels_outstanding_tasks_and_leaves_a_resumable_run(cluster, tmp_path):
    address, env = cluster
    env = {**env, "IADBENCH_PLUGINS": "example,metrics"}
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "iadbench", "run", "-d", "example.median_distance", "--dataset", "example.blobs",
         "--dataset-path", f"example.blobs={tmp_path / 'blobs'}", "--set", "example.median_distance.fit_sleep=60",
         "--executor", "ray", "--address", address, "--run-dir", str(run_dir)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    deadline = time.time() + 60
    while not _ray_cell_workers() and time.time() < deadline:
        time.sleep(0.2)
    workers = _ray_cell_workers()
    assert workers, "no Ray task started within 60 s"
    time.sleep(1.0)  # inside fit's sleep now
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted: resume with `adbench run --resume --run-dir" in stdout
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"Ray tasks still running after Ctrl-C: {alive}"
    assert records(run_dir) == []  # nothing half-recorded
    assert json.loads((run_dir / "run.json").read_text())["plan"]["executor"] == "ray"


def test_without_ray_the_ray_executor_is_a_one_line_install_hint(example_site, tmp_path):
    hide = tmp_path / "hide_ray"
    (hide / "ray").mkdir(parents=True)
    (hide / "ray" / "__init__.py").write_text("raise ImportError('ray hidden by the test')\n")
    env = plugin_env(hide, example_site, allow="example,metrics", IADBENCH_CACHE=str(tmp_path / "cache"))
    out = adbench("run", "-d", "example.median_distance", "--dataset", "example.blobs",
                  "--dataset-path", f"example.blobs={tmp_path / 'blobs'}", "--executor", "ray",
                  "--run-dir", str(tmp_path / "run"), env=env, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'iadbench[ray]'" in lines[0], out.stderr
    assert not (tmp_path / "run").exists()  # refused before the run folder was touched


def test_executor_and_address_live_in_the_plan_but_not_in_cell_keys(tmp_path):
    from iadbench.errors import InputError
    from iadbench.plugins import Registry
    from iadbench.types import DatasetSpec, DetectorSpec

    path = tmp_path / "plan.toml"
    path.write_text('[run]\nexecutor = "ray"\naddress = "auto"\n[[detector]]\nname = "a"\n[[dataset]]\nname = "ds"\n')
    plan = load_plan_file(path)
    assert (plan.executor, plan.address) == ("ray", "auto")
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))).address == "auto"
    registry = Registry(detectors={"a": DetectorSpec("a", factory=dict)}, datasets={"ds": DatasetSpec("ds", factory=dict)})
    local = Plan([DetectorEntry("a")], [DatasetEntry("ds")])
    assert [c.key for c in expand(plan, registry, lambda e: ["c"])] == [c.key for c in expand(local, registry, lambda e: ["c"])]
    path.write_text('[run]\nexecutor = "dask"\n[[detector]]\nname = "a"\n')
    with pytest.raises(InputError, match=r"plan.toml: unknown executor 'dask' \(known: local, ray\)"):
        load_plan_file(path)
