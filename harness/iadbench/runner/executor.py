"""Executors run cells and hand back results as futures.

The runner only calls ``submit(task) -> Future[dict]`` and ``shutdown()``, so another
executor (a Ray cluster, a job queue) plugs in without touching the runner. The local
one runs each cell in its own Python process: a crash, an out-of-memory kill or a hang
loses that cell only.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import multiprocessing.forkserver
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from iadbench.runner.cell import CELL_ENV, PRELOAD
from iadbench.runner.plan import Cell


@dataclass
class CellTask:
    cell: Cell
    cell_dir: Path


class Executor(Protocol):
    def submit(self, task: CellTask) -> Future[dict[str, Any]]: ...

    def shutdown(self, cancel: bool = False) -> None: ...


def default_workers(cpus: int | None = None) -> int:
    """Cells in parallel: torch already uses every core within a cell, so on small
    machines one cell at a time is fastest; larger ones run a cell per 4 cores."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // 4)


def _die_with_parent() -> None:
    """Linux: the cell is killed when the runner dies (kill -9 and SIGTERM included), so
    no orphan keeps computing a result nobody will record, or writing into a cell folder
    that a resumed run has given to a new process.

    The cell's parent is the forkserver, not the runner, and the forkserver lives as
    long as any process holds a copy of its "alive" pipe: multiprocessing hands one to
    every process it forks, so a running cell kept the forkserver, and so itself, alive
    after its runner died. The cell closes its copy: the runner's death then closes the
    last one, the forkserver exits, and PR_SET_PDEATHSIG kills the cell."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    server = multiprocessing.forkserver._forkserver
    alive = getattr(server, "_forkserver_alive_fd", None)  # private, stable since 3.4
    if alive is not None:
        try:
            os.close(alive)
        except OSError:
            pass
        server._forkserver_alive_fd = None
    if os.getppid() == 1:  # the forkserver had already gone before prctl took effect
        os._exit(1)


def _cell_entry(spec_path: str, result_path: str, log_path: str, threads: int, gpu: int | None = None) -> None:
    """First code of a forked cell process: its own log, threads and GPU. The GPU is
    chosen through CUDA_VISIBLE_DEVICES, read when CUDA initialises: the forkserver
    imported torch but never touched CUDA, so the cell's first CUDA call sees only it."""
    _die_with_parent()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    _cell_environment(threads, gpu)
    from iadbench.runner import cell

    os._exit(cell.run_cell_files(Path(spec_path), Path(result_path)))


def _cell_environment(threads: int, gpu: int | None) -> None:
    """A cell process's threads and GPU, set before any of its code runs."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


#: What the running forkserver was started with (preload list, environment); the
#: forkserver is one per interpreter, so a later executor that wants other modules or
#: sees another environment must restart it, or its cells would run with stale ones.
_forkserver_started_with: tuple | None = None


def _stop_forkserver() -> None:
    """Stop the forkserver at once (the next cell starts a fresh one): left to exit on
    its own, its interpreter, torch loaded, takes seconds to tear down, holding the
    terminal's pipes after a Ctrl-C."""
    global _forkserver_started_with
    server = multiprocessing.forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server._stop()  # private but stable since 3.8: reaps it and forgets it
    _forkserver_started_with = None


def _fresh_forkserver(preload: list[str]) -> None:
    global _forkserver_started_with
    wanted = (tuple(preload), tuple(sorted(os.environ.items())))
    if _forkserver_started_with not in (None, wanted):
        _stop_forkserver()
    multiprocessing.forkserver._forkserver.set_forkserver_preload(list(preload))
    _forkserver_started_with = wanted


class ExecutorClosed(RuntimeError):
    """A cell was submitted or about to start after shutdown(cancel=True)."""


class LocalProcessExecutor:
    """Each cell in its own process, forked from a forkserver that has already
    imported torch and friends (a fresh interpreter per cell spends seconds on
    imports alone).

    ``gpus``: GPU indices handed out one to each running cell whose device is
    ``cuda`` (it sees that GPU alone, as ``cuda:0``), so a run computes on every GPU
    at once, a cell per GPU at most."""

    def __init__(
        self,
        workers: int = 1,
        threads_per_cell: int | None = None,
        timeout_s: float | None = None,
        preload: list[str] | tuple[str, ...] = (),
        gpus: list[int] | tuple[int, ...] = (),
    ):
        self.gpus = [int(g) for g in gpus]
        # two cells on one GPU contend for its memory: no more cells than GPUs
        self.workers = max(1, min(workers, len(self.gpus)) if self.gpus else workers)
        self._free_gpus: queue.SimpleQueue[int] = queue.SimpleQueue()
        for gpu in self.gpus:
            self._free_gpus.put(gpu)
        cpus = os.cpu_count() or 1
        self.threads = threads_per_cell or max(1, cpus // self.workers)
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="cell")
        self._procs: set = set()
        # Guards starting a process against shutdown: a cell either starts before the
        # kill loop (and is killed by it) or sees _closed and never starts.
        self._start_lock = threading.Lock()
        self._closed = False
        self._mp = multiprocessing.get_context("forkserver")
        # the forkserver is a fresh process started from this environment; its forks inherit it
        os.environ.update(CELL_ENV)
        _fresh_forkserver(list(dict.fromkeys([*PRELOAD, *preload])))

    def submit(self, task: CellTask) -> Future[dict[str, Any]]:
        if self._closed:
            raise ExecutorClosed("executor is shut down")
        return self._pool.submit(self._run, task)

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            with self._start_lock:
                self._closed = True
                for proc in list(self._procs):
                    proc.kill()
            # Before waiting on the pool: a second Ctrl-C during that wait must not
            # leave the forkserver behind.
            _stop_forkserver()
        self._pool.shutdown(wait=True, cancel_futures=cancel)

    def _take_gpu(self, cell: Cell) -> int | None:
        """A free GPU for a ``cuda`` cell (waits for one; there are as many workers as
        GPUs, so it never waits long); None for a CPU cell or one pinned to cuda:N."""
        if not self.gpus or getattr(cell, "device", "cpu") != "cuda":
            return None
        return self._free_gpus.get()

    def _run(self, task: CellTask) -> dict[str, Any]:
        task.cell_dir.mkdir(parents=True, exist_ok=True)
        spec_path = task.cell_dir / "cell.json"
        result_path = task.cell_dir / "result.json"
        log_path = task.cell_dir / "cell.log"
        result_path.unlink(missing_ok=True)
        spec_path.write_text(json.dumps({"cell": task.cell.to_json(), "threads": self.threads}, indent=2))
        started = time.time()
        gpu = self._take_gpu(task.cell)
        proc = self._mp.Process(
            target=_cell_entry,
            args=(str(spec_path), str(result_path), str(log_path), self.threads, gpu),
            name=f"cell-{task.cell.key}",
        )
        try:
            with self._start_lock:
                if self._closed:
                    raise ExecutorClosed("executor is shut down")
                proc.start()
                self._procs.add(proc)
            try:
                proc.join(self.timeout_s)
                timed_out = proc.is_alive()
                if timed_out:
                    proc.kill()
                    proc.join()
            finally:
                self._procs.discard(proc)
        finally:
            if gpu is not None:
                self._free_gpus.put(gpu)
        rc = proc.exitcode
        if result_path.is_file():
            return json.loads(result_path.read_text())
        if timed_out:
            error = f"timed out after {self.timeout_s:.0f} s"
        elif rc is not None and rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
            error = f"cell process killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        else:
            error = f"cell process exited with code {rc}: {_tail(log_path)}"
        return {"status": "failed", "error": error, "started": started, "finished": time.time()}


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])
