"""Where ``adbench watch`` gets its images: a folder receiving files, or anything OpenCV's
``VideoCapture`` opens (a video file, a camera index, a stream URL), each read by its own
thread into a bounded ``FrameQueue`` that the scoring loop drains.

Each item arrives decoded (RGB uint8 at its own size) and prepared at the model's input
size (``iadbench.images.prepare_image``), so the scoring thread only scores; an item that
could not be read carries its error instead and is logged, never scored.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.errors import InputError

#: Longest wait between two tries to reopen a stream that dropped (seconds).
MAX_BACKOFF = 30.0
FIRST_BACKOFF = 0.5
#: OpenCV's open and read timeouts for streams (where the backend honours them).
STREAM_TIMEOUT_MS = 5000
#: An unreadable file is read again after this many more seconds before it is logged.
RETRY_AFTER = 1.0


@dataclass
class Item:
    """One image or frame: ``file`` (folder sources) or ``frame`` (its index in a capture)."""

    arrived: float  # time.time() when read
    file: Path | None = None
    frame: int | None = None
    image: np.ndarray | None = None  # RGB uint8 at its own size
    input: np.ndarray | None = None  # prepared at the model's input size
    error: str | None = None

    @property
    def name(self) -> str:
        return str(self.file) if self.file is not None else f"frame {self.frame}"

    def where(self) -> dict[str, Any]:
        return {"file": str(self.file)} if self.file is not None else {"frame": self.frame}


class FrameQueue:
    """A bounded queue between one source thread and the scoring loop. Full: with
    ``drop`` the oldest item makes way for the newest (``put`` returns it, to be logged),
    else the source waits for room."""

    def __init__(self, size: int, drop: bool):
        self.size, self.drop = size, drop
        self._items: deque[Item] = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Item, stop: threading.Event) -> Item | None:
        with self._cond:
            dropped = None
            if len(self._items) >= self.size:
                if self.drop:
                    dropped = self._items.popleft()
                else:
                    while len(self._items) >= self.size and not stop.is_set():
                        self._cond.wait(0.1)
                    if stop.is_set():
                        return None
            self._items.append(item)
            self._cond.notify_all()
            return dropped

    def take(self, most: int, timeout: float) -> list[Item]:
        """Up to ``most`` items: waits at most ``timeout`` for the first, none for the rest."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            out = [self._items.popleft() for _ in range(min(most, len(self._items)))]
            if out:
                self._cond.notify_all()
            return out

    def drain(self) -> list[Item]:
        with self._cond:
            out = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return out


