"""The executor every run can count on, registered through the ``register_executors``
hook by the core's own entry point ("core" in pyproject.toml), which allow- and
block-lists do not touch: a list that left out every executor would leave nothing able
to run a cell. The registry finds it like any plugin, so it never imports the runner."""

from __future__ import annotations

from iadbench.hookspecs import hookimpl
from iadbench.types import ExecutorOptions, ExecutorSpec


def _local(options: ExecutorOptions):
    from iadbench.runner.executor import LocalProcessExecutor, default_workers

    # unsized: a cell per GPU on a GPU run, else as many as this machine's cores suit
    workers = options.workers or len(options.gpus) or default_workers()
    return LocalProcessExecutor(workers=workers, timeout_s=options.timeout_s, preload=options.preload, gpus=options.gpus)


@hookimpl
def register_executors(register):
    register(ExecutorSpec(
        "local", _local,
        description="each cell in its own process on this machine (a crash or hang loses that cell only)",
    ))
