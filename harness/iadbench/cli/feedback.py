"""``adbench feedback MODEL``: list the operator feedback a served model collected,
or copy it out (``--export DIR``, e.g. the false alarms into a good/ folder for
``adbench update --good``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from iadbench.cli.app import app, console, err_console
from iadbench.errors import InputError

FORMATS = ("table", "json")


@app.command()
def feedback(
    model_dir: Path = typer.Argument(..., help="Model folder whose feedback/ to read."),
    fmt: str = typer.Option("table", "--format", help="table or json (one line per entry)."),
    label: str | None = typer.Option(None, "--label", help="Only false_alarm or missed_defect entries."),
    export: Path | None = typer.Option(None, "--export", help="Copy the entries' images into this folder as <id><ext>."),
    feedback_dir: Path | None = typer.Option(None, "--feedback-dir", help="The feedback folder, where serve kept it elsewhere."),
) -> None:
    """List or export operator feedback (false alarms, missed defects)."""
    from iadbench.line.feedback import FeedbackError, FeedbackStore

    if fmt not in FORMATS:
        raise InputError(f"--format '{fmt}' is not one of {', '.join(FORMATS)}")
    if not (model_dir / "model.json").is_file():
        raise InputError("not a model folder (no model.json)", model_dir)
    store = FeedbackStore(model_dir, feedback_dir)
    try:
        entries = store.entries(label)
        if export is not None:
            written = store.export(export, label)
            err_console.print(f"copied {len(written)} image(s) to {export}", highlight=False)
            return
    except FeedbackError as exc:
        raise InputError(f"--label: {exc.detail}") from None
    if fmt == "json":
        for entry in entries:
            print(json.dumps(entry, sort_keys=True))
        return
    if not entries:
        err_console.print(f"no feedback in {store.folder}", highlight=False)
        return
    table = Table("id", "label", "score", "threshold", "version", "created", "original name")
    for e in entries:
        table.add_row(e["id"], e["label"], num(e.get("score")), num(e.get("threshold")), str(e.get("model_version")),
                      str(e.get("created")), escape(str(e.get("original_name"))))
    console.print(table)


def num(value) -> str:
    return "-" if value is None else f"{value:.5g}"
