"""``adbench runs`` and ``adbench clean``: the run folders on disk, and removing them;
plus the lines ``adbench run`` prints after its summary (what the run left out, which
model folders it kept)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from iadbench.cli.app import app, console
from iadbench.errors import InputError

DEFAULT_ROOT = Path("runs")


def _mb(size_bytes: float) -> str:
    mb = size_bytes / 2**20
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"


def _age(seconds: float) -> str:
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f} {unit}"
    return f"{seconds:.0f} s"


def print_run_footer(plan, registry, outcome, out) -> None:
    """After a run's summary: the detectors a default or --all run left out, and which
    model folders it kept (``--keep-models``)."""
    from iadbench.runner.plan import left_out

    left = left_out(plan, registry, outcome.cells)
    slow = [name for name, why in left if why.startswith("opt-in")]
    labelled = [name for name, why in left if why.startswith("learns from labelled")]
    rest = [name for name, why in left if name not in slow and name not in labelled]
    if rest:
        out.print(f"left out: {len(rest)} available detector(s) not in the default set (add -d NAME, or --all for "
                  f"every one): {', '.join(rest)}", highlight=False)
    if slow:
        out.print(f"left out{'' if rest else ' of --all'}: {', '.join(slow)} (opt-in, slow: runs only when named, -d NAME)",
                  highlight=False)
    if labelled:
        out.print(f"left out: {', '.join(labelled)} (learns from labelled defects: runs in a --defects-in-train sweep)",
                  highlight=False)
    if not plan.detectors:  # a default or --all run: say what this machine cannot run, and why
        unavailable: dict[str, list[str]] = {}
        for name, spec in sorted(registry.detectors.items()):
            if not spec.available:
                unavailable.setdefault(spec.unavailable_reason or "unavailable", []).append(name)
        for why, names in unavailable.items():
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            out.print(f"not available here: {shown} ({why})", highlight=False)
    models = outcome.models
    if models is None or models.keep == "all":
        return
    what = ("the best detector per dataset/category by image AUROC" if models.keep == "best" else "none")
    out.print(f"models: kept {len(models.kept)}, removed {len(models.removed)} ({_mb(models.freed_bytes)}) "
              f"(--keep-models {models.keep}: {what}; --keep-models all keeps every one)", highlight=False)


@app.command("runs")
def runs(
    root: Path = typer.Option(DEFAULT_ROOT, "--root", help="Folder holding run folders."),
) -> None:
    """List the runs under --root: cells ok/failed, disk size, age, models kept, in use."""
    from iadbench.results.housekeeping import list_runs

    found = list_runs(root)
    if not found:
        console.print(f"no runs under {escape(str(root))}")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name, justify in (("run", "left"), ("cells ok", "right"), ("failed", "right"), ("size", "right"),
                          ("age", "right"), ("models", "right"), ("in use", "left")):
        table.add_column(name, justify=justify, no_wrap=True)
    for r in found:
        table.add_row(
            escape(r.name), f"{r.ok}/{r.cells}", str(r.failed) if r.failed else "", _mb(r.size_bytes), _age(r.age_s),
            "all" if r.models_kept is None else str(r.models_kept),
            f"yes (pid {r.holder})" if r.holder else "",
        )
    console.print(table)
    console.print(f"{len(found)} run(s), {_mb(sum(r.size_bytes for r in found))} under {escape(str(root))}", highlight=False)


def _named(names: list[str], root: Path) -> list[Path]:
    """A name is a path to a run folder, or a run's name under ``root``."""
    from iadbench.results.housekeeping import is_run

    out = []
    for name in names:
        path = Path(name)
        path = path if path.is_dir() else root / name
        if not is_run(path):
            raise InputError("not a run folder (no run.json)", path)
        out.append(path)
    return out


@app.command("clean")
def clean(
    names: list[str] = typer.Argument(None, help="Runs to remove: folders, or names under --root."),
    older_than: str | None = typer.Option(None, "--older-than", help="Runs under --root older than this (7d, 12h, 30m)."),
    keep: int | None = typer.Option(None, "--keep", help="Keep the N newest runs under --root; remove the rest."),
    root: Path = typer.Option(DEFAULT_ROOT, "--root", help="Folder holding run folders."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Remove them (without it, only list what would go)."),
) -> None:
    """Remove run folders: named ones, or those --older-than / beyond --keep. Lists them
    only unless --yes; never removes a run an adbench run is writing (its lock is held)."""
    from iadbench.results.housekeeping import describe_run, list_runs, parse_duration, remove_run, select_runs

    names = list(names or [])
    if names and (older_than is not None or keep is not None):
        raise InputError("name runs, or select them with --older-than / --keep, not both")
    if not names and older_than is None and keep is None:
        raise InputError("nothing chosen: name runs to remove, or pass --older-than AGE or --keep N")
    if names:
        chosen = [describe_run(p) for p in _named(names, root)]
    else:
        chosen = select_runs(list_runs(root), parse_duration(older_than) if older_than is not None else None, keep)
    if not chosen:
        console.print("no run to remove")
        return
    busy = [r for r in chosen if r.holder]
    free = [r for r in chosen if not r.holder]
    for r in busy:
        console.print(f"in use by an adbench run (pid {r.holder}), left alone: {escape(str(r.path))}", highlight=False)
    total = sum(r.size_bytes for r in free)
    if not yes:
        for r in free:
            console.print(f"would remove {escape(str(r.path))} ({_mb(r.size_bytes)}, {_age(r.age_s)} old)", highlight=False)
        if free:
            console.print(f"{len(free)} run(s), {_mb(total)}: pass --yes to remove them", highlight=False)
    else:
        freed = 0
        for r in free:
            if remove_run(r.path):
                freed += r.size_bytes
                console.print(f"removed {escape(str(r.path))} ({_mb(r.size_bytes)})", highlight=False)
            else:  # an adbench run took the lock since it was listed
                busy.append(r)
                console.print(f"in use by an adbench run now, left alone: {escape(str(r.path))}", highlight=False)
        console.print(f"freed {_mb(freed)}", highlight=False)
    if busy and names:
        raise typer.Exit(1)
