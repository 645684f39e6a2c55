"""``adbench watch`` throughput against the model's own batch throughput, in one process.

    python -m bench.watch MODEL_DIR [--images '../shared/data/mvtec_ad/bottle/test/*/*.png'] [--size 256]

Writes the images into an MJPG AVI at ``--size`` px (each image one frame), then, in
alternation ``--repeats`` times: the watch loop over that video (iadbench.line: the reader
thread decoding and preparing frames, batches of ``--batch`` scored through the model's
onnx runtime, a JSONL log line per frame) timed from start to its stop line, the same
with ``--out`` (an overlay PNG per defective frame), and
``Model.score`` on the same frames already decoded and prepared at the model's input
size, in batches of ``--batch``. Prints the median frames/s of each (a shared machine's
load swings single runs), their ratio, and the
largest relative difference between the two scores of a frame. With no MODEL_DIR
folder there, fits PaDiM on bottle into it first (``adbench fit``).
"""

from __future__ import annotations

import argparse
import glob
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_video(paths: list[str], path: Path, size: int) -> int:
    import cv2

    from iadbench.images import decode_image, prepare_image

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size, size))
    for p in paths:
        writer.write(np.ascontiguousarray(prepare_image(decode_image(p), (size, size))[..., ::-1]))
    writer.release()
    return len(paths)


def read_frames(path: Path) -> list[np.ndarray]:
    import cv2

    cap, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(frame[..., ::-1]))
    cap.release()
    return frames


def watch_once(model, model_dir: Path, video: Path, log: Path, batch: int,
               out: Path | None = None) -> tuple[float, list[float]]:
    from iadbench.line.sources import FrameQueue, open_source
    from iadbench.line.watch import Watcher, WatchLog

    log.unlink(missing_ok=True)
    source = open_source(str(video), size=tuple(model.input_size), queue=FrameQueue(64, False))
    start = time.perf_counter()
    reason = Watcher(model, model_dir, source, WatchLog(log), batch=batch, out=out).run(str(video))
    seconds = time.perf_counter() - start
    assert reason == "source ended", reason
    records = [json.loads(line) for line in log.read_text().splitlines()]
    scores = [r["score"] for r in sorted((r for r in records if r["event"] == "scored"), key=lambda r: r["frame"])]
    return len(scores) / seconds, scores


def score_once(model, prepared: np.ndarray, batch: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    scores = [model.score(prepared[i:i + batch]).scores for i in range(0, len(prepared), batch)]
    return len(prepared) / (time.perf_counter() - start), np.concatenate([np.asarray(s) for s in scores])


def med(values: list[float]) -> float:
    return float(np.median(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--images", default="../shared/data/mvtec_ad/bottle/test/*/*.png")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import torch

    from iadbench.images import prepare_image
    from iadbench.model import open_model

    if not args.model.exists():
        print(f"fitting PaDiM on bottle into {args.model} ...", flush=True)
        subprocess.run([sys.executable, "-m", "iadbench", "fit", "padim", "--dataset", "mvtec", "--data-root",
                        str(Path(args.images.split("mvtec_ad")[0])), "-c", "bottle", "--out", str(args.model)], check=True)
    paths = sorted(glob.glob(args.images))
    if not paths:
        sys.exit(f"no images match {args.images}")
    torch.set_num_threads(args.threads)
    model = open_model(args.model, "onnx", threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "line.avi"
        n = write_video(paths, video, args.size)
        frames = read_frames(video)
        assert len(frames) == n, (len(frames), n)
        prepared = np.stack([prepare_image(f, tuple(model.input_size)) for f in frames])
        score_once(model, prepared[: args.batch], args.batch)  # warm-up
        watched, drawn, scored = [], [], []
        for _ in range(args.repeats):
            fps, watch_scores = watch_once(model, args.model, video, Path(tmp) / "watch.jsonl", args.batch)
            watched.append(fps)
            drawn.append(watch_once(model, args.model, video, Path(tmp) / "watch.jsonl", args.batch, Path(tmp) / "out")[0])
            fps, batch_scores = score_once(model, prepared, args.batch)
            scored.append(fps)
    diff = float(np.max(np.abs(np.asarray(watch_scores) - batch_scores) / np.maximum(np.abs(batch_scores), 1e-12)))
    print(f"{n} frames of {args.size} px ({model.detector.name}, {model.runtime_name} runtime, input "
          f"{model.input_size[0]} px, batch {args.batch}, {args.threads} threads), median of {args.repeats} interleaved runs:")
    print(f"  adbench watch (video -> verdict log): {med(watched):7.1f} frames/s   (runs: {', '.join(f'{v:.1f}' for v in watched)})")
    print(f"  ... with --out (overlay PNGs):        {med(drawn):7.1f} frames/s   (runs: {', '.join(f'{v:.1f}' for v in drawn)})")
    print(f"  Model.score (prepared frames):        {med(scored):7.1f} frames/s   (runs: {', '.join(f'{v:.1f}' for v in scored)})")
    print(f"  ratio watch / batch: {med(watched) / med(scored):.2f} ({med(drawn) / med(scored):.2f} with --out); "
          f"largest relative score difference {diff:.2e}")


if __name__ == "__main__":
    main()
