"""``adbench export``: a model folder's whole inference as one checked ONNX graph."""

from __future__ import annotations

from pathlib import Path

import typer

from iadbench.cli.app import app, err_console
from iadbench.errors import InputError

EXPORT_FORMATS = ("onnx",)


@app.command()
def export(
    model_dir: Path = typer.Argument(..., help="Model folder (adbench fit --out, or a run's cells/<key>/model)."),
    out: Path = typer.Option(..., "--out", help="The .onnx file to write."),
    fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    rtol: float = typer.Option(1e-3, "--rtol", help="Largest relative score difference from eager accepted."),
    threads: int = typer.Option(2, "--threads", help="onnxruntime threads for the self-check."),
) -> None:
    """Export preprocessing, backbone, scoring, upsampling and blur as one ONNX graph
    (uint8 images (N, H, W, 3) -> score (N,), map (N, H, W)); refuses to write a graph
    whose scores differ from eager PyTorch by more than --rtol. The graph comes from the
    model folder's cache where it is fresh (and is cached there when it was not)."""
    from iadbench.deploy.export import ExportCheck, ExportRefused, check_out_path, with_metadata, write_graph
    from iadbench.deploy.graph_cache import cached_graph
    from iadbench.model import load_model

    if fmt not in EXPORT_FORMATS:
        raise InputError(f"--format '{fmt}' is not one of {', '.join(EXPORT_FORMATS)}")
    if not rtol > 0:
        raise InputError(f"--rtol must be > 0, got {rtol}")
    check_out_path(out)
    model = load_model(model_dir)
    try:
        graph, meta = cached_graph(model.directory, model.detector, rtol=rtol, threads=threads)
    except ExportRefused as exc:
        raise InputError(f"export refused: {exc}; nothing written", out) from None
    meta = {**meta, "threshold": model.threshold, "threshold_rule": model.threshold_rule,
            "display_range": list(model.display_range), "pixel_threshold": model.pixel_threshold}
    write_graph(out, with_metadata(graph, meta))
    check = ExportCheck(**meta["check"])
    size_mb = out.stat().st_size / 1e6
    err_console.print(
        f"wrote {out} ({size_mb:.1f} MB); onnxruntime vs eager on {check.images} check images: "
        f"scores {check.max_score_rel_diff:.1e} relative, maps {check.max_map_rel_diff:.1e} of max",
        highlight=False,
    )
