"""``adbench update MODEL --good DIR``: fold confirmed-good images into a model folder
as its next version (iadbench.line.update)."""

from __future__ import annotations

from pathlib import Path

import typer

from iadbench.cli.app import app, console


@app.command()
def update(
    model: Path = typer.Argument(..., help="Model folder (adbench fit --out, or a run cell's model/)."),
    good: Path | None = typer.Option(None, "--good", help="Folder of confirmed-good images to fold in."),
    out: Path | None = typer.Option(None, "--out", help="Write the new version to this new folder and leave MODEL as it is."),
    train: Path | None = typer.Option(None, "--train", help="The good images MODEL was fitted on: needed where the detector refits on the union."),
    feedback: bool = typer.Option(False, "--feedback", help="Also fold in the model's feedback entries labelled false alarm."),
    threads: int = typer.Option(0, "--threads", help="Torch threads (default: all cores)."),
) -> None:
    """Fold good images into MODEL without refitting from scratch where its detector can
    (PaDiM: exact running statistics; PatchCore: coreset over bank + new patches), else
    refit on the union (--train). The threshold is re-calibrated; model.json's version
    goes up by one and its lineage says what was added. In place, the new version is
    swapped in atomically: a failure leaves MODEL as it was."""
    from iadbench.errors import InputError
    from iadbench.line.update import update_model

    if good is None and not feedback:
        raise InputError("give --good DIR (and/or --feedback): there is nothing to add")
    result = update_model(model, good, out=out, train=train, feedback=feedback, threads=threads, log=console.print)

    def fmt(v):
        return "none" if v is None else f"{v:.6g}"

    console.print(f"{result.directory}: version {result.version} (parent {result.parent}), {result.images_added} images added "
                  f"by {result.method}; threshold {fmt(result.threshold_before)} -> {fmt(result.threshold)}; {result.seconds:.1f} s")
    if result.note:
        console.print(f"note: {result.note}")
