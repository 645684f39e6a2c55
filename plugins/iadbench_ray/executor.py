"""Cells on a Ray cluster: ``adbench run --executor ray [--address ADDR]``.

The runner sees the same seam as with the local executor (``submit(task) -> Future``,
``shutdown(cancel)``) and writes every record itself; this module only decides where
a cell computes and brings its folder back.

How a cell runs
    Each cell is one Ray task asking for ``threads`` CPUs (and memory, where the
    detector's spec states ``memory_mb``; and one GPU, ``num_gpus``, where the cell's
    device is a GPU). Inside the Ray worker the cell runs exactly
    as on one machine: in its own process, forked from a forkserver the worker keeps
    (``LocalProcessExecutor`` with one slot). So a native crash, a timeout or peak
    memory mean the same as locally, a crashing cell does not take the Ray worker down,
    and the worker pays the torch imports once, not once per cell. (Each cell's process
    does re-import the worker's main module, Ray's default_worker.py, as multiprocessing
    does for a forked child: about 0.4 s here under load. Preloading ray in the
    forkserver would save it, but would fork a process that has loaded gRPC.)
    Without ``--workers`` the cells per node and threads per cell follow the local rule
    (a cell per 4 CPUs) on the smallest node, so every request fits on any node.

How results come back
    The cell writes into a scratch folder on the worker; the task returns the result
    and that folder (log, scores.csv, model/) as one tar in Ray's object store, and the
    driver unpacks it into ``runs/<id>/cells/<key>/``. No shared filesystem is assumed.

How data reaches workers
    A worker reads the dataset from the same path as the driver names (the cell holds
    ``data_root``/``dataset_path``): a shared filesystem, or the same copy at the same
    path on every node. We do not put prepared splits into the object store: a split is
    a list of file paths the dataset plugin resolves (images, masks, the paths written
    to scores.csv), the harness decodes and resizes them per detector input size inside
    the cell, and a full-resolution category is hundreds of MB that every node would
    pull anyway. The synthetic ``factory`` needs nothing: each node generates it,
    deterministically, into its own cache.

Faults
    Ray's own ``max_retries`` is 0 and the driver retries instead: a task whose worker
    died (killed, out of memory, node lost) is submitted once more, and the record says
    so (``retried``: attempts and each error). A second death is recorded as failed with
    both reasons. A cell that fails by itself (an exception, a crash of its process) is
    a result, as locally, and is not retried. Ray would retry silently; doing it here is
    what lets the record tell a clean result from one that needed a second worker.

Ctrl-C
    ``shutdown(cancel=True)`` force-cancels every outstanding task (``ray.cancel``
    kills the worker and with it the cell's process) and, for a local instance, stops
    it. Nothing is recorded for those cells, so ``--resume`` reruns them.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iadbench.api import InputError
from iadbench.executors import Cell, CellTask, default_workers

INSTALL_HINT = "the ray executor needs Ray, which is not installed: pip install 'iadbench[ray]'"

#: Environment switches that change what a cell computes (which plugins load, the
#: feature cache); forwarded to the workers so they resolve the plan as the driver did.
#: Paths (IADBENCH_CACHE, IADBENCH_DATA_ROOT) are per machine and stay behind.
FORWARDED_ENV = ("IADBENCH_PLUGINS", "IADBENCH_BLOCK_PLUGINS", "IADBENCH_STRICT_PLUGINS", "IADBENCH_FEATURE_CACHE")

#: A local instance: small object store (a cell returns a tar of its folder; larger
#: objects spill to disk), no dashboard.
LOCAL_OBJECT_STORE_MB = 256


def require_ray():
    """The ray module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return ray


@dataclass
class LocalRay:
    """A Ray instance this process started and will stop."""

    address: str
    temp_dir: Path

    @classmethod
    def start(cls, num_cpus: int, object_store_mb: int = LOCAL_OBJECT_STORE_MB) -> LocalRay:
        ray = require_ray()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline machines: no prompt, no upload
        # Short path: Ray's unix sockets live under it (108-byte limit).
        temp_dir = Path(tempfile.mkdtemp(prefix="iadb-ray-", dir="/tmp" if os.path.isdir("/tmp") else None))
        ray.init(
            num_cpus=num_cpus,
            object_store_memory=object_store_mb * 2**20,
            include_dashboard=False,
            _temp_dir=str(temp_dir),
            log_to_driver=False,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": forwarded_env()},
        )
        return cls(ray.get_runtime_context().gcs_address, temp_dir)

    def stop(self) -> None:
        require_ray().shutdown()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def forwarded_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


