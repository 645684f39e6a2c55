"""Helpers shared by the tests: installed-plugin folders and the real CLI in a
subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def plugin_env(*sites: Path, allow: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a subprocess that sees ``sites`` as installed packages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IADBENCH_")}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, sites), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if allow is not None:
        env["IADBENCH_PLUGINS"] = allow
    env.update(extra)
    return env


def make_plugin_site(root: Path, name: str, source: str) -> Path:
    """A minimal installed plugin: a module plus a dist-info with its entry point."""
    site = root / f"site_{name}"
    site.mkdir()
    (site / f"{name}.py").write_text(textwrap.dedent(source))
    dist = site / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[iadbench]\n{name} = {name}\n")
    return site


def adbench(*args: str, env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "iadbench", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


def cli(*args: str) -> int:
    """Run the real CLI in this process (no interpreter start-up); its exit code."""
    from iadbench.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
