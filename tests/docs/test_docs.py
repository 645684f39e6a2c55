"""The documentation keeps up with the code (in the style of datasette's docs tests).

Each test reads the thing to document from the code (the click tree of ``adbench``, the
hook specs, the registry, the source files) and fails naming what the pages lack: an
undocumented command or option, hook, metric, detector, environment variable or core
module, a generated page gone stale, a README that grew past 150 lines or links nowhere.
The site itself is built with ``mkdocs build --strict`` (broken links, anchors and
included files fail it).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README_MAX_LINES = 150


def _gen():
    """docs/gen.py, loaded from its file: the name ``docs`` may mean tests/docs here."""
    spec = importlib.util.spec_from_file_location("iadbench_docs_gen", DOCS / "gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen():
    return _gen()


@pytest.fixture(scope="module")
def cli_tree(gen):
    return gen.cli_command()


def _page(relative: str) -> str:
    return (DOCS / relative).read_text(encoding="utf-8")


def _sections(markdown: str, level: str = "## ") -> dict[str, str]:
    """Heading text -> the text under it, for headings of one level."""
    out, name = {}, None
    for line in markdown.splitlines():
        if line.startswith(level):
            name = line[len(level) :].strip()
            out[name] = ""
        elif name is not None:
            out[name] += line + "\n"
    return out


def test_generated_reference_pages_are_current(gen):
    stale = [str(p.relative_to(ROOT)) for p in gen.stale_pages()]
    assert not stale, f"stale generated pages: {', '.join(stale)}; regenerate with `make docs-gen` (python -m docs.gen)"


def test_every_command_and_option_is_in_the_cli_reference(gen, cli_tree):
    sections = _sections(_page("reference/cli.md"))
    problems = []
    for path, command in gen.walk_commands(cli_tree):
        name = " ".join(path)
        if name not in sections:
            problems.append(f"command '{name}' has no section in docs/reference/cli.md")
            continue
        if not (command.help or "").strip():
            problems.append(f"command '{name}' has no help text")
        for param in gen.documented_params(command):
            shown = gen.param_names(param)
            if f"`{shown}`" not in sections[name]:
                problems.append(f"'{name}' {shown} is not in docs/reference/cli.md")
            if param.param_type_name == "option" and not (getattr(param, "help", None) or "").strip():
                problems.append(f"'{name}' {shown} has no help text")
    assert not problems, "undocumented CLI (add help=..., then `make docs-gen`):\n" + "\n".join(problems)


def test_plugin_commands_are_walked(gen, cli_tree):
    # The reference must include what plugins add (the factory plugin's `data factory`),
    # not only the core's commands.
    names = {" ".join(path) for path, _ in gen.walk_commands(cli_tree)}
    assert {"adbench run", "adbench data", "adbench data factory"} <= names


def test_every_hook_is_in_the_plugin_guide():
    from iadbench import hookspecs

    hooks = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "iadbench_spec"))
    assert len(hooks) >= 5  # the five of today: the check must see them to mean anything
    headings = _sections(_page("plugins.md"), "### ")
    missing = [h for h in hooks if h not in headings]
    assert not missing, f"hooks without a '### NAME' section in docs/plugins.md: {', '.join(missing)}"


def _registry():
    from iadbench.plugins import load_registry

    return load_registry()


def test_every_metric_is_documented():
    metrics = sorted(_registry().metrics)
    assert "image_auroc" in metrics and "aupro" in metrics
    page = _page("reference/metrics.md")
    missing = [m for m in metrics if f"| `{m}` |" not in page]
    assert not missing, f"metrics missing from docs/reference/metrics.md: {', '.join(missing)} (make docs-gen)"


def test_every_detector_is_documented():
    detectors = _registry().detectors
    reference = _page("reference/detectors.md")
    missing = [d for d in sorted(detectors) if f"## {d}\n" not in reference]
    assert not missing, f"detectors missing from docs/reference/detectors.md: {', '.join(missing)} (make docs-gen)"
    # The in-house ones are described in words and have a history; anomalib's share a section.
    ours = [d for d, spec in detectors.items() if spec.plugin != "anomalib"]
    for page in ("detectors.md", "history.md"):
        text = _page(page)
        missing = [d for d in sorted(ours) if f"`{d}`" not in text and f"## {d}" not in text]
        assert not missing, f"detectors not described in docs/{page}: {', '.join(missing)}"


def test_every_record_field_is_explained():
    # The generated reference lists the fields and types; the guide says what each means.
    from iadbench.results.record import json_schema

    fields = sorted(json_schema()["properties"])
    table = [line for line in _page("guide/results.md").splitlines() if line.startswith("| `")]
    missing = [f for f in fields if not any(f"`{f}`" in line.split(" | ")[0] for line in table)]
    assert not missing, f"record fields not explained in docs/guide/results.md's table: {', '.join(missing)}"


def test_every_environment_variable_is_documented():
    used = set()
    for folder in ("harness", "plugins", "datasets"):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r"\bIADBENCH_[A-Z_]*[A-Z]\b", path.read_text(encoding="utf-8")))
    assert "IADBENCH_DATA_ROOT" in used
    page = _page("reference/environment.md")
    missing = sorted(v for v in used if f"`{v}" not in page)
    assert not missing, f"environment variables missing from docs/reference/environment.md: {', '.join(missing)}"


def test_architecture_page_names_every_core_module():
    core = ROOT / "harness" / "iadbench"
    names = {p.stem for p in core.glob("*.py") if not p.stem.startswith("__")}
    names |= {p.name + "/" for p in core.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    page = _page("architecture.md")
    missing = sorted(n for n in names if f"`{n}`" not in page)
    assert not missing, f"core modules the architecture page does not name: {', '.join(missing)} (docs/architecture.md)"


def test_readme_is_at_most_150_lines(capsys):
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    message = f"README.md: {lines} lines (at most {README_MAX_LINES}; the rest belongs in docs/)"
    with capsys.disabled():  # printed without -s (under xdist a worker's output is not shown)
        print(f"\n{message}")
    assert lines <= README_MAX_LINES, message


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert any(t.startswith("docs/") for t in local), "the README links into docs/"
    broken = sorted({t for t in local if t and not (ROOT / t).exists()})
    assert not broken, f"README links to missing files: {', '.join(broken)}"


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()
    # the example plugin's code is included from the tested file, not copied
    assert "MedianDistance" in (tmp_path / "site" / "plugins" / "index.html").read_text(encoding="utf-8")
