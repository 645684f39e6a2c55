"""The ``adbench`` command line (Typer + rich).

Errors a user can act on are one line on stderr and exit code 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import sys
import warnings

import typer
from rich.markup import escape

from iadbench.cli.app import app, console, data_app, err_console, group  # noqa: F401 - public: plugins use console, group
from iadbench.errors import InputError


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
