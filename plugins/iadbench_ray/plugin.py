"""The Ray executor, registered through the hook any executor plugin uses. Ray itself
is imported only when a run asks for it."""

from __future__ import annotations

from iadbench.api import ExecutorOptions, ExecutorSpec, hookimpl


def _ray(options: ExecutorOptions):
    from iadbench_ray.executor import RayExecutor

    return RayExecutor(address=options.address, workers=options.workers, timeout_s=options.timeout_s,
                       preload=options.preload, memory_mb=options.memory_mb)


def _check(address: str | None) -> None:
    from iadbench_ray.executor import require_ray

    require_ray()  # not installed: one line saying how


@hookimpl
def register_executors(register):
    register(ExecutorSpec(
        "ray", _ray, takes_address=True, check=_check,
        description="cells as Ray tasks on a cluster (--address HOST:PORT or auto), or on a local Ray instance",
    ))
