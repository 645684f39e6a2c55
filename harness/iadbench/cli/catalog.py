"""``adbench plugins`` and ``adbench list detectors|datasets|metrics|executors``."""

from __future__ import annotations

from enum import StrEnum

import typer
from rich.table import Table
from rich.text import Text  # plugin-supplied text is shown as is, never read as markup

from iadbench.cli.app import app, console
from iadbench.plugins import get_registry


@app.command()
def plugins(
    check: bool = typer.Option(False, "--check", help="Also import every plugin's detectors, datasets and metrics "
                               "(slow: loads torch) and check their parameters; a failure marks the plugin broken."),
) -> None:
    """Show every plugin found, its status and what it provides."""
    registry = get_registry()
    if check:
        from iadbench.plugins import load_references

        load_references(registry)
    table = Table("plugin", "status", "version", "provides / error")
    style = {"ok": "green", "broken": "red", "blocked": "yellow"}
    for info in sorted(registry.plugins.values(), key=lambda p: p.name):
        detail = info.error if info.status == "broken" else ", ".join(info.provides)
        table.add_row(info.name, f"[{style[info.status]}]{info.status}[/]", info.version or "", Text(detail or ""))
    console.print(table)


class Kind(StrEnum):
    detectors = "detectors"
    datasets = "datasets"
    metrics = "metrics"
    executors = "executors"


@app.command("list")
def list_(kind: Kind = typer.Argument(..., help="detectors, datasets, metrics or executors")) -> None:
    """List what the plugins registered."""
    registry = get_registry()
    if kind is Kind.detectors:
        table = Table("detector", "available", "plugin", "description / why unavailable")
        for name, spec in sorted(registry.detectors.items()):
            mark = "[green]yes[/]" if spec.available else "[red]no[/]"
            text = spec.description if spec.available else f"{spec.unavailable_reason}"
            table.add_row(name, mark, spec.plugin, Text(text or ""))
    elif kind is Kind.datasets:
        table = Table("dataset", "plugin", "sub-folder of --data-root", "description")
        for name, spec in sorted(registry.datasets.items()):
            table.add_row(name, spec.plugin, spec.subdir or "-", Text(spec.description))
    elif kind is Kind.executors:
        table = Table("executor", "plugin", "joins a cluster (--address)", "description")
        for name, spec in sorted(registry.executors.items()):
            table.add_row(name, spec.plugin, "yes" if spec.takes_address else "no", Text(spec.description))
    else:
        table = Table("metric", "level", "better", "plugin", "description")
        for name, spec in sorted(registry.metrics.items()):
            table.add_row(name, spec.level, "higher" if spec.higher_is_better else "lower", spec.plugin, Text(spec.description))
    console.print(table)
