"""Hot reload of a served model folder.

A new version is loaded and warmed (one image scored, so an onnx session, a cached
graph or PatchCore's search index are built) in a worker thread, off the request
path; then one reference, ``ModelSlot.current``, is swapped. A request reads that
reference once when it starts and scores, thresholds and answers with the ``Served``
it got, so it is never mixed, and an old version stays alive until its last request
ends. A load that fails (a corrupt or half-written folder) keeps the old version and is
remembered, logged and shown on /health; the same failed folder state is not retried
by the poll (a ``POST /reload`` retries it).

The folder is read twice, the version before and after the load: an update swapping
the folder mid-load (``adbench update`` exchanges whole folders) shows up as two
versions, and the load is repeated.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.errors import InputError
from iadbench.line.drift import DriftMonitor

log = logging.getLogger("iadbench.serve")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def folder_version(directory: str | Path) -> int:
    """The model folder's version (model.json ``version``; absent means 1)."""
    from iadbench.model import folder

    reader = getattr(folder, "model_version", None)  # the shared helper, where it exists
    if reader is not None:
        return int(reader(Path(directory)))
    value = folder.read_model_json(Path(directory)).get("version", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"model.json version must be a positive integer, got {value!r}", directory)
    return value


@dataclass
class Served:
    """One loaded version: what a request scores with, start to end."""

    model: Any  # iadbench.model.Model
    version: int
    drift: DriftMonitor
    lineage: list = field(default_factory=list)
    loaded_at: str = field(default_factory=_now)


def warm(model) -> None:
    h, w = (int(v) for v in model.input_size)
    model.predict([np.full((h, w, 3), 128, np.uint8)])


def load_version(directory: str | Path, opener: Callable[[Path], Any], drift: dict | None = None,
                 attempts: int = 3) -> Served:
    """Open and warm the model folder at ``directory`` with ``opener`` (a path -> Model
    function), naming the version it holds; InputError when it cannot be used."""
    from iadbench.model import read_model_json

    directory = Path(directory)
    for _ in range(attempts):
        before = folder_version(directory)
        model = opener(directory)
        body = read_model_json(directory)
        if folder_version(directory) == before:
            warm(model)
            lineage = body.get("lineage") if isinstance(body.get("lineage"), list) else []
            return Served(model, before, DriftMonitor(model.calibration_scores, **(drift or {})), lineage)
    raise InputError(f"the folder changed during each of {attempts} loads", directory)


def _signature(directory: Path) -> tuple | None:
    try:
        st = os.stat(directory / "model.json")
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class ModelSlot:
    """The version being served, and how to replace it (``reload``, ``watch``)."""

    def __init__(self, served: Served, directory: str | Path | None = None, opener: Callable | None = None,
                 drift: dict | None = None, on_swap: Callable[[Served], None] | None = None,
                 on_outcome: Callable[[str], None] | None = None):
        self.current = served
        self.directory = Path(directory) if directory is not None else None
        self.opener, self.drift, self.on_swap, self.on_outcome = opener, drift or {}, on_swap, on_outcome
        self.lock = asyncio.Lock()
        self.last_error: dict | None = None
        self.reloads = 0
        self._seen = _signature(self.directory) if self.directory else None
        self._failed: tuple | None = None

    @property
    def can_reload(self) -> bool:
        return self.directory is not None and self.opener is not None

    def status(self) -> dict:
        return {"version": self.current.version, "loaded_at": self.current.loaded_at, "reloads": self.reloads,
                "watching": str(self.directory) if self.directory else None, "error": self.last_error}

    async def reload(self, force: bool = False, poll: bool = False) -> dict:
        """Load the folder's version when it differs from the served one (or ``force``).
        Returns {"status": "reloaded" | "unchanged" | "failed", ...}; never raises for a
        bad folder. A poll does not retry a folder state that failed already."""
        assert self.can_reload
        async with self.lock:
            old = self.current
            sig = await asyncio.to_thread(_signature, self.directory)
            failed_before = self.last_error is not None and sig == self._failed
            if failed_before and poll:
                return {"status": "failed", "version": old.version, "error": self.last_error}
            if not force and not failed_before and sig == self._seen:
                return {"status": "unchanged", "version": old.version}
            try:
                if sig is None:
                    raise InputError("not a usable model folder: missing model.json", self.directory)
                if not force and await asyncio.to_thread(folder_version, self.directory) == old.version:
                    self._seen = sig
                    return {"status": "unchanged", "version": old.version}
                new = await asyncio.to_thread(load_version, self.directory, self.opener, self.drift)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old version serving
                detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self._failed = self._seen = sig
                self.last_error = {"at": _now(), "error": detail, "serving": old.version}
                log.warning("reload of %s failed, still serving version %d: %s", self.directory, old.version, detail)
                if self.on_outcome is not None:
                    self.on_outcome("failed")
                return {"status": "failed", "version": old.version, "error": self.last_error}
            self.current = new  # the swap: one reference
            self._seen, self._failed, self.last_error = sig, None, None
            self.reloads += 1
            if self.on_swap is not None:
                self.on_swap(new)
            if self.on_outcome is not None:
                self.on_outcome("reloaded")
            log.info("reloaded %s: version %d -> %d", self.directory, old.version, new.version)
            return {"status": "reloaded", "version": new.version, "previous": old.version}

    async def watch(self, interval: float) -> None:
        """Poll the folder every ``interval`` seconds (a stat of model.json; the version
        is read only when that changed)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload(poll=True)
            except Exception:  # noqa: BLE001 - the poll must outlive anything
                log.exception("reload poll of %s", self.directory)
