"""``adbench watch``: score what a folder, video, camera or stream delivers, as it comes.

A source thread (iadbench.line.sources) reads and prepares images into a bounded queue;
the scoring loop (``Watcher.run``, the calling thread) takes what is waiting, up to
``batch`` at a time, scores it through the model's runtime, and writes one JSON line per
image or frame to the log (``WatchLog``): verdict, score, model version and timing.
Defective ones get an overlay in ``out``; a folder's files can be sorted into
``good/`` and ``defective/``. Every line is flushed as written, and a stop (Ctrl-C, the
frame limit, idleness, the end of a video) writes a closing ``stop`` line.

Log lines (``event``): ``start``; ``scored`` {file | frame, score, verdict, threshold,
model_version, batch, ms (the batch's scoring time per image), latency_ms (read to
verdict), overlay?, sorted?}; ``error`` {file | frame, error}; ``dropped`` {file | frame}
(``--drop-frames`` made way for a newer one); ``unscored`` {file | frame, reason} (queued
when the run stopped); ``source`` {what: dropped | reopened | ended | failed, ...};
``stop`` {reason, counts, seconds, fps}.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.line.sources import FolderSource, Item, Source
from iadbench.model.folder import model_version

#: Window of the live view's frames/s (seconds).
FPS_WINDOW = 5.0
LAST_SCORES = 8


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WatchLog:
    """JSON lines appended to ``path``, each flushed as written (from any thread), so a
    stop at any moment leaves whole lines."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "time": utc_now(), **fields}, default=str)
        with self._held():
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._held():
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()

    @contextmanager
    def _held(self, timeout: float = 2.0):
        # A Ctrl-C that lands between a `with lock:`'s acquire and its body leaves the
        # lock held for good (CPython gives no guarantee there); the closing lines must
        # still be written, so after a bounded wait they go ahead without it.
        got = self._lock.acquire(timeout=timeout)
        try:
            yield
        finally:
            if got:
                self._lock.release()


@dataclass
class Stats:
    scored: int = 0
    good: int = 0
    defective: int = 0
    errors: int = 0
    dropped: int = 0
    started: float = field(default_factory=time.monotonic)
    recent: deque = field(default_factory=deque)  # (monotonic, items handled)
    last: deque = field(default_factory=lambda: deque(maxlen=LAST_SCORES))  # (name, score, verdict)
    last_error: str | None = None

    @property
    def handled(self) -> int:
        return self.scored + self.errors

    def count(self, n: int) -> None:
        now = time.monotonic()
        self.recent.append((now, n))
        while self.recent and now - self.recent[0][0] > FPS_WINDOW:
            self.recent.popleft()

    def fps(self) -> float:
        """Items per second over the last FPS_WINDOW seconds (since the start before that)."""
        now = time.monotonic()
        span = min(FPS_WINDOW, now - self.started)
        recent = list(self.recent)  # a copy: the view's thread reads while the loop appends
        return sum(n for t, n in recent if now - t <= FPS_WINDOW) / span if span > 0 else 0.0


class Terminated(KeyboardInterrupt):
    """SIGTERM (a container stopping): stopped like Ctrl-C."""


