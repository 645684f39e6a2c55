"""``adbench leaderboard`` and ``adbench compare``."""

from __future__ import annotations

from pathlib import Path

import typer

from iadbench.cli.app import app, console
from iadbench.errors import InputError
from iadbench.plugins import get_registry


@app.command()
def leaderboard(
    run_dirs: list[Path] = typer.Argument(..., help="Run folders (records are merged)."),
    out: Path | None = typer.Option(None, "--out", help="Markdown file to write (default: print)."),
    title: str = typer.Option("Leaderboard", "--title", help="Heading of the markdown page."),
    latest: bool = typer.Option(False, "--latest", help="Only each detector's newest version (older ones are "
                                "named in the leaderboard), for runs merged across a version bump."),
) -> None:
    """Render markdown leaderboards from run records."""
    from iadbench.report import leaderboard as leaderboard_mod

    metrics = get_registry().metrics
    if out is None:
        console.print(leaderboard_mod.render(run_dirs, metrics, title, latest=latest), markup=False, highlight=False)
        return
    leaderboard_mod.write(run_dirs, out, metrics, title, latest=latest)
    console.print(f"leaderboard written to {out}")


@app.command()
def compare(
    run_a: Path = typer.Argument(..., help="Baseline run folder."),
    run_b: Path = typer.Argument(..., help="Run folder to compare with it."),
    out: Path | None = typer.Option(None, "--out", help="Also write the table as markdown."),
) -> None:
    """Per-cell deltas of run B against run A (metrics: B−A; cost: B/A)."""
    from iadbench.report import compare as compare_mod

    table = compare_mod.compare(run_a, run_b)
    text = table.to_markdown(index=False, floatfmt=".3f")
    console.print(text, markup=False, highlight=False)
    if out is not None:
        out.write_text(text + "\n")


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="Run folders (records are merged)."),
    out: Path = typer.Option(..., "--out", help="Folder for index.html and its pictures (index_files/)."),
    title: str = typer.Option("Run report", "--title", help="Heading of the HTML page."),
) -> None:
    """A static HTML report: leaderboards, curves, heatmaps of the worst cases, cost chart."""
    from iadbench.report.html import write_report

    if out.exists() and not out.is_dir():
        raise InputError("is a file; --out takes a folder", out)
    page = write_report(run_dirs, out / "index.html", get_registry().metrics, title)
    console.print(f"report written to {page}")
