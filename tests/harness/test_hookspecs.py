"""Every hookspec is documented in the plugin guide (docs/plugins.md) and implemented by some test plugin."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from iadbench import hookspecs

ROOT = Path(__file__).resolve().parents[2]


def hook_names() -> list[str]:
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")]


def test_every_hookspec_is_documented_and_exercised():
    names = hook_names()
    assert set(names) >= {"register_detectors", "register_datasets", "register_metrics", "register_commands"}
    guide = (ROOT / "docs" / "plugins.md").read_text()
    test_sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py") if p.name != "test_hookspecs.py")
    for name in names:
        assert f"`{name}" in guide, f"{name} is not documented in docs/plugins.md"
        assert re.search(rf"def {name}\(", test_sources), f"no test plugin implements {name}"
