"""The ``adbench`` app, its consoles and the ``data`` group: what every command module
(and a plugin's ``register_commands``) adds to. Kept apart from ``main`` so that the
command modules import this and nothing imports them back."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

# Written to a file or pipe (make, CI logs), rich would wrap tables at 80 columns;
# a log has room, so tables keep their numbers whole there. A terminal keeps its width.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120)
err_console = Console(stderr=True)

app = typer.Typer(
    name="adbench",
    help="Benchmark harness for industrial visual anomaly detection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect, check and generate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")) -> None:
    _state["debug"] = debug


def group(parent: typer.Typer, name: str) -> typer.Typer:
    """The sub-group ``name`` of ``parent`` (plugins use it to add e.g. ``data X``)."""
    for info in parent.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    raise KeyError(f"no command group '{name}'")
