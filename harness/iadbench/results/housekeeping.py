"""Disk housekeeping for run folders: which cells keep their fitted model folder once a
run ends (``adbench run --keep-models``), and listing and removing whole runs
(``adbench runs``, ``adbench clean``).

A cell's model folder is most of a run's bytes (a PaDiM model ~20-90 MB, anomalib's DRAEM
~400 MB) while the report, the leaderboard and the per-defect tables read only the small
files beside it (scores.csv, calibration.csv, the gallery). A model that is not kept
leaves ``NOT_KEPT.json`` in its folder, which ``iadbench.model.folder.load_model`` turns
into a one-line error naming the model that was kept instead.

Nothing here touches a run whose lock (``run.lock``, ``RunStore.locked``) another process
holds: the runner prunes under its own lock after every cell has ended, and ``clean``
takes the lock before it removes a run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iadbench.errors import InputError
from iadbench.results.store import LOCK_FILE, RUN_FILE, RunStore

KEEP_MODELS = ("all", "best", "none")
#: ``best``: a run still leaves a model ready for ``adbench predict``/``serve`` per
#: category (the one a newcomer would deploy) at a fraction of the disk of ``all``.
DEFAULT_KEEP_MODELS = "best"
#: What "best" ranks cells by (higher is better); cells without it are never the best.
BEST_BY = "image_auroc"
NOT_KEPT_FILE = "NOT_KEPT.json"
MODEL_DIR = "model"


def check_keep_models(value: str) -> str:
    value = value.strip().lower()
    if value not in KEEP_MODELS:
        raise InputError(f"--keep-models {value!r} is not one of {', '.join(KEEP_MODELS)}")
    return value


def disk_bytes(path: Path) -> int:
    """Bytes the files under ``path`` occupy on disk (what ``du`` counts); links not followed."""
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def not_kept_note(model_dir: Path) -> dict[str, Any] | None:
    """The note a pruned model folder holds, or None where the model is there."""
    path = Path(model_dir) / NOT_KEPT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def not_kept_message(note: dict[str, Any]) -> str:
    """One line for a user who asked for a model the run did not keep."""
    kept = note.get("kept_instead")
    instead = f"; the model kept for this category is {kept}" if kept else ""
    return (f"the run removed this model when it ended (--keep-models {note.get('keep_models', '?')}){instead}; "
            "rerun with --keep-models all, or fit it again with `adbench fit`")


@dataclass
class Pruned:
    """What ``prune_models`` did: cell keys whose model stays, those it removed, bytes freed."""

    keep: str
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"keep_models": self.keep, "kept": self.kept, "removed": self.removed, "freed_mb": round(self.freed_bytes / 2**20, 1)}


def best_cells(records) -> dict[tuple[str, str], str]:
    """Per (dataset, category), the key of the ok cell with the highest ``BEST_BY``
    (ties: the smaller model, then the label, so the choice is stable)."""
    best: dict[tuple[str, str], tuple] = {}
    for rec in records:
        value = rec.metrics.get(BEST_BY) if rec.ok else None
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        size = rec.cost.artifact_mb if rec.cost.artifact_mb is not None else math.inf
        rank = (-value, size, rec.detector, rec.key)
        group = (rec.dataset, rec.category)
        if group not in best or rank < best[group][0]:
            best[group] = (rank, rec.key)
    return {group: key for group, (_, key) in best.items()}


def prune_models(store: RunStore, keep: str) -> Pruned:
    """Remove the model folders of a finished run's cells that ``keep`` does not keep.

    Call it holding the run's lock, after every cell has ended: it reads the records and
    touches only cells that have one. ``all`` removes nothing; ``best`` keeps each
    dataset/category's best cell by ``BEST_BY``; ``none`` keeps no model."""
    keep = check_keep_models(keep)
    result = Pruned(keep)
    latest = store.latest_records()
    chosen = set(best_cells(latest.values()).values()) if keep == "best" else set()
    by_group = {(r.dataset, r.category): k for k, r in latest.items() if k in chosen}
    for key, rec in sorted(latest.items()):
        model_dir = store.run_dir / "cells" / key / MODEL_DIR
        if not model_dir.is_dir() or not_kept_note(model_dir) is not None:
            continue
        if keep == "all" or key in chosen:
            result.kept.append(key)
            continue
        kept_key = by_group.get((rec.dataset, rec.category))
        kept_instead = None
        if kept_key is not None:
            kept_rec = latest[kept_key]
            kept_instead = f"{store.run_dir / 'cells' / kept_key / MODEL_DIR} ({kept_rec.detector}, {BEST_BY} {kept_rec.metrics[BEST_BY]:.3f})"
        result.freed_bytes += _empty_model_dir(model_dir, {
            "keep_models": keep, "detector": rec.detector, "removed": time.time(), "kept_instead": kept_instead,
        })
        result.removed.append(key)
    # run.json says which models the run holds; "removed" spans every pass (a resume
    # prunes again), so a report can tell a removed model from one never written.
    before = (store.run_info().get("models") or {}).get("removed") or []
    store.update_run_info(models={**result.to_json(), "removed": sorted(set(before) | set(result.removed))})
    return result


