"""The ``adbench`` command line (Typer + rich).

Errors a user can act on are one line on stderr and exit code 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer
from rich.console import Console
from rich.markup import escape

from iadbench.errors import InputError

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


def _load_commands() -> None:
    # Importing the modules registers their commands on app / data_app.
    from iadbench.cli import commands  # noqa: F401
    from iadbench.plugins import get_registry, register_commands

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # broken plugins are reported by `adbench plugins`
        registry = get_registry()
    register_commands(registry, app)


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        _load_commands()
        rc = app(args=argv, standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except InputError as exc:
        if debug:
            raise
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except typer.TyperException as exc:
        # Usage errors (a bad flag value, an unknown option): typer vendors its own
        # click, whose exceptions all derive from TyperException.
        if debug:
            raise
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            err_console.print(f"[red]error:[/red] {escape(exc.format_message())}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as exc:
        if debug:
            raise
        err_console.print(f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))} (run with --debug for the traceback)", highlight=False, soft_wrap=True)
        sys.exit(1)
