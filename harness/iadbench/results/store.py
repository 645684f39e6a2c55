"""A run's results on disk.

``run.json`` holds the resolved plan and the environment; ``records.jsonl`` one JSON
line per finished cell (``iadbench.results.record.CellRecord``), appended, flushed and fsynced as the cell ends, by the runner
process only. A line torn by a kill is cut off on the next open, so a resumed run
never reads or extends a corrupt file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from iadbench.errors import InputError
from iadbench.results.record import CellRecord, NewerSchemaError

RUN_FILE = "run.json"
RECORDS_FILE = "records.jsonl"
LOCK_FILE = "run.lock"


def clean_json(value: Any) -> Any:
    """NaN/inf become null (JSON has no NaN); the reason lives beside it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(clean_json(data), indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


class RunStore:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_file = self.run_dir / RUN_FILE
        self.records_file = self.run_dir / RECORDS_FILE
        self._lock = threading.Lock()

    @property
    def exists(self) -> bool:
        return self.run_file.is_file()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an OS lock on the run folder for as long as the block runs.

        Two runners appending to one records file would write duplicate records, so a
        second one gets a one-line error naming the holder. flock is released by the
        kernel when its holder dies (kill -9 included), so a stale lock file is simply
        taken over; the pid inside it is only there for the message.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by cell processes
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise InputError(f"run folder is in use by another adbench run (pid {holder})", self.run_dir) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def create(self, run_info: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.run_file, run_info)
        self.records_file.touch()

    def run_info(self) -> dict[str, Any]:
        try:
            return json.loads(self.run_file.read_text())
        except FileNotFoundError:
            raise InputError(f"not a run folder (no {RUN_FILE})", self.run_dir) from None
        except json.JSONDecodeError as exc:
            raise InputError(f"corrupt {RUN_FILE}: {exc}", self.run_file) from exc

    def update_run_info(self, **fields: Any) -> None:
        info = self.run_info()
        info.update(fields)
        write_json_atomic(self.run_file, info)

    def repair(self) -> int:
        """Cut a torn last line (a kill mid-write); returns the bytes removed. Only the
        last line can be torn: every append is one write of a whole line, fsynced."""
        if not self.records_file.is_file():
            return 0
        with self.records_file.open("rb+") as f:
            data = f.read()
            if not data or data.endswith(b"\n"):
                return 0
            keep = data.rfind(b"\n") + 1
            f.truncate(keep)
            return len(data) - keep

    def append(self, record: CellRecord | dict[str, Any]) -> None:
        """Append one record; a dict is validated (and migrated) first, so nothing that
        does not fit the schema reaches the file."""
        if not isinstance(record, CellRecord):
            record = CellRecord.from_json(record, self._run_settings())
        line = json.dumps(clean_json(record.to_json()), sort_keys=True, default=str)
        with self._lock, self.records_file.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _run_settings(self) -> dict[str, Any]:
        """The plan's settings, which version 0 records did not copy into themselves."""
        try:
            return (json.loads(self.run_file.read_text()).get("plan") or {}).get("settings") or {}
        except (OSError, ValueError, AttributeError):
            return {}

    def records(self) -> Iterator[CellRecord]:
        """Every complete record, oldest first, migrated to the current schema. A line
        that is not JSON or not a record is skipped with a warning naming it; a record
        of a newer schema than this iadbench reads is an InputError."""
        if not self.records_file.is_file():
            return
        settings = self._run_settings()
        with self.records_file.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith("\n"):
                    break  # torn by a kill; repair() removes it
                try:
                    data = json.loads(line)
                except json.JSONDecodeError:
                    continue
                try:
                    yield CellRecord.from_json(data, settings)
                except NewerSchemaError as exc:
                    raise InputError(str(exc), self.records_file) from None
                except InputError as exc:
                    warnings.warn(f"{self.records_file}:{number}: skipped: {exc}", stacklevel=2)

    def latest_records(self) -> dict[str, CellRecord]:
        """Per cell key, its ok record if it has one, else its latest failure."""
        out: dict[str, CellRecord] = {}
        for rec in self.records():
            if rec.ok or not (rec.key in out and out[rec.key].ok):
                out[rec.key] = rec
        return out

    def done_keys(self) -> set[str]:
        return {k for k, r in self.latest_records().items() if r.ok}
