"""mkdocs hooks (mkdocs.yml ``hooks:``): the Results pages, rendered at build time from the
committed leaderboards, so the site never holds a second copy that could go stale.

Each ``leaderboards/NAME.md`` becomes ``results/NAME.md``, with its plan
(``leaderboards/NAME.toml``) appended where there is one; ``results/index.md`` lists them.
The nav's "Results" entry is filled in with them, in file-name order.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

LEADERBOARDS = Path(__file__).resolve().parents[1] / "leaderboards"
SECTION = "Results"


def leaderboards() -> list[Path]:
    return sorted(LEADERBOARDS.glob("*.md"))


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem


def _page(path: Path) -> str:
    text = path.read_text(encoding="utf-8").rstrip() + "\n"
    note = f"\n\n---\n\nThis page is `leaderboards/{path.name}`, rendered as committed."
    plan = path.with_suffix(".toml")
    if plan.exists():
        note += f" The plan that made it, `leaderboards/{plan.name}` (`adbench run --plan leaderboards/{plan.name}`):\n\n"
        note += "```toml\n" + plan.read_text(encoding="utf-8").rstrip() + "\n```\n"
    return text + note + "\n"


def _index() -> str:
    lines = [
        "# Results\n",
        "The committed leaderboards (`leaderboards/*.md`), each written by `adbench leaderboard` or a",
        "study script from the run folders named on it, with the prose that explains the numbers.",
        "How to read them: [Results and metrics](../guide/results.md) and",
        "[Looking at results](../guide/looking.md).\n",
        "| page | what |",
        "|---|---|",
    ]
    lines += [f"| [{p.stem}]({p.stem}.md) | {_title(p)} |" for p in leaderboards()]
    return "\n".join(lines) + "\n"


def on_config(config, **kwargs):
    """Put every leaderboard under the nav's Results section."""
    for i, entry in enumerate(config.nav or []):
        if isinstance(entry, dict) and SECTION in entry:
            config.nav[i] = {SECTION: [{"Overview": "results/index.md"}] + [{p.stem: f"results/{p.stem}.md"} for p in leaderboards()]}
    return config


def on_files(files, config, **kwargs):
    files.append(File.generated(config, "results/index.md", content=_index()))
    for path in leaderboards():
        files.append(File.generated(config, f"results/{path.stem}.md", content=_page(path)))
    return files
