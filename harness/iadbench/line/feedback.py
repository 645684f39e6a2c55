"""Operator feedback on a model's verdicts, kept in ``<model>/feedback/``.

Per entry an image file ``<id><ext>`` (the bytes as uploaded) and ``<id>.json``::

    {"id", "label": "false_alarm" | "missed_defect", "score", "threshold",
     "model_version", "created" (ISO UTC), "original_name"}

Ids are generated (UTC time, then random hex: they sort by arrival); the client's file
name is metadata only, sanitised, and never part of a path. Each file is written to a
hidden temporary name, fsynced and renamed into place, the JSON last: an entry is
listed once both files are whole, and a crash leaves at most a hidden temporary file.
The store is bounded (entries and bytes); beyond, ``add`` refuses with
``FeedbackError(507)`` rather than filling the model's disk.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iadbench.errors import InputError
from iadbench.jsonio import finite_or_none

FOLDER = "feedback"
LABELS = ("false_alarm", "missed_defect")
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024
DEFAULT_MAX_IMAGE_BYTES = 50 * 1024 * 1024
# PIL format -> the extension the stored file gets (the upload's own name is not trusted)
_EXT = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "GIF": ".gif"}
_ID = re.compile(r"^\d{8}T\d{6}\d{6}Z-[0-9a-f]{8}$")


class FeedbackError(Exception):
    """A feedback entry refused; ``status`` is what a web service answers."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def normalise_label(label: str) -> str:
    """``false-alarm`` / ``False alarm`` -> ``false_alarm``; anything else is refused."""
    value = re.sub(r"[\s-]+", "_", str(label).strip().lower())
    if value not in LABELS:
        raise FeedbackError(422, f"label must be one of {', '.join(LABELS)}, got {str(label)[:40]!r}")
    return value


def sanitise_name(name: str | None, limit: int = 120) -> str:
    """The client's file name as metadata: its last path component, printable
    characters of a small set only, at most ``limit`` long."""
    base = re.split(r"[\\/]", str(name or ""))[-1]
    clean = re.sub(r"[^A-Za-z0-9._ ()+-]", "_", base).strip(" .")
    return clean[:limit] or "upload"


def image_extension(data: bytes) -> str:
    """The stored file's extension from the bytes' own format (header only, no decode)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        fmt = None
    if fmt not in _EXT:
        raise FeedbackError(415, "not an image in a stored format (png, jpeg, bmp, tiff, webp, gif)")
    return _EXT[fmt]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class FeedbackStore:
    """The feedback entries of one model folder (or of ``folder`` when given: a model
    mounted read-only can keep its feedback elsewhere)."""

    def __init__(self, model_dir: str | Path, folder: str | Path | None = None, *,
                 max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES):
        self.model_dir = Path(model_dir)
        self.folder = Path(folder) if folder is not None else self.model_dir / FOLDER
        self.max_entries, self.max_bytes, self.max_image_bytes = int(max_entries), int(max_bytes), int(max_image_bytes)
        self._lock = threading.Lock()  # one process's concurrent adds respect the bounds

    def _usage(self) -> tuple[int, int]:
        count = size = 0
        if not self.folder.is_dir():
            return 0, 0
        with os.scandir(self.folder) as it:
            for entry in it:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                size += entry.stat(follow_symlinks=False).st_size
                count += entry.name.endswith(".json")
        return count, size

    def add(self, data: bytes, name: str | None, label: str, score: float | None, threshold: float | None,
            model_version: int) -> dict[str, Any]:
        """Store one entry; returns its record. Raises FeedbackError (415 not an image,
        413 one image over the cap, 422 a bad label, 507 the store full or unwritable)."""
        label = normalise_label(label)
        if not data:
            raise FeedbackError(422, "empty image")
        if len(data) > self.max_image_bytes:
            raise FeedbackError(413, f"image of {len(data)} bytes over the feedback limit of {self.max_image_bytes}")
        ext = image_extension(data)
        now = datetime.now(UTC)
        entry_id = f"{now:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}"
        record = {
            "id": entry_id, "label": label, "score": finite_or_none(score), "threshold": finite_or_none(threshold),
            "model_version": int(model_version), "created": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "original_name": sanitise_name(name), "image": entry_id + ext,
        }
        body = json.dumps(record, indent=1, sort_keys=True).encode()
        with self._lock:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                count, size = self._usage()
                if count >= self.max_entries:
                    raise FeedbackError(507, f"feedback store full ({count} entries, the limit); export and clear it")
                if size + len(data) + len(body) > self.max_bytes:
                    raise FeedbackError(507, f"feedback store full ({size} of {self.max_bytes} bytes); export and clear it")
                _write_atomic(self.folder / record["image"], data)
                _write_atomic(self.folder / f"{entry_id}.json", body)
            except OSError as exc:
                raise FeedbackError(507, f"cannot write feedback in {self.folder} ({exc.strerror or exc})") from None
        return record

    def entries(self, label: str | None = None) -> list[dict[str, Any]]:
        """Complete entries (JSON and image both present), oldest first."""
        label = normalise_label(label) if label is not None else None
        if not self.folder.is_dir():
            return []
        found = []
        for path in sorted(self.folder.glob("*.json")):
            if not _ID.match(path.stem):
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict) or record.get("id") != path.stem:
                continue
            image = record.get("image")
            if not isinstance(image, str) or Path(image).name != image or not image.startswith(path.stem):
                continue
            if not (self.folder / image).is_file() or (label and record.get("label") != label):
                continue
            found.append(record)
        return found

    def export(self, out_dir: str | Path, label: str | None = None) -> list[Path]:
        """Copy the entries' images (those of ``label`` when given) into ``out_dir`` as
        ``<id><ext>``: e.g. false alarms into a good/ folder for ``adbench update --good``."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the export folder ({exc.strerror or exc})", out) from None
        written = []
        for record in self.entries(label):
            target = out / record["image"]
            shutil.copyfile(self.folder / record["image"], target)
            written.append(target)
        return written