class Watcher:
    """The scoring loop over one source; ``run`` returns the stop reason or raises
    KeyboardInterrupt after a clean stop on Ctrl-C."""

    def __init__(self, model, model_dir: Path, source: Source, log: WatchLog, *, out: Path | None = None,
                 sort: Path | None = None, copy: bool = False, batch: int = 8, max_frames: int | None = None,
                 until_idle: float | None = None, on_error=None):
        self.model, self.source, self.log = model, source, log
        self.model_dir, self.version = Path(model_dir), model_version(model_dir)
        self.out, self.sort, self.copy = out, sort, copy
        self.batch, self.max_frames, self.until_idle = batch, max_frames, until_idle
        self.on_error = on_error
        self.stats = Stats()
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        source.events = self._event

    def _event(self, event: str, **fields: Any) -> None:
        if event == "dropped":
            self.stats.dropped += 1
        elif event == "source" and fields.get("what") == "failed":
            self.source.state = "failed"
            self._error(f"source failed: {fields.get('error')}")
        self.log.write(event, **fields)

    def _error(self, message: str) -> None:
        self.stats.last_error = message
        if self.on_error is not None:
            self.on_error(message)

    def run(self, source_name: str) -> str:
        m = self.model
        self.stats = Stats()
        reason, inflight, interrupt = "", [], None
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if _main_thread() else {}
        if handlers:
            signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            self.source.prime()
            self.log.write("start", source=source_name, kind=self.source.kind, model=str(self.model_dir),
                           model_version=self.version, detector=m.detector.name, runtime=m.runtime_name,
                           threshold=m.threshold, input_size=list(m.input_size), batch=self.batch,
                           queue=self.source.queue.size, drop_frames=self.source.queue.drop)
            self.source.start()
            idle_since = time.monotonic()
            while True:
                left = self.batch if self.max_frames is None else min(self.batch, self.max_frames - self.stats.handled)
                if left <= 0:
                    reason = "max-frames"
                    break
                inflight = self.source.queue.take(left, timeout=0.1)
                if not inflight:
                    if self.source.done.is_set() and not len(self.source.queue):
                        reason = "source failed" if self.source.state == "failed" else "source ended"
                        break
                    if self.source.busy():
                        idle_since = time.monotonic()
                    elif self.until_idle is not None and time.monotonic() - idle_since >= self.until_idle:
                        reason = "idle"
                        break
                    continue
                self._handle(inflight)
                inflight = []
                idle_since = time.monotonic()
        except KeyboardInterrupt as exc:
            interrupt = exc
            reason = "terminated" if isinstance(exc, Terminated) else "interrupted"
        finally:
            if handlers:  # a second Ctrl-C must not cut the closing lines
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                self.source.close()
                left_over = list(inflight) + self.source.queue.drain()
                for item in left_over:
                    self.log.write("unscored", **item.where(), reason=reason or "error")
                s = self.stats
                seconds = time.monotonic() - s.started
                self.log.write("stop", reason=reason or "error", scored=s.scored, good=s.good,
                               defective=s.defective, errors=s.errors, dropped=s.dropped,
                               unscored=len(left_over), seconds=round(seconds, 3),
                               fps=round(s.handled / seconds, 3) if seconds > 0 else 0.0)
                self.log.close()
            finally:
                for sig, handler in handlers.items():
                    signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if interrupt is not None:
            raise interrupt
        return reason

    def _handle(self, items: list[Item]) -> None:
        good = []
        for item in items:
            if item.error is not None:
                self.stats.errors += 1
                self.log.write("error", **item.where(), error=item.error)
                self._error(item.error)
            else:
                good.append(item)
        if good:
            self._score(good)
        self.stats.count(len(items))

    def _score(self, items: list[Item]) -> None:
        m = self.model
        start = time.perf_counter()
        try:
            pred = m.score(np.stack([item.input for item in items]))
        except Exception as exc:  # noqa: BLE001 - a failed batch is logged; the line goes on
            for item in items:
                self.stats.errors += 1
                message = f"{item.name}: scoring failed ({type(exc).__name__}: {exc})"
                self.log.write("error", **item.where(), error=message)
            self._error(message)
            return
        ms = (time.perf_counter() - start) * 1000.0 / len(items)
        threshold = float(m.threshold)
        done = time.time()
        for i, item in enumerate(items):
            score = float(pred.scores[i])
            anomalous = bool(math.isfinite(threshold) and score > threshold)
            verdict = "defective" if anomalous else "good"
            record: dict[str, Any] = {
                **item.where(), "score": score, "verdict": verdict, "threshold": threshold,
                "model_version": self.version, "batch": len(items), "ms": round(ms, 3),
                "latency_ms": round((done - item.arrived) * 1000.0, 3),
            }
            if anomalous and self.out is not None:
                self._keep(record, "overlay", self._overlay, item, pred.maps[i])
            if self.sort is not None and item.file is not None:
                self._keep(record, "sorted", self._sort, item.file, verdict)
            self.stats.scored += 1
            self.stats.defective += anomalous
            self.stats.good += not anomalous
            self.stats.last.append((item.name, score, verdict))
            self.log.write("scored", **record)

    def _keep(self, record: dict, key: str, write, *args) -> None:
        try:
            record[key] = str(write(*args))
        except OSError as exc:  # a full disk or a file gone: the verdict still counts
            record[f"{key}_error"] = f"{type(exc).__name__}: {exc}"
            self._error(f"{record.get('file', record.get('frame'))}: {key}: {exc}")

    def _stem(self, item: Item) -> Path:
        if item.file is not None:
            root = self.source.root if isinstance(self.source, FolderSource) else item.file.parent
            rel = item.file.relative_to(root)
            return self.out / rel.parent / rel.stem
        prefix = "" if self.source.kind == "video" else f"{self.stamp}_"
        return self.out / f"{prefix}frame_{item.frame:06d}"

    def _overlay(self, item: Item, amap: np.ndarray) -> Path:
        from iadbench.visual import overlay, png_bytes
        from iadbench.visual.overlay import place_map

        stem = self._stem(item)
        stem.parent.mkdir(parents=True, exist_ok=True)
        full = place_map(amap, item.image.shape[:2], self.model.crop)
        pic = overlay(item.image, full, self.model.display_range, self.model.pixel_threshold)
        path = stem.with_name(stem.name + "_overlay.png")
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_bytes(png_bytes(pic, compress_level=1))
        os.replace(tmp, path)
        return path

    def _sort(self, path: Path, verdict: str) -> Path:
        rel = path.relative_to(self.source.root)
        dest = self.sort / verdict / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        while dest.exists():  # never overwrite an earlier part of the same name
            n += 1
            dest = dest.with_name(f"{path.stem}-{n}{path.suffix}")
        if self.copy:
            shutil.copy2(path, dest)
        else:
            shutil.move(path, dest)
        return dest


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


class LiveView:
    """The terminal view (rich renders it a few times a second): frames/s, counts,
    queue, source state and the last scores."""

    def __init__(self, watcher: Watcher, title: str):
        self.watcher, self.title = watcher, title

    def __rich__(self):
        from rich.markup import escape
        from rich.table import Table

        w = self.watcher
        s = w.stats
        head = Table.grid(padding=(0, 2))
        head.add_row(f"[bold]{escape(self.title)}[/bold]")
        head.add_row(
            f"{s.fps():.1f} frames/s   [green]{s.good} good[/green]   [red]{s.defective} defective[/red]   "
            f"{s.errors} errors   {s.dropped} dropped   queue {len(w.source.queue)}/{w.source.queue.size}   "
            f"source {escape(w.source.state)}   {time.monotonic() - s.started:.0f} s"
        )
        last = Table(box=None, show_header=True, pad_edge=False)
        last.add_column("last")
        last.add_column("score", justify="right")
        last.add_column("verdict")
        for name, score, verdict in reversed(list(s.last)):
            last.add_row(escape(name[-60:]), f"{score:.6g}", "[red]defective[/red]" if verdict == "defective" else "good")
        head.add_row(last)
        if s.last_error:
            head.add_row(f"[red]last error:[/red] {escape(s.last_error[-120:])}")
        return head
