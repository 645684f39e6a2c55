"""The public API for executor plugins (``register_executors``): what an executor
receives, what it returns, and the local process executor to build on (the Ray
executor runs it on every node).

An executor is any object with ``submit(task: CellTask) -> Future[dict]`` (the dict
the cell process wrote, or ``{"status": "failed", "error": ...}``) and
``shutdown(cancel: bool = False)``; it may expose ``threads`` (torch threads per cell)
and ``workers`` for the run's environment record."""

from iadbench.runner.executor import CellTask, Executor, ExecutorClosed, LocalProcessExecutor, default_workers
from iadbench.runner.plan import Cell
from iadbench.types import ExecutorOptions, ExecutorSpec

__all__ = [
    "Cell",
    "CellTask",
    "Executor",
    "ExecutorClosed",
    "ExecutorOptions",
    "ExecutorSpec",
    "LocalProcessExecutor",
    "default_workers",
]
