"""``adbench predict``: score images with a model folder, print verdicts, and write
heatmap overlays and raw maps."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from iadbench.cli.app import app, console, err_console
from iadbench.errors import InputError

FORMATS = ("table", "json", "csv")


def find_images(target: Path) -> list[Path]:
    """``target`` itself, or every image file under it (recursive, sorted), skipping
    hidden files and folders and OS litter (the dataset layouts' rule, layouts.is_litter)."""
    from iadbench.layouts import is_image_file, is_litter

    if target.is_file():
        return [target]
    if not target.is_dir():
        raise InputError("no such file or folder", target)
    found = []
    for path in sorted(target.rglob("*")):
        parts = path.relative_to(target).parts
        if any(is_litter(Path(p)) for p in parts):
            continue
        if path.is_file() and is_image_file(path):
            found.append(path)
    return found


def output_stem(path: Path, target: Path, out: Path) -> Path:
    """Where an image's pictures go: its path relative to the scored folder, so two
    ``000.png`` in different sub-folders do not overwrite each other."""
    rel = path.relative_to(target) if target.is_dir() else Path(path.name)
    return out / rel.parent / rel.stem


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="Model folder (adbench fit --out, or a run's cells/<key>/model)."),
    target: Path = typer.Argument(..., help="An image, or a folder scored recursively."),
    out: Path | None = typer.Option(None, "--out", help="Write <name>_overlay.png and <name>_map.png (16-bit raw map) per image."),
    fmt: str = typer.Option("table", "--format", help="table, json (one line per image) or csv."),
    runtime: str = typer.Option("auto", "--runtime", help="auto (the fastest runtime that passed the parity gate on this machine, measured once per model folder), eager, onnx, openvino, openvino-fp16, openvino-bf16 or openvino-int8 (built by adbench export --calibration)."),
    device: str = typer.Option("auto", "--device", help="auto (a GPU where torch sees one, else the CPU), cpu, cuda or cuda:N. On a GPU the model scores in eager PyTorch (exported graphs run on the CPU)."),
) -> None:
    """Score images with a fitted model; verdicts use the model's stored threshold."""
    from iadbench.images import decode_image
    from iadbench.model import open_model
    from iadbench.visual import overlay, png_bytes, write_map_png

    if fmt not in FORMATS:
        raise InputError(f"--format '{fmt}' is not one of {', '.join(FORMATS)}")
    model = open_model(model_dir, runtime, device=device)
    if getattr(model.runtime, "choice_note", None):  # what auto chose and why
        err_console.print(model.runtime.choice_note, highlight=False)
    paths = find_images(target)
    if not paths:
        raise InputError("no image files found", target)
    rows, failed = [], 0
    writer = csv.writer(sys.stdout) if fmt == "csv" else None
    if writer:
        writer.writerow(["file", "score", "verdict", "ms"])
    for path in paths:
        try:
            image = decode_image(path)
            start = time.perf_counter()
            (result,) = model.predict([image])
            ms = (time.perf_counter() - start) * 1000.0
            row = {"file": str(path), "score": result.score,
                   "verdict": "defective" if result.anomalous else "good", "ms": ms}
            if out is not None:
                stem = output_stem(path, target, out)
                stem.parent.mkdir(parents=True, exist_ok=True)
                pic = overlay(image, result.map, model.display_range, model.pixel_threshold)
                overlay_path = stem.with_name(stem.name + "_overlay.png")
                overlay_path.write_bytes(png_bytes(pic))
                map_path = write_map_png(stem.with_name(stem.name + "_map.png"), result.map)
                row.update(overlay=str(overlay_path), map=str(map_path))
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the rest
            failed += 1
            message = str(exc) if isinstance(exc, InputError) else f"{path}: {type(exc).__name__}: {exc}"
            err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
            continue
        if fmt == "json":
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
        elif writer:
            writer.writerow([row["file"], repr(row["score"]), row["verdict"], f"{ms:.1f}"])
        rows.append(row)
    if fmt == "table":
        _print_table(rows, model)
    if fmt == "table" or out is not None:
        where = f"; overlays and maps in {out}" if out is not None else ""
        err_console.print(f"{len(rows)} scored, {failed} failed{where}", highlight=False)
    if failed:
        raise typer.Exit(1)


def _print_table(rows: list[dict], model) -> None:
    table = Table(title=f"threshold {model.threshold:.6g} ({model.threshold_rule})", title_justify="left")
    for name, justify in (("file", "left"), ("score", "right"), ("verdict", "left"), ("ms", "right")):
        table.add_column(name, justify=justify)
    for row in rows:
        verdict = "[red]defective[/red]" if row["verdict"] == "defective" else "good"
        table.add_row(escape(row["file"]), f"{row['score']:.6g}", verdict, f"{row['ms']:.1f}")
    console.print(table)
