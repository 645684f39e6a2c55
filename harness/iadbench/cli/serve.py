"""``adbench serve``: a model folder behind a small web service (see iadbench.deploy.server)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from iadbench.cli.app import app, err_console
from iadbench.errors import InputError


@app.command()
def serve(
    model_dir: Path = typer.Argument(..., help="Model folder (adbench fit --out, or a run's cells/<key>/model)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface; set --token then)."),
    port: int = typer.Option(8000, "--port", help="TCP port to listen on."),
    runtime: str = typer.Option("auto", "--runtime", help="auto (the fastest runtime that passed the parity gate on this machine, measured once per model folder), eager, onnx, openvino, openvino-fp16, openvino-bf16 or openvino-int8 (built by adbench export --calibration)."),
    device: str = typer.Option("auto", "--device", help="auto (a GPU where torch sees one, else the CPU), cpu, cuda or cuda:N. On a GPU the model scores in eager PyTorch (exported graphs run on the CPU)."),
    threads: int = typer.Option(2, "--threads", help="Threads of the scoring runtime."),
    token: str | None = typer.Option(None, "--token", help="Bearer token required by /predict, /feedback, /reload and /model (or IADBENCH_TOKEN)."),
    max_body_mb: float = typer.Option(20.0, "--max-body-mb", help="Largest request body accepted (413 above)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Most requests scored together."),
    batch_wait_ms: float = typer.Option(5.0, "--batch-wait-ms", help="How long the first request of a batch waits for more."),
    reload_interval: float = typer.Option(2.0, "--reload-interval", help="Seconds between checks of the folder's version (0: only POST /reload)."),
    feedback_dir: Path | None = typer.Option(None, "--feedback-dir", help="Where operator feedback goes (default MODEL/feedback; for a read-only model)."),
    feedback_max_mb: float = typer.Option(1024.0, "--feedback-max-mb", help="Most bytes the feedback store keeps (507 beyond)."),
    drift_window: int = typer.Option(200, "--drift-window", help="Scores in the drift signal's sliding window."),
) -> None:
    """Serve POST /predict, /feedback, /reload, GET /model, /health, /metrics and the page at GET /."""
    import logging

    import torch
    import uvicorn

    from iadbench.deploy.server import create_app
    from iadbench.line.feedback import FeedbackStore
    from iadbench.line.reload import load_version
    from iadbench.model import open_model

    if not 0 < port < 65536:
        raise InputError(f"--port must be 1..65535, got {port}")
    if threads < 1 or batch_size < 1 or batch_wait_ms < 0 or not max_body_mb > 0:
        raise InputError("--threads and --batch-size must be >= 1, --batch-wait-ms >= 0, --max-body-mb > 0")
    if reload_interval < 0 or drift_window < 1 or not feedback_max_mb > 0:
        raise InputError("--reload-interval must be >= 0, --drift-window >= 1, --feedback-max-mb > 0")
    token = token or os.environ.get("IADBENCH_TOKEN") or None
    torch.set_num_threads(threads)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("iadbench.serve")
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    def opener(directory: Path):
        return open_model(directory, runtime, device=device, threads=threads)

    drift = {"window": drift_window}
    served = load_version(model_dir, opener, drift)
    store = FeedbackStore(model_dir, feedback_dir, max_bytes=int(feedback_max_mb * 1024 * 1024))
    web = create_app(served, token=token, max_body=int(max_body_mb * 1024 * 1024), batch_size=batch_size,
                     batch_wait_ms=batch_wait_ms, model_dir=model_dir, opener=opener, reload_interval=reload_interval,
                     feedback=store, drift=drift)
    model = served.model
    if getattr(model.runtime, "choice_note", None):  # what auto chose and why
        err_console.print(model.runtime.choice_note, highlight=False)
    err_console.print(
        f"serving {model.detector.name} version {served.version} from {model_dir} ({model.runtime_name} runtime)"
        f" on http://{host}:{port}/" + ("; token required" if token else "")
        + (f"; reloads on a new version (checked every {reload_interval:g} s)" if reload_interval else ""),
        highlight=False,
    )
    uvicorn.run(web, host=host, port=port, log_level="warning")
