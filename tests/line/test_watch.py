"""``adbench watch``: a folder receiving files during the run, a video file, Ctrl-C, an
unopenable source, back-pressure and a stream that drops (iadbench.line)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iadbench.cli import main

SIZE = 32
# FFmpeg reads its log level once, at a process's first use of it; `adbench watch` sets it
# before its first (iadbench.line.sources), and this module's own videos come earlier.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def _noise(rng, shape=(40, 48, 3)) -> np.ndarray:
    return np.clip(rng.normal(100, 20, shape), 0, 255).astype(np.uint8)


def _bright(shape=(40, 48, 3)) -> np.ndarray:
    return np.full(shape, 250, np.uint8)  # far outside the training images: defective


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """pixel_gaussian fitted on 6 noise images at 32 px, threshold the max calibration score."""
    from iadbench.model.fit import fit_model, save_model
    from iadbench.plugins import get_registry
    from iadbench.types import Sample, Split

    root = tmp_path_factory.mktemp("watch-model")
    rng = np.random.default_rng(0)
    train = []
    for i in range(6):
        Image.fromarray(_noise(rng, (SIZE, SIZE, 3))).save(root / f"g{i}.png")
        train.append(Sample(root / f"g{i}.png"))
    fitted = fit_model(get_registry().detector("pixel_gaussian"), {"input_size": SIZE, "blur_sigma": 2.0, "min_std": 0.02},
                       Split("d", "c", train, []), seed=0, holdout_fraction=0.1, threshold_rule="max", threads=1,
                       workdir=root / "work", predict_batch=4)
    return save_model(fitted, root / "model", {"detector": "pixel_gaussian", "source": "test"})


def _adbench(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _png(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_folder_receiving_files_scores_each_good_file_once(model_dir, tmp_path):
    from iadbench.model import open_model

    inbox, out, sort = tmp_path / "in", tmp_path / "out", tmp_path / "sorted"
    (inbox / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(_noise(rng)).save(inbox / "before.png")  # there at start: skipped without --existing
    pictures = {"a.png": _noise(rng), "sub/b.png": _bright(), "c.png": _noise(rng), "slow.png": _bright()}
    blobs = {name: _png(array) for name, array in pictures.items()}

    def writer():
        start = time.monotonic()  # files before the start line are existing ones
        while not ((out / "watch.jsonl").exists() and (out / "watch.jsonl").read_text()) and time.monotonic() - start < 30:
            time.sleep(0.02)
        for name in ("a.png", "sub/b.png"):
            (inbox / name).write_bytes(blobs[name])
        (inbox / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 50)
        (inbox / "notes.png.part").write_bytes(b"a writer's temporary name")
        with (inbox / "slow.png").open("wb") as f:  # written in chunks over ~1 s, each gap under --settle
            data = blobs["slow.png"]
            for i in range(0, len(data), max(1, len(data) // 8)):
                f.write(data[i:i + max(1, len(data) // 8)])
                f.flush()
                time.sleep(0.12)
        (inbox / "c.png").write_bytes(blobs["c.png"])

    thread = threading.Thread(target=writer)
    thread.start()
    rc = _adbench("watch", model_dir, inbox, "--out", out, "--sort", sort, "--settle", "0.3", "--poll", "0.05",
                  "--until-idle", "1.0", "--quiet")
    thread.join()
    assert rc == 0
    log = _log(out / "watch.jsonl")
    assert log[0]["event"] == "start" and log[-1]["event"] == "stop" and log[-1]["reason"] == "idle"
    scored = [r for r in log if r["event"] == "scored"]
    assert sorted(Path(r["file"]).relative_to(inbox).as_posix() for r in scored) == sorted(pictures)
    errors = [r for r in log if r["event"] == "error"]
    assert [Path(r["file"]).name for r in errors] == ["bad.png"] and "bad.png" in errors[0]["error"]
    model = open_model(model_dir, "eager")
    for r in scored:
        name = Path(r["file"]).relative_to(inbox).as_posix()
        (expected,) = model.predict([pictures[name]])  # the whole image, not a half-written one
        assert r["score"] == pytest.approx(expected.score, rel=1e-5)
        assert r["verdict"] == ("defective" if name in ("sub/b.png", "slow.png") else "good")
        assert r["model_version"] == 1 and r["ms"] >= 0 and r["latency_ms"] >= 0
        assert ("overlay" in r) == (r["verdict"] == "defective")
        assert Path(r["sorted"]) == sort / r["verdict"] / name and Path(r["sorted"]).read_bytes() == blobs[name]
    assert (out / "sub" / "b_overlay.png").is_file() and (out / "slow_overlay.png").is_file()
    assert not (out / "a_overlay.png").exists()
    assert sorted(p.name for p in inbox.rglob("*") if p.is_file()) == ["bad.png", "before.png", "notes.png.part"]


def test_existing_files_are_scored_with_the_flag(model_dir, tmp_path):
    rng = np.random.default_rng(2)
    for name in ("x.png", "y.png"):
        Image.fromarray(_noise(rng)).save(tmp_path / name)
    log = tmp_path / "log" / "w.jsonl"
    assert _adbench("watch", model_dir, tmp_path, "--existing", "--log", log, "--settle", "0", "--until-idle", "0.5", "-q") == 0
    assert sorted(Path(r["file"]).name for r in _log(log) if r["event"] == "scored") == ["x.png", "y.png"]


def _video(path: Path, frames: int) -> list[int]:
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless not installed (pip install 'iadbench[line]')")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 40))
    rng, bright = np.random.default_rng(3), []
    for i in range(frames):
        frame = _noise(rng)
        if i % 5 == 2:
            frame, _ = _bright(), bright.append(i)
        writer.write(frame)
    writer.release()
    return bright


def test_video_file_is_scored_frame_by_frame(model_dir, tmp_path):
    bright = _video(tmp_path / "v.avi", 23)
    out = tmp_path / "out"
    assert _adbench("watch", model_dir, tmp_path / "v.avi", "--out", out, "--batch", "4", "--queue", "3", "-q") == 0
    log = _log(out / "watch.jsonl")
    scored = [r for r in log if r["event"] == "scored"]
    assert [r["frame"] for r in scored] == list(range(23))
    assert [r["frame"] for r in scored if r["verdict"] == "defective"] == bright
    assert max(r["batch"] for r in scored) <= 4
    assert sorted(p.name for p in out.glob("*_overlay.png")) == [f"frame_{i:06d}_overlay.png" for i in bright]
    assert log[-1]["reason"] == "source ended" and log[-1]["scored"] == 23

    log2 = tmp_path / "first10.jsonl"
    assert _adbench("watch", model_dir, tmp_path / "v.avi", "--log", log2, "--max-frames", "10", "-q") == 0
    assert [r["frame"] for r in _log(log2) if r["event"] == "scored"] == list(range(10))
    assert _log(log2)[-1]["reason"] == "max-frames"


@pytest.mark.parametrize("source", ["missing.avi", "junk.avi", "9", "rtsp://127.0.0.1:9/none"])
def test_a_source_that_cannot_be_opened_is_one_line_exit_2(model_dir, tmp_path, capfd, monkeypatch, source):
    pytest.importorskip("cv2", reason="opencv-python-headless not installed")
    (tmp_path / "junk.avi").write_text("not a video")
    monkeypatch.chdir(tmp_path)
    assert _adbench("watch", model_dir, source, "--log", tmp_path / "w.jsonl") == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and source in err[0]
    assert not (tmp_path / "w.jsonl").exists()


def test_ctrl_c_stops_cleanly_with_the_log_complete(model_dir, tmp_path, ctrl_c_reaches_children):
    inbox, log = tmp_path / "in", tmp_path / "w.jsonl"
    inbox.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "iadbench", "watch", str(model_dir), str(inbox), "--log", str(log),
                             "--settle", "0.1", "--poll", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        _wait(lambda: log.exists() and log.read_text().strip(), proc)
        rng = np.random.default_rng(4)
        for i in range(3):
            Image.fromarray(_noise(rng)).save(inbox / f"{i}.png")
        _wait(lambda: log.read_text().count('"scored"') == 3, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()
    records = _log(log)  # every line whole JSON
    assert records[-1]["event"] == "stop" and records[-1]["reason"] == "interrupted" and records[-1]["scored"] == 3


def _wait(condition, proc, timeout=60.0):
    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_the_queue_drops_the_oldest_or_holds_the_source_back():
    from iadbench.line.sources import FrameQueue, Item

    stop = threading.Event()
    dropping = FrameQueue(2, drop=True)
    assert [dropping.put(Item(0.0, frame=i), stop) for i in range(2)] == [None, None]
    assert dropping.put(Item(0.0, frame=2), stop).frame == 0  # the oldest made way
    assert [it.frame for it in dropping.take(5, 0)] == [1, 2]

    holding = FrameQueue(1, drop=False)
    holding.put(Item(0.0, frame=0), stop)
    second = threading.Thread(target=holding.put, args=(Item(0.0, frame=1), stop))
    second.start()
    time.sleep(0.2)
    assert second.is_alive() and len(holding) == 1  # waits for room, drops nothing
    assert [it.frame for it in holding.take(1, 0)] == [0]
    second.join(2)
    assert [it.frame for it in holding.take(1, 1)] == [1]


class _FakeCapture:
    def __init__(self, frames: int):
        self.left = frames

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.full((8, 8, 3), 100, np.uint8)

    def get(self, prop):
        return 0

    def release(self):
        pass


def test_a_stream_that_drops_is_reopened_with_back_off(model_dir, tmp_path, monkeypatch):
    from iadbench.line import sources
    from iadbench.line.watch import Watcher, WatchLog
    from iadbench.model import open_model

    opens = iter([None, None, _FakeCapture(2)])  # two failed tries, then it is back with 2 frames
    monkeypatch.setattr(sources, "open_capture", lambda kind, target: next(opens, None))
    monkeypatch.setattr(sources, "FIRST_BACKOFF", 0.01)
    src = sources.CaptureSource("stream", "rtsp://camera/line", _FakeCapture(3), size=(SIZE, SIZE),
                                queue=sources.FrameQueue(8, False))
    watcher = Watcher(open_model(model_dir, "eager"), model_dir, src, WatchLog(tmp_path / "w.jsonl"), max_frames=5)
    assert watcher.run("rtsp://camera/line") == "max-frames"
    log = _log(tmp_path / "w.jsonl")
    said = [r for r in log if r["event"] == "source"]
    assert said[0]["what"] == "dropped" and said[0]["frames"] == 3
    assert said[1]["what"] == "reopened" and said[1]["tries"] == 3  # after two failed tries
    assert [r["frame"] for r in log if r["event"] == "scored"] == list(range(5))
