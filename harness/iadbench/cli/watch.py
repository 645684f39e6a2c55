"""``adbench watch``: score a folder's new images, a video, a camera or a stream as they
come (iadbench.line.watch), with a live view in a terminal and a JSONL log."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape

from iadbench.cli.app import app, console, err_console
from iadbench.errors import InputError


@app.command()
def watch(
    model_dir: Path = typer.Argument(..., help="Model folder (adbench fit --out, or a run's cells/<key>/model)."),
    source: str = typer.Argument(..., help="A folder (new image files), a video file, a camera index (0) or a stream URL (rtsp://...)."),
    out: Path | None = typer.Option(None, "--out", help="Write <name>_overlay.png for each defective image or frame here."),
    log: Path | None = typer.Option(None, "--log", help="JSONL log, appended (default: OUT/watch.jsonl, else ./watch.jsonl)."),
    sort: Path | None = typer.Option(None, "--sort", help="Move scored files into SORT/good/ and SORT/defective/ (folder sources)."),
    copy: bool = typer.Option(False, "--copy", help="With --sort: copy instead of moving."),
    existing: bool = typer.Option(False, "--existing", help="Also score the images already in the folder at start (default: only new ones)."),
    settle: float = typer.Option(0.5, "--settle", help="A file is read once its size and mtime have held this many seconds."),
    poll: float = typer.Option(0.2, "--poll", help="Seconds between two scans of a folder."),
    batch: int = typer.Option(8, "--batch", help="Most waiting images scored together."),
    queue: int = typer.Option(64, "--queue", help="Most images or frames waiting; a full queue holds the source back."),
    drop_frames: bool = typer.Option(False, "--drop-frames", help="A full queue drops its oldest item for the newest instead (logged)."),
    max_frames: int | None = typer.Option(None, "--max-frames", help="Stop after this many images or frames."),
    until_idle: float | None = typer.Option(None, "--until-idle", help="Stop once nothing has arrived for this many seconds."),
    runtime: str = typer.Option("auto", "--runtime", help="auto (the fastest runtime that passed the parity gate on this machine, measured once per model folder), eager, onnx, openvino, openvino-fp16, openvino-bf16 or openvino-int8 (built by adbench export --calibration)."),
    device: str = typer.Option("auto", "--device", help="auto (a GPU where torch sees one, else the CPU), cpu, cuda or cuda:N. On a GPU the model scores in eager PyTorch (exported graphs run on the CPU)."),
    threads: int = typer.Option(2, "--threads", help="Threads of the scoring runtime."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live view or summary (the view is off anyway when stdout is not a terminal)."),
) -> None:
    """Watch a folder, video, camera or stream and score what arrives; Ctrl-C stops
    cleanly (exit 130) with the log complete."""
    import torch

    from iadbench.line.sources import FrameQueue, open_source
    from iadbench.line.watch import LiveView, Watcher, WatchLog
    from iadbench.model import open_model

    if batch < 1 or queue < 1 or threads < 1:
        raise InputError("--batch, --queue and --threads must be >= 1")
    if settle < 0 or poll <= 0:
        raise InputError("--settle must be >= 0 and --poll > 0")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {max_frames}")
    if until_idle is not None and until_idle <= 0:
        raise InputError(f"--until-idle must be > 0, got {until_idle}")
    if copy and sort is None:
        raise InputError("--copy needs --sort")
    if sort is not None and not Path(source).is_dir():
        raise InputError("--sort sorts a folder's files; the source is not a folder", source)
    log = log or ((out / "watch.jsonl") if out is not None else Path("watch.jsonl"))
    torch.set_num_threads(threads)
    model = open_model(model_dir, runtime, device=device, threads=threads)  # a bad model folder: exit 2 before the source opens
    # Opened before the log: a source that cannot be opened is one line, nothing written.
    src = open_source(source, size=tuple(model.input_size), crop=model.crop, queue=FrameQueue(queue, drop_frames),
                      existing=existing, settle=settle, poll=poll,
                      exclude=tuple(p for p in (out, sort) if p is not None))
    live = sys.stdout.isatty() and not quiet

    def on_error(message: str) -> None:
        if not live and not quiet:
            err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)

    watcher = Watcher(model, model_dir, src, WatchLog(log), out=out, sort=sort, copy=copy, batch=batch,
                      max_frames=max_frames, until_idle=until_idle, on_error=on_error)
    title = f"watching {source} ({src.kind}) with {model.detector.name} v{watcher.version} ({model.runtime_name}); log {log}"
    if not live and not quiet:
        err_console.print(title, highlight=False, soft_wrap=True)
    try:
        if live:
            from rich.live import Live

            with Live(LiveView(watcher, title), console=console, refresh_per_second=4):
                reason = watcher.run(source)
        else:
            reason = watcher.run(source)
    finally:
        s = watcher.stats
        if not quiet:
            err_console.print(f"{s.scored} scored ({s.good} good, {s.defective} defective), {s.errors} errors, "
                              f"{s.dropped} dropped; log {log}", highlight=False, soft_wrap=True)
    if not quiet:
        err_console.print(f"stopped: {reason}", highlight=False)
