"""The shape of the core and its boundary with the plugins, read from the source.

    python -m bench.architecture [--root REPO] [--verbose]

Prints: the lines of the core (harness/iadbench); the core modules that plugins
(plugins/, datasets/, tests/example_plugin) import and the names they take from each;
and the import cycles inside the core, as strongly connected components of two
graphs: one node per module, and one node per top-level unit (a subpackage or a
top module of ``iadbench``). Imports inside functions count (a lazy import hides a
cycle from Python, not from the design); imports under ``if TYPE_CHECKING:`` do not.
Static only: nothing is imported, so ``--root`` may point at any checkout.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

CORE = "iadbench"
PLUGIN_DIRS = ("plugins", "datasets", "tests/example_plugin")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module
    names: tuple[str, ...]  # names taken with ``from target import ...``; empty for ``import target``
    line: int
    lazy: bool  # inside a function


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under a package folder."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_imports(node: ast.AST, in_function: bool = False):
    """(import node, lazy) for every import, skipping TYPE_CHECKING blocks."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for sub in child.orelse:
                yield from _walk_imports(sub, in_function)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function
        inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk_imports(child, inner)


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    """Imports of iadbench modules in one file, each resolved to the module it names:
    ``from pkg import sub`` names the module ``pkg.sub`` when that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out = []
    for node, lazy in _walk_imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == CORE or alias.name.startswith(CORE + "."):
                    out.append(Import(module, alias.name, (), node.lineno, lazy))
            continue
        base = node.module or ""
        if node.level:  # relative: resolve against the importing module's package
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        if not (base == CORE or base.startswith(CORE + ".")):
            continue
        plain = []
        for alias in node.names:
            if f"{base}.{alias.name}" in known:
                out.append(Import(module, f"{base}.{alias.name}", (), node.lineno, lazy))
            else:
                plain.append(alias.name)
        if plain:
            out.append(Import(module, base, tuple(plain), node.lineno, lazy))
    return out


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components of more than one node, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def unit(module: str) -> str:
    """The top-level unit of a core module: ``iadbench.report.summary`` -> ``report``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(iadbench)"


def short(module: str) -> str:
    return module.removeprefix(CORE + ".")


def report(root: Path, verbose: bool) -> None:
    core_files = module_files(root / "harness" / CORE)
    known = set(core_files)
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in core_files.values())
    print(f"core: {len(core_files)} modules, {lines} lines (harness/{CORE})")

    # --- the plugin boundary -----------------------------------------------------------
    plugin_imports: list[tuple[str, Import]] = []
    for folder in PLUGIN_DIRS:
        base = root / folder
        if not base.is_dir():
            continue
        for package_dir in sorted(p.parent for p in base.glob("*/__init__.py")):
            for module, path in module_files(package_dir).items():
                plugin_imports += [(module, imp) for imp in imports_of(module, path, known)]
    names_by_target: dict[str, set[str]] = defaultdict(set)
    importers: dict[str, set[str]] = defaultdict(set)
    for module, imp in plugin_imports:
        names_by_target[imp.target].update(imp.names or ("<module>",))
        importers[imp.target].add(module.split(".")[0])
    n_names = sum(len(v) for v in names_by_target.values())
    print(f"plugins import {len(names_by_target)} core modules, {n_names} distinct (module, name) pairs:")
    for target in sorted(names_by_target):
        names = ", ".join(sorted(names_by_target[target]))
        print(f"  {short(target):24s} {len(names_by_target[target]):3d}  {names}")
        if verbose:
            print(f"  {'':24s}      by {', '.join(sorted(importers[target]))}")

    # --- cycles inside the core --------------------------------------------------------
    edges: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for module, path in core_files.items():
        for imp in imports_of(module, path, known):
            if imp.target != module and imp.target in known:
                edges[(module, imp.target)].append(imp)
    module_graph: dict[str, set[str]] = defaultdict(set)
    unit_graph: dict[str, set[str]] = defaultdict(set)
    for src, dst in edges:
        module_graph[src].add(dst)
        if unit(src) != unit(dst):
            unit_graph[unit(src)].add(unit(dst))
    for label, graph, name in (("module", module_graph, short), ("unit", unit_graph, str)):
        components = strongly_connected(graph)
        print(f"import cycles between {label}s: {len(components)} strongly connected component(s)")
        for component in components:
            print(f"  {' <-> '.join(name(m) for m in component)}")
    if verbose:  # the imports that close each module cycle
        for component in strongly_connected(module_graph):
            members = set(component)
            print(f"  edges of {{{', '.join(short(m) for m in component)}}}:")
            for (src, dst), imps in sorted(edges.items()):
                if src in members and dst in members:
                    where = ", ".join(f"{i.line}{' (lazy)' if i.lazy else ''}" for i in imps)
                    print(f"    {short(src)} -> {short(dst)}  line {where}")
        for component in strongly_connected(unit_graph):
            members = set(component)
            print(f"  edges of {{{', '.join(component)}}}:")
            for (src, dst), imps in sorted(edges.items()):
                if unit(src) != unit(dst) and unit(src) in members and unit(dst) in members:
                    where = ", ".join(f"{i.line}{' (lazy)' if i.lazy else ''}" for i in imps)
                    print(f"    {short(src)} -> {short(dst)}  line {where}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="repository checkout")
    parser.add_argument("--verbose", "-v", action="store_true", help="who imports what, and the imports closing each cycle")
    args = parser.parse_args(argv)
    if not (args.root / "harness" / CORE).is_dir():
        print(f"error: {args.root} has no harness/{CORE}", file=sys.stderr)
        return 2
    report(args.root, args.verbose)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
