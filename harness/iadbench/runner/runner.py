"""The grid runner: expand the plan, skip cells already done, hand the rest to an
executor, append each record as its cell ends, and report."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from iadbench.errors import InputError
from iadbench.plugins import Registry
from iadbench.results.housekeeping import Pruned, prune_models
from iadbench.results.record import CellRecord, build_record
from iadbench.results.store import RunStore
from iadbench.runner import environment
from iadbench.runner.executor import CellTask, Executor
from iadbench.runner.plan import Cell, DatasetEntry, Plan, check_executor, expand

ALREADY_A_RUN = "run folder already holds a run: pass --resume to continue it, or choose another --run-dir"


@dataclass
class RunOutcome:
    run_dir: Path
    cells: list[Cell]
    skipped: int
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> latest record (CellRecord.to_json())
    models: Pruned | None = None  # which model folders the run kept (plan.keep_models)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records.values() if r.get("status") != "ok"]


def new_run_dir(base: Path = Path("runs")) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return base / f"{stamp}-{uuid.uuid4().hex[:6]}"


def categories_lister(registry: Registry, data_root: str | None) -> Callable[[DatasetEntry], list[str]]:
    def categories_of(entry: DatasetEntry) -> list[str]:
        from iadbench.datasets import resolve_dataset

        dataset = resolve_dataset(
            registry,
            entry.name,
            data_root=Path(data_root) if data_root else None,
            path=Path(entry.path) if entry.path else None,
            **entry.params,
        )
        return list(dataset.categories())

    return categories_of


def _records(cell: Cell, result: dict[str, Any], run_id: str) -> list[CellRecord]:
    """The cell's records: one, or for a unified cell one per category (each with its
    category's part of the result, or the cell's failure)."""
    if not cell.categories:
        return [_record(cell, result, run_id)]
    from dataclasses import replace

    from iadbench.model.unified import record_key

    per = result.get("per_category") or {}
    shared = {k: v for k, v in result.items() if k != "per_category"}
    out = []
    for category in cell.categories:
        part = per.get(category)
        if part is None and result.get("status") == "ok":
            part = {"status": "failed", "error": f"the unified cell returned nothing for category '{category}'"}
        one = replace(cell, key=record_key(cell.key, category), category=category)
        out.append(_record(one, {**shared, **(part or {}), "cell_key": cell.key}, run_id))
    return out


def _record(cell: Cell, result: dict[str, Any], run_id: str) -> CellRecord:
    """The cell's record: its identity from the plan, the rest from its result. A result
    that does not fit the schema (a cell bug) is recorded as a failure saying so."""
    identity = {
        "key": cell.key,
        "run_id": run_id,
        "detector": cell.label,
        "detector_name": cell.detector,
        "detector_version": cell.detector_version,
        "dataset": cell.dataset,
        "dataset_version": cell.dataset_version,
        "category": cell.category,
        "seed": cell.seed,
        "params": cell.params,
        "settings": cell.settings,
        "protocol": cell.protocol,
        "setting": "unified" if cell.categories else "per-category",
    }
    if cell.defects_reserve:  # a failed cell still says which K it was; an ok one says the rest
        identity["supervision"] = {"k": cell.defects_in_train, "reserve": cell.defects_reserve,
                                   "learns": cell.defects_learns}
    try:
        return build_record(identity, result)
    except InputError as exc:
        return build_record(identity, {"status": "failed", "error": str(exc),
                                       "started": result.get("started"), "finished": result.get("finished")})


def _make_executor(plan: Plan, registry: Registry, workers: int | None, timeout_s: float | None, preload: list[str],
                   cells: list[Cell] = ()) -> Executor:
    """The plan's executor, built by the plugin that registered it."""
    from iadbench.types import ExecutorOptions

    options = ExecutorOptions(workers=workers, timeout_s=timeout_s, preload=preload, address=plan.address,
                              memory_mb=lambda cell: registry.detector(cell.detector).memory_mb,
                              gpus=_gpus_to_share(cells))
    return registry.executor(plan.executor).factory(options)


def _gpus_to_share(cells: list[Cell]) -> list[int]:
    """This machine's GPU indices where cells run on "cuda" (any GPU), so the executor
    hands each running cell one; none for CPU cells or cells pinned to cuda:N.
    Counting GPUs initialises CUDA in this process only: cells fork from a forkserver
    started afresh, which never touches CUDA."""
    if not any(c.device == "cuda" for c in cells):
        return []
    from iadbench.devices import gpu_count

    return list(range(gpu_count()))