def connect(address: str) -> None:
    """Join a running cluster (``auto``: the one this machine belongs to)."""
    ray = require_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING,
                 runtime_env={"env_vars": forwarded_env()})
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError by version
        first = _first_line(exc)
        if not os.environ.get("RAY_AUTH_MODE"):
            first += " (a cluster with token authentication also needs RAY_AUTH_MODE=token and its token here)"
        raise InputError(f"--address {address}: cannot join the Ray cluster: {first}") from None


def smallest_node_cpus() -> int:
    """CPUs of the smallest live node, so a cell's request fits on every node."""
    ray = require_ray()
    cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    cpus = [c for c in cpus if c > 0]
    return min(cpus) if cpus else 1


# --- on the worker ---------------------------------------------------------------------

_worker_executor: dict[str, Any] = {}


def _cell_on_worker(cell_json: dict[str, Any], threads: int, timeout_s: float | None, preload: list[str]) -> dict[str, Any]:
    """The Ray task: run one cell in its own process on this worker and return the
    result with the cell folder packed as a tar."""
    from iadbench.executors import LocalProcessExecutor

    # Ray gives a GPU task its GPU through this worker's CUDA_VISIBLE_DEVICES; cells fork
    # from a forkserver started from the environment, so another GPU needs a fresh one
    config = (threads, timeout_s, tuple(preload), os.environ.get("CUDA_VISIBLE_DEVICES"))
    if _worker_executor.get("config") != config:
        if "executor" in _worker_executor:
            _worker_executor["executor"].shutdown()
        _worker_executor["executor"] = LocalProcessExecutor(workers=1, threads_per_cell=threads, timeout_s=timeout_s, preload=preload)
        _worker_executor["config"] = config
    cell = Cell.from_json(cell_json)
    if cell.device.startswith("cuda"):
        cell.device = "cuda"  # the GPU Ray gave this task, its only visible one (cuda:N is one GPU's key too)
    scratch = Path(tempfile.mkdtemp(prefix="iadbench-cell-"))
    try:
        cell_dir = scratch / cell.key
        result = _worker_executor["executor"].submit(CellTask(cell, cell_dir)).result()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(cell_dir, arcname=".")
        return {"result": result, "cell_dir": str(cell_dir), "tar": buffer.getvalue(), "host": socket.gethostname()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --- on the driver ---------------------------------------------------------------------


@dataclass
class _Job:
    task: CellTask
    future: Future
    attempt: int = 1
    errors: list[str] = field(default_factory=list)


def _unpack(out: dict[str, Any], cell_dir: Path) -> dict[str, Any]:
    """Write the worker's cell folder into the run folder and point the result's paths
    at the driver's copy."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(out["tar"]), mode="r") as tar:
        tar.extractall(cell_dir, filter="data")  # refuses absolute paths and links out of the folder
    result = dict(out["result"])
    remote = out["cell_dir"]
    artifact = result.get("artifact")
    if isinstance(artifact, str) and artifact.startswith(remote):
        result["artifact"] = str(cell_dir) + artifact[len(remote):]
    result["worker_host"] = out.get("host")
    return result


class RayExecutor:
    """Each cell a Ray task; results and cell folders come back to the driver."""

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        threads_per_cell: int | None = None,
        timeout_s: float | None = None,
        preload: list[str] | tuple[str, ...] = (),
        memory_mb: Callable[[Cell], float | None] | None = None,
        retries: int = 1,
        num_cpus: int | None = None,
    ):
        ray = require_ray()
        self._ray = ray
        self._local: LocalRay | None = None
        if ray.is_initialized():
            pass  # this process already drives a cluster (a test, a notebook): use it, leave it up
        elif address is None:
            self._local = LocalRay.start(num_cpus or os.cpu_count() or 1)
        else:
            connect(address)
        self.address = self._local.address if self._local else ray.get_runtime_context().gcs_address
        # Cells per node and threads per cell as the local executor sizes them, on the
        # smallest node so that every cell's request fits anywhere.
        node_cpus = smallest_node_cpus()
        self.workers = max(1, workers) if workers else default_workers(node_cpus)
        self.threads = threads_per_cell or max(1, node_cpus // self.workers)
        self.timeout_s = timeout_s
        self.preload = list(preload)
        self.retries = retries
        self._memory_mb = memory_mb or (lambda cell: None)
        self._remote = ray.remote(_cell_on_worker)
        self._pending: dict[Any, _Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._watcher = threading.Thread(target=self._watch, name="ray-results", daemon=True)
        self._watcher.start()

    def submit(self, task: CellTask) -> Future[dict[str, Any]]:
        from iadbench.executors import ExecutorClosed

        if self._closed:
            raise ExecutorClosed("executor is shut down")
        job = _Job(task, Future())
        self._launch(job)
        return job.future

    def _launch(self, job: _Job) -> None:
        options: dict[str, Any] = {"num_cpus": self.threads, "max_retries": 0, "name": f"cell-{job.task.cell.key}"}
        if getattr(job.task.cell, "device", "cpu").startswith("cuda"):
            # Ray sets the task's CUDA_VISIBLE_DEVICES to its GPU: the cell computes on cuda:0
            options["num_gpus"] = 1
        memory = self._memory_mb(job.task.cell)
        if memory:
            options["memory"] = int(memory * 2**20)
        ref = self._remote.options(**options).remote(job.task.cell.to_json(), self.threads, self.timeout_s, self.preload)
        with self._lock:
            self._pending[ref] = job
        self._wake.set()

    def _watch(self) -> None:
        ray = self._ray
        while not self._closed:
            with self._lock:
                refs = list(self._pending)
            if not refs:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                ready, _ = ray.wait(refs, num_returns=1, timeout=0.5)
            except Exception:  # noqa: BLE001 - Ray going down under us (shutdown)
                if self._closed:
                    return
                raise
            for ref in ready:
                with self._lock:
                    job = self._pending.pop(ref, None)
                if job is not None:
                    self._finish(ref, job)

    def _finish(self, ref, job: _Job) -> None:
        from ray import exceptions as rex

        try:
            out = self._ray.get(ref)
        except rex.TaskCancelledError:
            job.future.cancel()
            return
        except rex.RayTaskError as exc:  # our task code raised: a harness bug, not a dead worker
            job.future.set_result(self._failed(job, f"ray task raised: {_first_line(exc)}"))
            return
        except rex.RayError as exc:  # the worker or its node died, or an object was lost
            job.errors.append(f"attempt {job.attempt}: {type(exc).__name__}: {_first_line(exc)}")
            if job.attempt <= self.retries and not self._closed:
                job.attempt += 1
                self._launch(job)
                return
            job.future.set_result(self._failed(job, f"Ray worker died {job.attempt} times ({'; '.join(job.errors)})"))
            return
        try:
            result = _unpack(out, job.task.cell_dir)
        except Exception as exc:  # noqa: BLE001 - recorded as the executor's failure
            job.future.set_exception(exc)
            return
        if job.errors:
            result["retried"] = {"attempts": job.attempt, "errors": job.errors}
        job.future.set_result(result)

    def _failed(self, job: _Job, error: str) -> dict[str, Any]:
        return {"status": "failed", "error": error, "retried": {"attempts": job.attempt, "errors": job.errors},
                "finished": time.time()}

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            self._closed = True
            with self._lock:
                pending = list(self._pending.items())
                self._pending.clear()
            for ref, job in pending:
                try:
                    self._ray.cancel(ref, force=True)  # kills the worker, and with it the cell's process
                except Exception:  # noqa: BLE001 - already finished or Ray already gone
                    pass
                job.future.cancel()
        else:
            while True:  # the runner has collected every future; this only guards misuse
                with self._lock:
                    if not self._pending:
                        break
                time.sleep(0.1)
            self._closed = True
        self._wake.set()
        self._watcher.join(timeout=5)
        if self._local is not None:
            self._local.stop()
            self._local = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
