"""The import contracts in pyproject.toml ([tool.importlinter]): the core imports no
plugin, and plugins import only the public core (``iadbench.api.PUBLIC_MODULES``).
``lint-imports`` runs here as CI runs it, and on a throw-away plugin that imports
private modules, to show that the contract catches them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from iadbench.api import PUBLIC_MODULES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PLUGIN = ROOT / "tests" / "example_plugin"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PLUGINS_CONTRACT = "plugins-import-public-core"
CORE_CONTRACT = "core-imports-no-plugin"


def importlinter_config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]


def contract(config: dict, contract_id: str) -> dict:
    (found,) = [c for c in config["contracts"] if c["id"] == contract_id]
    return found


def lint_imports(config_file: Path, *python_path: Path) -> subprocess.CompletedProcess:
    # The source folders first: a plugin package added since the last `pip install -e` counts too.
    source = [ROOT / "harness", ROOT / "plugins", ROOT / "datasets"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, [*source, *python_path]), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(config_file)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def write_toml(config: dict, path: Path) -> None:
    """The [tool.importlinter] table as TOML (JSON strings, lists and booleans are TOML)."""
    lines = ["[tool.importlinter]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in config.items() if key != "contracts"]
    for item in config["contracts"]:
        lines += ["", "[[tool.importlinter.contracts]]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in item.items()]
    path.write_text("\n".join(lines) + "\n")


def core_modules() -> set[str]:
    """Every module of the core, named from its file (independent of import-linter)."""
    package = ROOT / "harness" / "iadbench"
    names = set()
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.add(".".join(parts))
    return names


def covered_by(module: str, expression: str) -> bool:
    """Whether a forbidden-module expression of import-linter (``*`` one name, ``**`` any
    number, packages with their descendants) covers ``module``."""
    pattern = ".".join({"*": r"[^.]+", "**": r".+"}.get(part, re.escape(part)) for part in expression.split("."))
    parts = module.split(".")
    return any(re.fullmatch(pattern, ".".join(parts[:n])) for n in range(1, len(parts) + 1))


def test_the_repository_keeps_its_import_contracts():
    result = lint_imports(ROOT / "pyproject.toml")
    n = len(importlinter_config()["contracts"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {n} kept, 0 broken." in result.stdout


def test_a_plugin_importing_private_modules_breaks_the_contract(tmp_path):
    probe = tmp_path / "iadbench_probe"
    probe.mkdir()
    (probe / "__init__.py").write_text("")
    (probe / "plugin.py").write_text(
        "import iadbench.report\n"  # an internal package
        "from iadbench.api import hookimpl\n"  # public
        "from iadbench.backbones import canonical_arch\n"  # a public package
        "from iadbench.backbones.weights import resolve_weights\n"  # a module of a public package
        "\n\n"
        "def run():\n"
        "    from iadbench.types import Sample  # an internal module, imported lazily\n"
        "\n"
        "    return Sample, hookimpl, canonical_arch, resolve_weights, iadbench.report\n"
    )
    # The repository's contracts, with the probe and the example third-party plugin added as plugins.
    config = importlinter_config()
    config["root_packages"] = [*config["root_packages"], "iadbench_probe", "iadbench_example"]
    contract(config, PLUGINS_CONTRACT)["source_modules"] += ["iadbench_probe", "iadbench_example"]
    contract(config, CORE_CONTRACT)["forbidden_modules"] += ["iadbench_probe", "iadbench_example"]
    write_toml(config, tmp_path / "contracts.toml")

    result = lint_imports(tmp_path / "contracts.toml", tmp_path, EXAMPLE_PLUGIN)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert f"Contracts: {len(config['contracts']) - 1} kept, 1 broken." in out
    violations = sorted(re.findall(r"^-\s+(\S+ -> \S+) \(l\.(\d+)\)", out, flags=re.M))
    assert violations == [
        ("iadbench_probe.plugin -> iadbench.backbones.weights", "4"),
        ("iadbench_probe.plugin -> iadbench.report", "1"),
        ("iadbench_probe.plugin -> iadbench.types", "8"),
    ], out  # the public imports pass, and so does the example plugin


def test_every_built_in_plugin_is_held_to_the_contracts():
    with open(ROOT / "pyproject.toml", "rb") as f:
        entry_points = tomllib.load(f)["project"]["entry-points"]["iadbench"]
    # the core's own entry point (the local executor) is part of the core, not a plugin
    plugins = {target.split(".")[0] for target in entry_points.values()} - {"iadbench"}
    config = importlinter_config()
    lists = {
        "root_packages": config["root_packages"],
        f"{PLUGINS_CONTRACT} source_modules": contract(config, PLUGINS_CONTRACT)["source_modules"],
        f"{CORE_CONTRACT} forbidden_modules": contract(config, CORE_CONTRACT)["forbidden_modules"],
    }
    for where, names in lists.items():
        assert plugins <= set(names), f"pyproject.toml's [tool.importlinter] {where} lacks {sorted(plugins - set(names))}"


def test_every_core_module_is_public_or_forbidden_to_plugins():
    modules = core_modules()
    forbidden = contract(importlinter_config(), PLUGINS_CONTRACT)["forbidden_modules"]
    public = set(PUBLIC_MODULES)
    assert public <= modules, f"PUBLIC_MODULES names no such module: {sorted(public - modules)}"
    # A public module's packages are imported with it, so they are neither.
    parents = {".".join(m.split(".")[:n]) for m in public for n in range(1, m.count(".") + 1)}
    wrongly_forbidden = sorted(m for m in public | parents if any(covered_by(m, e) for e in forbidden))
    assert not wrongly_forbidden, f"public modules forbidden in pyproject.toml: {wrongly_forbidden}"
    unclassified = sorted(m for m in modules - public - parents if not any(covered_by(m, e) for e in forbidden))
    assert not unclassified, (
        f"core modules neither public nor forbidden to plugins: {unclassified}; add each to "
        "iadbench.api.PUBLIC_MODULES or to forbidden_modules of the plugins contract in pyproject.toml"
    )


def test_covered_by_reads_expressions_as_import_linter_does():
    assert covered_by("iadbench.runner.plan", "iadbench.runner")
    assert not covered_by("iadbench.runners", "iadbench.runner")
    assert covered_by("iadbench.backbones.weights", "iadbench.backbones.*")
    assert not covered_by("iadbench.backbones", "iadbench.backbones.*")
    assert covered_by("iadbench.a.b.c", "iadbench.**")


def test_the_public_modules_are_documented():
    import iadbench.api

    missing = [m for m in PUBLIC_MODULES if f"``{m}``" not in iadbench.api.__doc__]
    assert not missing, f"iadbench.api's docstring does not name {missing}"
    guide = (ROOT / "docs" / "plugins.md").read_text()
    section = guide[guide.index("## What a plugin may import") :]
    section = section[: section.index("\n## ", 1)]
    assert "iadbench.api.PUBLIC_MODULES" in section
    undocumented = [m for m in PUBLIC_MODULES if f"`{m}`" not in section and f"`.{m.rsplit('.', 1)[-1]}`" not in section]
    assert not undocumented, f"the plugin guide (docs/plugins.md) does not name {undocumented}"