def execute(
    plan: Plan,
    registry: Registry,
    run_dir: Path,
    *,
    resume: bool = False,
    executor: Executor | None = None,
    workers: int | None = 1,  # None: the executor sizes it (ray: per node)
    console: Console | None = None,
    cell_timeout_s: float | None = None,
    force: bool = False,
) -> RunOutcome:
    """Run ``plan``'s cells into ``run_dir``. ``force``: run published training lengths
    on the CPU despite the estimate (iadbench.runner.training.refuse_on_cpu)."""
    console = console or Console()
    store = RunStore(run_dir)
    if resume and not store.exists:
        raise InputError("nothing to resume (no run.json)", run_dir)
    if store.exists and not resume:  # checked again under the lock
        raise InputError(ALREADY_A_RUN, run_dir)
    if not registry.metrics:
        raise InputError(
            "no metric is registered, so cells would record no results "
            "(do IADBENCH_PLUGINS / IADBENCH_BLOCK_PLUGINS leave out the 'metrics' plugin?)"
        )
    # Every check on the plan runs before the run folder is touched.
    cells = expand(plan, registry, categories_lister(registry, plan.data_root))
    _check_defect_reserve(cells, registry)
    if plan.training == "published" and not force and any(c.device == "cpu" for c in cells):
        from iadbench.runner.training import refuse_on_cpu

        refuse_on_cpu([c for c in cells if c.device == "cpu"], registry, run_dir.parent)
    if executor is None:  # a name the plugins registered, usable here: checked before the folder exists
        check_executor(plan.executor, plan.address, registry=registry, ready=True)
    with store.locked():
        return _execute_locked(plan, registry, store, cells, resume, executor, workers, console, cell_timeout_s)


def _check_defect_reserve(cells: list[Cell], registry: Registry) -> None:
    """Each category can give the labelled defects the sweep asks for (a one-line error
    naming the first that cannot), before the run folder exists."""
    from iadbench.datasets import resolve_dataset
    from iadbench.model.defects import check_reserve

    wanted = {(c.dataset, c.dataset_path, json.dumps(c.dataset_params, sort_keys=True), c.data_root, c.category):
              c for c in cells if c.defects_reserve}
    opened: dict[tuple, Any] = {}
    for (name, path, params, root, category), cell in wanted.items():
        if (name, path, params, root) not in opened:
            opened[(name, path, params, root)] = resolve_dataset(
                registry, name, data_root=Path(root) if root else None, path=Path(path) if path else None,
                **cell.dataset_params)
        check_reserve(opened[(name, path, params, root)].split(category), cell.defects_reserve)


def _execute_locked(
    plan: Plan,
    registry: Registry,
    store: RunStore,
    cells: list[Cell],
    resume: bool,
    executor: Executor | None,
    workers: int | None,
    console: Console,
    cell_timeout_s: float | None,
) -> RunOutcome:
    run_dir = store.run_dir
    if store.exists and not resume:
        raise InputError(ALREADY_A_RUN, run_dir)
    preload = sorted({m for c in cells for m in registry.detector(c.detector).preload})
    executor = executor or _make_executor(plan, registry, workers, cell_timeout_s, preload, cells)
    threads = getattr(executor, "threads", None)

    if resume:
        removed = store.repair()
        if removed:
            console.print(f"[yellow]repaired {store.records_file}: cut a torn last line ({removed} bytes)[/yellow]")
        run_id = store.run_info().get("run_id", run_dir.name)
        store.update_run_info(resumed_at=time.time())
    else:
        run_id = run_dir.name
        store.create(
            {
                "run_id": run_id,
                "created": time.time(),
                "plan": plan.to_json(),
                "cells": [c.to_json() for c in cells],
                "environment": environment.describe(
                    threads or 0, getattr(executor, "workers", workers),
                    {name: info.version for name, info in registry.plugins.items()},
                    device=cells[0].device if cells else "cpu",
                ),
            }
        )

    done = store.done_keys()
    todo = [c for c in cells if not all(k in done for k in c.record_keys)]
    skipped = len(cells) - len(todo)
    if skipped:
        console.print(f"resuming: {skipped} of {len(cells)} cells already done")

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    interrupted = False
    with progress:
        task_id = progress.add_task("cells", total=len(todo))
        futures = {}
        try:
            for cell in todo:
                futures[executor.submit(CellTask(cell, run_dir / "cells" / cell.key))] = cell
            for future in as_completed(futures):
                cell = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - the executor itself broke
                    result = {"status": "failed", "error": f"executor: {type(exc).__name__}: {exc}"}
                written = _records(cell, result, run_id)
                for record in written:
                    store.append(record)
                bad = next((r for r in written if r.status != "ok"), None)
                mark = "[green]ok[/green]" if bad is None else f"[red]failed[/red]: {bad.error}"
                progress.console.print(f"{cell.title}: {mark}", highlight=False)
                progress.advance(task_id)
        except KeyboardInterrupt:
            # Every started cell is killed now and no queued one starts; what was
            # recorded stays, so the run resumes where it stopped.
            interrupted = True
            executor.shutdown(cancel=True)
            console.print(f"[yellow]interrupted: resume with `adbench run --resume --run-dir {run_dir}`[/yellow]")
            raise
        finally:
            if not interrupted:
                executor.shutdown()

    # Every cell has ended (the executor is shut down) and the lock is still ours: only
    # now may model folders go. An interrupted run keeps them all (it raised above).
    models = prune_models(store, plan.keep_models)
    latest = store.latest_records()
    return RunOutcome(
        run_dir=run_dir,
        cells=cells,
        skipped=skipped,
        records={k: latest[k].to_json() for c in cells for k in c.record_keys if k in latest},
        models=models,
    )
