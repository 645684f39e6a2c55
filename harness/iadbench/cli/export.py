"""``adbench export``: a model folder's whole inference as one checked ONNX graph."""

from __future__ import annotations

from pathlib import Path

import typer

from iadbench.cli import app, err_console
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
    whose scores differ from eager PyTorch by more than --rtol."""
    from iadbench.deploy.export import export_onnx
    from iadbench.model import load_model

    if fmt not in EXPORT_FORMATS:
        raise InputError(f"--format '{fmt}' is not one of {', '.join(EXPORT_FORMATS)}")
    if not rtol > 0:
        raise InputError(f"--rtol must be > 0, got {rtol}")
    model = load_model(model_dir)
    meta = {"threshold": model.threshold, "threshold_rule": model.threshold_rule,
            "display_range": list(model.display_range), "pixel_threshold": model.pixel_threshold}
    check = export_onnx(model.detector, out, rtol=rtol, metadata=meta, threads=threads)
    size_mb = out.stat().st_size / 1e6
    err_console.print(
        f"wrote {out} ({size_mb:.1f} MB); onnxruntime vs eager on {check.images} check images: "
        f"scores {check.max_score_rel_diff:.1e} relative, maps {check.max_map_rel_diff:.1e} of max",
        highlight=False,
    )
