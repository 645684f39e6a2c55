"""``adbench export``: a model folder's whole inference as one checked ONNX graph, or
as OpenVINO IR (float32, fp16 weights, or INT8 calibrated on good images)."""

from __future__ import annotations

from pathlib import Path

import typer

from iadbench.cli.app import app, err_console
from iadbench.errors import InputError

EXPORT_FORMATS = ("onnx", "openvino", "openvino-fp16", "openvino-bf16", "openvino-int8")
#: Of the calibration images, every CHECK_EVERY-th (at most CHECK_GOOD) is held out of
#: the calibration as a good check image of the parity gate.
CHECK_EVERY, CHECK_GOOD = 4, 6


@app.command()
def export(
    model_dir: Path = typer.Argument(..., help="Model folder (adbench fit --out, or a run's cells/<key>/model)."),
    out: Path = typer.Option(..., "--out", help="The file to write: .onnx, or for openvino formats the IR's .xml (its .bin beside it)."),
    fmt: str = typer.Option("onnx", "--format", help="onnx, openvino (float32 IR), openvino-fp16 (fp16 weights), openvino-bf16 (computed in bfloat16 where the CPU can) or openvino-int8 (NNCF INT8; needs --calibration)."),
    rtol: float = typer.Option(1e-3, "--rtol", help="Largest relative score difference from eager accepted (onnx; openvino formats use their parity bounds)."),
    threads: int = typer.Option(2, "--threads", help="Runtime threads for the self-check."),
    calibration: Path | None = typer.Option(None, "--calibration", help="Good images (a file or folder, never test images) INT8 is calibrated on; every 4th (at most 6) is held out as a check image. Layers whose rounding moves the scores more than 5% go back to float32 (accuracy control)."),
) -> None:
    """Export preprocessing, backbone, scoring, upsampling and blur as one ONNX graph
    (uint8 images (N, H, W, 3) -> score (N,), map (N, H, W)); refuses to write a graph
    whose scores differ from eager PyTorch by more than --rtol. The graph comes from the
    model folder's cache where it is fresh (and is cached there when it was not).
    OpenVINO formats convert that graph (a split runtime's front graph) to IR, held to
    the parity gate (scores, rank order, image and pixel AUROC against eager) and cached
    in the model folder, where --runtime openvino* and auto find it."""
    from iadbench.model import load_model

    if fmt not in EXPORT_FORMATS:
        raise InputError(f"--format '{fmt}' is not one of {', '.join(EXPORT_FORMATS)}")
    if not rtol > 0:
        raise InputError(f"--rtol must be > 0, got {rtol}")
    if calibration is not None and fmt != "openvino-int8":
        raise InputError(f"--calibration is for --format openvino-int8, not {fmt}")
    if fmt.startswith("openvino"):
        if out.suffix.lower() != ".xml":
            raise InputError("an OpenVINO IR is written as NAME.xml (and NAME.bin); give --out a .xml path", out)
        from iadbench.deploy.export import check_out_path

        check_out_path(out)
        return _export_openvino(load_model(model_dir), fmt, out, threads, calibration)
    from iadbench.deploy.export import ExportCheck, ExportRefused, check_out_path, with_metadata, write_graph
    from iadbench.deploy.graph_cache import cached_graph

    check_out_path(out)
    model = load_model(model_dir)
    try:
        graph, meta = cached_graph(model.directory, model.detector, rtol=rtol, threads=threads)
    except ExportRefused as exc:
        raise InputError(f"export refused: {exc}; nothing written", out) from None
    write_graph(out, with_metadata(graph, {**meta, **_model_meta(model)}))
    check = ExportCheck(**meta["check"])
    size_mb = out.stat().st_size / 1e6
    err_console.print(
        f"wrote {out} ({size_mb:.1f} MB); onnxruntime vs eager on {check.images} check images: "
        f"scores {check.max_score_rel_diff:.1e} relative, maps {check.max_map_rel_diff:.1e} of max",
        highlight=False,
    )


def _model_meta(model) -> dict:
    return {"threshold": model.threshold, "threshold_rule": model.threshold_rule,
            "display_range": list(model.display_range), "pixel_threshold": model.pixel_threshold}


def calibration_images(path: Path, size: tuple[int, int]):
    """(calibration images, held-out good check images) from the good images at ``path``."""
    import numpy as np

    from iadbench.cli.predict import find_images
    from iadbench.images import decode_image, prepare_image

    paths = find_images(path)
    if not paths:
        raise InputError("no image files found for --calibration", path)
    images = np.stack([prepare_image(decode_image(p), size) for p in paths])
    held = np.arange(len(images))[::CHECK_EVERY][:CHECK_GOOD] if len(images) >= 2 * CHECK_EVERY else np.zeros(0, int)
    rest = np.setdiff1d(np.arange(len(images)), held)
    return images[rest], (images[held] if len(held) else None)


def _export_openvino(model, fmt: str, out: Path, threads: int, calibration: Path | None) -> None:
    import json
    import shutil

    from iadbench.deploy.ir_cache import INT8, open_ir
    from iadbench.deploy.openvino import int8_note, ir_folder

    det = model.detector
    calib = good = None
    if fmt == INT8:
        if calibration is None:
            raise InputError("--format openvino-int8 needs --calibration GOOD_IMAGES (a file or folder of good images)")
        calib, good = calibration_images(calibration, det.input_size)
        err_console.print(f"INT8: calibrating on {len(calib)} good images, then reverting the layers that move the "
                          f"scores most to float32 until they hold (a few minutes on 2 cores) ...", highlight=False)
    try:
        rt = open_ir(det, fmt, model.directory, threads, calibration=calib, good=good, rebuild=calib is not None)
    except InputError as exc:
        raise InputError(f"export refused: {exc}; nothing written", out) from None
    folder = ir_folder(model.directory, fmt, det.split_runtime)
    if not (folder / "model.xml").is_file():
        raise InputError("the model folder is not writable: the IR could not be cached to export it", model.directory)
    for src, dst in ((folder / "model.bin", out.with_suffix(".bin")), (folder / "model.xml", out)):
        shutil.copyfile(src, dst)  # the .xml names its .bin by stem: both renamed together
    meta = {**rt.metadata, **_model_meta(model), "front": bool(det.split_runtime)}
    out.with_suffix(".iadbench.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n")
    c = rt.metadata["check"]
    what = ("front graph (features; the search runs in Python)" if det.split_runtime else "whole graph") + int8_note(meta)
    err_console.print(
        f"wrote {out} + .bin ({(out.stat().st_size + out.with_suffix('.bin').stat().st_size) / 1e6:.1f} MB, {what}, {rt.detail}); "
        f"vs eager on {c['images']} check images: scores {c['max_score_rel_diff']:.1e} relative, rank correlation "
        f"{c['spearman']:.4f}, image AUROC {c['image_auroc']:.4f} ({c['image_auroc_eager']:.4f} eager), pixel AUROC "
        f"{c['pixel_auroc']:.4f} ({c['pixel_auroc_eager']:.4f})", highlight=False)
