"""Model folder versions: the lineage entry an update appends, and the atomic swap that
puts a new version in place.

The new version is written whole into a sibling temp folder (same filesystem), then
exchanged with the live folder in one ``renameat2(RENAME_EXCHANGE)`` (Linux 3.15+, on
filesystems that support it), so a reader opening the folder sees the old version or
the new one, never a mix and never nothing. Where the exchange is unavailable, two
renames: a reader may then find the folder missing for that instant. Any failure or
Ctrl-C before the swap removes the temp folder and leaves the live one untouched.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iadbench.errors import InputError

FEEDBACK_DIR = "feedback"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def lineage_entry(version: int, parent: int, images_added: int, method: str, **extra: Any) -> dict[str, Any]:
    """One lineage record (model.json ``lineage``), ``created`` in ISO 8601 UTC; extra
    fields with None or empty values are left out."""
    entry = {"version": int(version), "parent": int(parent), "images_added": int(images_added), "method": str(method),
             "created": datetime.now(UTC).isoformat(timespec="seconds")}
    entry.update({k: v for k, v in extra.items() if v not in (None, [], "")})
    return entry


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One update of a model folder at a time (an advisory lock on the folder itself)."""
    import fcntl

    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("not a usable model folder: no such folder", directory)
    for _ in range(3):
        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError("another update of this model is running", directory) from None
        if os.fstat(fd).st_ino == os.stat(directory).st_ino:
            break
        os.close(fd)  # swapped while we waited: lock the folder that is there now
    else:
        raise InputError("the model folder keeps changing under the update", directory)
    try:
        yield
    finally:
        os.close(fd)


@contextmanager
def build_folder(target: Path, write: Callable[[Path], None], carry_from: Path | None = None) -> Iterator[Path]:
    """A sibling temp folder of ``target`` with the new version written into it by
    ``write`` and ``feedback/`` copied from ``carry_from``; yields it for the caller to
    rename or swap into place, and removes whatever is left there afterwards (the old
    version, after a swap; the half-built new one, after a failure)."""
    target = Path(target)
    tmp = target.parent / f".{target.name}.update-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        try:
            tmp.mkdir(parents=True)
            write(tmp)
            if carry_from is not None and (Path(carry_from) / FEEDBACK_DIR).is_dir():
                shutil.copytree(Path(carry_from) / FEEDBACK_DIR, tmp / FEEDBACK_DIR)
            _sync(tmp)
        except OSError as exc:
            raise InputError(f"could not write the new version ({exc.strerror or exc}); the model is unchanged", target) from None
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sync(folder: Path) -> None:
    """The new version's files on disk before it replaces the old one."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (renameat2 RENAME_EXCHANGE); False where the system
    or the filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(new: Path, live: Path) -> None:
    """Put the folder ``new`` in place of ``live``; afterwards ``new``'s path holds the old
    version (for the caller to remove). Feedback entries that reached the old version
    while the new one was being built are moved across."""
    if not exchange(new, live):
        old = live.parent / f".{live.name}.old-{os.getpid()}"
        os.rename(live, old)
        os.rename(new, live)
        os.rename(old, new)
    move_new_feedback(new / FEEDBACK_DIR, live / FEEDBACK_DIR)


def move_new_feedback(old: Path, new: Path) -> None:
    """Files in ``old`` missing from ``new`` moved there; each entry's image before its
    .json, so a reader never finds an entry without its image."""
    if not old.is_dir():
        return
    late = [p for p in old.iterdir() if p.is_file() and not (new / p.name).exists()]
    if late:
        new.mkdir(exist_ok=True)
    for path in sorted(late, key=lambda p: p.suffix == ".json"):
        os.replace(path, new / path.name)