@dataclass
class Source:
    """A source's thread and what the loop asks of it. ``events`` receives
    ``(event, fields)`` for the log (a stream dropped, reopened, ended, a dropped item)."""

    size: tuple[int, int]
    queue: FrameQueue
    crop: float = 1.0  # the model's centre window (--protocol paper; iadbench.images.prepare_image)
    events: Any = None  # callable(event: str, **fields); the Watcher sets it
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)  # the source will send nothing more
    kind: str = ""
    state: str = "starting"
    _thread: threading.Thread | None = None

    def prime(self) -> None:
        """Called before ``start``, in the caller's thread."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._guarded, name=f"watch-{self.kind}", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 3.0) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def busy(self) -> bool:
        """Whether something is on its way that the queue does not show yet."""
        return False

    def _guarded(self) -> None:
        try:
            self.run()
        except Exception as exc:  # noqa: BLE001 - the loop must hear of it, not a dead thread
            self.events("source", what="failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self.done.set()

    def run(self) -> None:
        raise NotImplementedError

    def _send(self, item: Item) -> None:
        if item.image is not None and item.error is None:
            from iadbench.images import prepare_image

            try:
                item.input = prepare_image(item.image, self.size, self.crop)
            except Exception as exc:  # noqa: BLE001
                item.error, item.image = f"{item.name}: cannot prepare ({exc})", None
        dropped = self.queue.put(item, self.stop)
        if dropped is not None:
            self.events("dropped", **dropped.where())


class FolderSource(Source):
    """New image files under ``root`` (recursive; hidden files, OS litter and other
    suffixes skipped, so a writer's ``x.png.part`` or ``.x.png`` is never read). A file is
    read once its size and mtime have held for ``settle`` seconds, so one still being
    written is waited for; one that cannot be decoded is read once more RETRY_AFTER
    later (its writer may have paused) before it is logged as an error. A file is known by (path, size, mtime): one that changes later
    is a new image; one that leaves the folder is forgotten. Files present at start are
    scored first with ``existing``, else skipped."""

    def __init__(self, root: Path, *, existing: bool, settle: float, poll: float,
                 exclude: tuple[Path, ...] = (), **kw):
        super().__init__(kind="folder", **kw)
        self.root, self.existing, self.settle, self.poll = root, existing, settle, poll
        self.exclude = tuple(p.resolve() for p in exclude)
        self._pending: dict[Path, tuple[tuple[int, int], float]] = {}  # path -> (key, since)
        self._done: dict[Path, tuple[int, int]] = {}
        self._retried: set[Path] = set()

    def busy(self) -> bool:
        return bool(self._pending)

    def _scan(self) -> dict[Path, tuple[int, int]]:
        from iadbench.layouts import is_image_file, is_litter

        found: dict[Path, tuple[int, int]] = {}
        stack = [self.root]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue  # gone or unreadable since its parent was listed
            for entry in entries:
                path = Path(entry.path)
                if is_litter(path):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if not self.exclude or path.resolve() not in self.exclude:
                            stack.append(path)
                    elif entry.is_file() and is_image_file(path):
                        st = entry.stat()
                        found[path] = (st.st_size, st.st_mtime_ns)
                except OSError:
                    continue
        return found

    def prime(self) -> None:
        """The first scan, before the watch is announced: a file there now is an existing one."""
        first = self._scan()
        if self.existing:
            now = time.monotonic() - self.settle  # settled unless they change before the next scan
            self._pending = {p: (key, now) for p, key in first.items()}
        else:
            self._done = dict(first)

    def run(self) -> None:
        self.state = "watching"
        while not self.stop.is_set():
            self._step(self._scan())
            self.stop.wait(self.poll)

    def _step(self, found: dict[Path, tuple[int, int]]) -> None:
        now = time.monotonic()
        for path in [p for p in self._done if p not in found]:
            del self._done[path]
        ready = []
        for path, key in found.items():
            if self._done.get(path) == key:
                continue
            seen = self._pending.get(path)
            if seen is None or seen[0] != key:
                self._pending[path] = (key, now)  # new, or still growing: wait for it to hold
            elif now - seen[1] >= self.settle:
                ready.append(path)
        for path in [p for p in self._pending if p not in found]:
            del self._pending[path]
        for path in [p for p in self._retried if p not in found]:
            self._retried.discard(path)
        for path in sorted(ready):
            if self.stop.is_set():
                return
            key = self._pending.pop(path)[0]
            item = self._read(path)
            if item.error is not None and path not in self._retried:
                # A writer that paused longer than `settle` leaves a truncated file: read it
                # once more after RETRY_AFTER before logging it as unreadable.
                self._retried.add(path)
                self._pending[path] = (key, now + RETRY_AFTER)
                continue
            self._retried.discard(path)
            self._done[path] = key
            self._send(item)

    def _read(self, path: Path) -> Item:
        from iadbench.images import decode_image

        item = Item(arrived=time.time(), file=path)
        try:
            item.image = decode_image(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is logged and skipped
            item.error = str(exc) if isinstance(exc, InputError) else f"{path}: {type(exc).__name__}: {exc}"
        return item


def capture_target(source: str) -> tuple[str, Any]:
    """What OpenCV opens for ``source``: ("camera", index), ("stream", url) or
    ("video", path); a path that does not exist is an InputError."""
    text = source.strip()
    if text.isdigit():
        return "camera", int(text)
    if "://" in text:
        return "stream", text
    path = Path(text)
    if not path.exists():
        raise InputError("no such folder, video file, camera index or stream URL", source)
    return ("video" if path.is_file() else "camera"), str(path)  # a device such as /dev/video0


def _cv2():
    # OpenCV and its FFmpeg print their own warnings on a failed open; ours is one line.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    return cv2


def open_capture(kind: str, target: Any):
    """An opened cv2.VideoCapture, or None."""
    cv2 = _cv2()
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # where cv2 was imported before us
    try:
        if kind == "stream":
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
            cap = cv2.VideoCapture(target, cv2.CAP_ANY, params)
        else:
            cap = cv2.VideoCapture(target)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if cap.isOpened():
        return cap
    cap.release()
    return None


class CaptureSource(Source):
    """Frames of a video file (read to its end, every frame: the queue holds the reader
    back unless frames may drop), a camera or a stream. A camera or stream that stops
    giving frames is released and reopened with back-off (0.5 s doubling to 30 s), each
    drop and reopen logged."""

    def __init__(self, kind: str, target: Any, cap, **kw):
        super().__init__(kind=kind, **kw)
        self.target, self.cap = target, cap
        self.frames = 0

    def run(self) -> None:
        cap = self.cap
        self.state = "reading"
        try:
            while not self.stop.is_set():
                ok, frame = cap.read()
                if not ok:
                    if self.kind == "video":
                        total = int(cap.get(7) or 0)  # cv2.CAP_PROP_FRAME_COUNT, an estimate
                        self.events("source", what="ended", frames=self.frames, container_frames=total)
                        self.state = "ended"
                        return
                    cap.release()
                    cap = self._reopen()
                    if cap is None:
                        return
                    continue
                self._send(self._frame(frame))
        finally:
            if cap is not None:
                cap.release()

    def _frame(self, frame) -> Item:
        item = Item(arrived=time.time(), frame=self.frames)
        self.frames += 1
        if frame is None or frame.dtype != np.uint8 or frame.ndim not in (2, 3) or frame.size == 0:
            item.error = f"frame {item.frame}: corrupt frame ({getattr(frame, 'shape', None)})"
        elif frame.ndim == 2:
            item.image = frame
        else:
            item.image = np.ascontiguousarray(frame[..., 2::-1])  # BGR(A) -> RGB
        return item

    def _reopen(self):
        self.events("source", what="dropped", frames=self.frames)
        wait, tries = FIRST_BACKOFF, 0
        while not self.stop.is_set():
            tries += 1
            self.state = f"reconnecting (try {tries}, {wait:g} s)"
            if self.stop.wait(wait):
                break
            cap = open_capture(self.kind, self.target)
            if cap is not None:
                self.events("source", what="reopened", tries=tries)
                self.state = "reading"
                return cap
            wait = min(wait * 2, MAX_BACKOFF)
        return None


def open_source(source: str, **kw) -> Source:
    """The Source for SOURCE (a folder, video file, camera index or stream URL); an
    InputError (one line, exit 2) when it cannot be opened. Folder options (existing,
    settle, poll, exclude) are passed through ``kw`` and ignored for captures."""
    folder_opts = {k: kw.pop(k) for k in ("existing", "settle", "poll", "exclude") if k in kw}
    path = Path(source)
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise InputError("folder cannot be read", path)
        return FolderSource(path, **folder_opts, **kw)
    kind, target = capture_target(source)
    try:
        _cv2()
    except ImportError:
        raise InputError(f"reading a {kind} needs OpenCV: pip install 'iadbench[line]' (opencv-python-headless)") from None
    cap = open_capture(kind, target)
    if cap is None:
        raise InputError(f"cannot open {kind} (OpenCV VideoCapture failed)", source)
    return CaptureSource(kind, target, cap, **kw)
