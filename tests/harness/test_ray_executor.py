"""The Ray executor: the same records as the local executor, a killed worker retried
once then recorded, --resume completing the run, Ctrl-C, and a one-line hint where
Ray is not installed.

One local Ray instance (2 CPUs) serves the whole module: starting one costs ~10 s here.
It is started by the executor's own ``LocalRay.start`` (what ``--executor ray`` without
``--address`` does); this process drives it for the in-process runs, and CLI runs join
it with ``--address``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from rich.console import Console

from iadbench.runner.plan import DatasetEntry, DetectorEntry, Plan, expand, load_plan_file
from iadbench.runner.runner import execute
from testkit import make_plugin_site, plugin_env

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
    '[run]\nkeep_models = "all"\n'  # every cell's model folder stays, to compare local and Ray
    '[[detector]]\nname = "pixel_gaussian"\n'
    '[[detector]]\nname = "padim"\nparams = { input_size = 64 }\n'
    '[[dataset]]\nname = "factory"\ncategories = ["nut"]\n'
    "params = { image_size = 64, n_train = 10, n_test_good = 4, n_per_defect = 2 }\n"
)


PLUGINS = "padim,baselines,factory,metrics,example,raykill,ray"


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]


@dataclass
class Cluster:
    address: str
    env: dict[str, str]  # for a CLI subprocess that joins it
    sites: tuple[Path, ...]
    cache: Path


@pytest.fixture(scope="module")
def cluster(example_site, tmp_path_factory):
    """A local Ray instance with 2 CPUs whose workers see the example and victim
    plugins and a private cache. This process is its first driver."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'iadbench[ray]')")
    from iadbench_ray.executor import LocalRay

    root = tmp_path_factory.mktemp("ray")
    victim_site = make_plugin_site(root, "raykill", VICTIM)
    env = plugin_env(example_site, victim_site, allow=PLUGINS, IADBENCH_CACHE=str(root / "cache"))
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
        yield Cluster(local.address, env, (example_site, victim_site), root / "cache")
    finally:
        local.stop()
    _, alive = psutil.wait_procs(raylet, timeout=10)
    assert not alive, f"the local Ray instance outlived stop(): {alive}"


@pytest.fixture
def registry(cluster, use_sites, monkeypatch):
    """This process's registry with the same plugins and cache as the workers, for
    runs driven in-process (cheaper than a CLI subprocess each)."""
    from iadbench.plugins import get_registry

    use_sites(*cluster.sites)
    monkeypatch.setenv("IADBENCH_PLUGINS", PLUGINS)
    monkeypatch.setenv("IADBENCH_CACHE", str(cluster.cache))
    return get_registry()


QUIET = Console(file=open(os.devnull, "w"))


def test_ray_records_match_the_local_executor(registry, tmp_path):
    """The same factory grid through both executors: same keys, same metrics, and the
    cell folders back in the run folder."""
    plan = tmp_path / "plan.toml"
    plan.write_text(FACTORY_PLAN)
    local, remote = tmp_path / "local", tmp_path / "ray"
    execute(load_plan_file(plan), registry, local, console=QUIET)
    on_ray = load_plan_file(plan)
    on_ray.executor = "ray"  # this process already drives the module's Ray instance
    execute(on_ray, registry, remote, console=QUIET)

    by_local = {r["key"]: r for r in records(local)}
    by_ray = {r["key"]: r for r in records(remote)}
    assert set(by_local) == set(by_ray) and len(by_ray) == 2
    for key, rec in by_ray.items():
        assert rec["status"] == by_local[key]["status"] == "ok", rec["error"]
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
        assert len(ours) == len(theirs) > 0 and [float(x) for x in ours] == pytest.approx([float(x) for x in theirs], rel=1e-6)
        assert "retried" not in rec
    assert json.loads((remote / "run.json").read_text())["plan"]["executor"] == "ray"


def test_a_killed_worker_is_retried_once_then_recorded_and_resume_completes(registry, tmp_path):
    """Two cells kill their Ray worker (once, twice), a third is fine."""
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[run]\nexecutor = "ray"\n'
        f'[[detector]]\nname = "raykill.victim"\nlabel = "once"\nparams = {{ kills = 1, marker = "{tmp_path / "once"}" }}\n'
        f'[[detector]]\nname = "raykill.victim"\nlabel = "twice"\nparams = {{ kills = 2, marker = "{tmp_path / "twice"}" }}\n'
        '[[detector]]\nname = "example.median_distance"\nlabel = "fine"\n'
        f'[[dataset]]\nname = "example.blobs"\npath = "{tmp_path / "blobs"}"\ncategories = ["dark"]\n'
    )
    run_dir = tmp_path / "run"
    # Two workers: a cell per CPU, so the killed workers restart side by side.
    execute(load_plan_file(plan), registry, run_dir, workers=2, console=QUIET)
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

    # --resume (the plan, executor included, comes from the run folder)
    execute(Plan.from_json(json.loads((run_dir / "run.json").read_text())["plan"]), registry, run_dir,
            resume=True, workers=2, console=QUIET)
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


def test_ctrl_c_cancels_outstanding_tasks_and_leaves_a_resumable_run(cluster, tmp_path, ctrl_c_reaches_children):
    env = {**cluster.env, "IADBENCH_PLUGINS": "example,metrics,ray"}
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "iadbench", "run", "-d", "example.median_distance", "--dataset", "example.blobs",
         "--dataset-path", f"example.blobs={tmp_path / 'blobs'}", "--set", "example.median_distance.fit_sleep=60",
         "--executor", "ray", "--address", cluster.address, "--run-dir", str(run_dir)],
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


def test_without_ray_the_ray_executor_is_a_one_line_install_hint(monkeypatch, tmp_path):
    from iadbench.errors import InputError
    from iadbench.plugins import Registry, get_registry
    from iadbench.types import DatasetSpec, DetectorSpec, MetricSpec

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    registry = Registry(detectors={"a": DetectorSpec("a", factory=dict)},
                        datasets={"ds": DatasetSpec("ds", factory=lambda path: SimpleNamespace(categories=lambda: ["c"]))},
                        metrics={"m": MetricSpec("m", fn=len)}, executors=get_registry().executors)
    plan = Plan([DetectorEntry("a")], [DatasetEntry("ds", ["c"])], executor="ray")
    with pytest.raises(InputError) as err:
        execute(plan, registry, tmp_path / "run", console=QUIET)
    assert str(err.value) == "the ray executor needs Ray, which is not installed: pip install 'iadbench[ray]'"
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
