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
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    runtime: str = typer.Option("auto", "--runtime", help="auto (onnx where the detector exports), eager or onnx."),
    threads: int = typer.Option(2, "--threads", help="Threads of the scoring runtime."),
    token: str | None = typer.Option(None, "--token", help="Bearer token required by /predict and /model (or IADBENCH_TOKEN)."),
    max_body_mb: float = typer.Option(20.0, "--max-body-mb", help="Largest request body accepted (413 above)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Most requests scored together."),
    batch_wait_ms: float = typer.Option(5.0, "--batch-wait-ms", help="How long the first request of a batch waits for more."),
) -> None:
    """Serve POST /predict, GET /model, GET /health and the page at GET /."""
    import torch
    import uvicorn

    from iadbench.deploy.server import create_app
    from iadbench.model import open_model

    if not 0 < port < 65536:
        raise InputError(f"--port must be 1..65535, got {port}")
    if threads < 1 or batch_size < 1 or batch_wait_ms < 0 or not max_body_mb > 0:
        raise InputError("--threads and --batch-size must be >= 1, --batch-wait-ms >= 0, --max-body-mb > 0")
    token = token or os.environ.get("IADBENCH_TOKEN") or None
    torch.set_num_threads(threads)
    model = open_model(model_dir, runtime, threads=threads)
    web = create_app(model, token=token, max_body=int(max_body_mb * 1024 * 1024),
                     batch_size=batch_size, batch_wait_ms=batch_wait_ms)
    err_console.print(
        f"serving {model.detector.name} from {model_dir} ({model.runtime_name} runtime) on http://{host}:{port}/"
        + ("; token required" if token else ""), highlight=False,
    )
    uvicorn.run(web, host=host, port=port, log_level="warning")