def _empty_model_dir(model_dir: Path, note: dict[str, Any]) -> int:
    """Replace a model folder's contents by the note; returns the bytes freed. The note is
    written first, so an interruption leaves a folder that says what happened."""
    before = disk_bytes(model_dir)
    (model_dir / NOT_KEPT_FILE).write_text(json.dumps(note, indent=1, default=str))
    for child in model_dir.iterdir():
        if child.name == NOT_KEPT_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    return max(0, before - disk_bytes(model_dir))


# --- whole runs -------------------------------------------------------------------------


@contextlib.contextmanager
def try_lock(run_dir: Path) -> Iterator[bool]:
    """Hold the run's lock for the block if no other process holds it; yields whether it
    did. The runner holds it for as long as a run (or a resume) is going."""
    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        yield True
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def lock_holder(run_dir: Path) -> str | None:
    """The pid written in a held lock (for messages), or None where the lock is free."""
    with try_lock(run_dir) as free:
        if free:
            return None
    try:
        return (Path(run_dir) / LOCK_FILE).read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@dataclass
class RunInfo:
    path: Path
    created: float  # run.json's "created", else the folder's mtime
    cells: int  # cells the plan holds
    ok: int
    failed: int
    size_bytes: int
    holder: str | None  # pid of the process holding the run's lock, None when free
    models_kept: int | None = None  # None: every model kept (no --keep-models record)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.created)


def is_run(path: Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def describe_run(path: Path) -> RunInfo:
    store = RunStore(path)
    info: dict[str, Any] = {}
    with contextlib.suppress(InputError):
        info = store.run_info()
    ok = failed = 0
    with contextlib.suppress(InputError):
        for rec in store.latest_records().values():
            ok, failed = (ok + 1, failed) if rec.ok else (ok, failed + 1)
    created = info.get("created")
    if not isinstance(created, (int, float)):
        created = path.stat().st_mtime
    models = info.get("models") or {}
    return RunInfo(
        path=path, created=float(created), cells=len(info.get("cells") or []), ok=ok, failed=failed,
        size_bytes=disk_bytes(path), holder=lock_holder(path),
        models_kept=len(models["kept"]) if isinstance(models.get("kept"), list) else None,
    )


def list_runs(root: Path) -> list[RunInfo]:
    """The run folders directly under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("no such folder", root)
    runs = [describe_run(p) for p in root.iterdir() if p.is_dir() and is_run(p)]
    return sorted(runs, key=lambda r: (-r.created, r.name))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` (or a sum such as ``1d12h``) -> seconds."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(a + b for a, b in parts) != compact:
        raise InputError(f"--older-than {text!r} is not a duration such as 7d, 12h, 30m or 1d12h")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def select_runs(runs: list[RunInfo], older_than_s: float | None = None, keep: int | None = None) -> list[RunInfo]:
    """The runs a clean removes: older than ``older_than_s`` and not among the ``keep``
    newest (each criterion given must select a run)."""
    if keep is not None and keep < 0:
        raise InputError(f"--keep {keep} must be >= 0")
    newest = sorted(runs, key=lambda r: -r.created)
    spared = {r.path for r in newest[:keep]} if keep is not None else set()
    return [r for r in newest
            if r.path not in spared and (older_than_s is None or r.age_s > older_than_s)]


def remove_run(path: Path) -> bool:
    """Remove a run folder, holding its lock while doing so; False (nothing removed) when
    another process holds it."""
    if not is_run(path):
        raise InputError("not a run folder (no run.json)", path)
    with try_lock(path) as free:
        if not free:
            return False
        shutil.rmtree(path)
    return True
