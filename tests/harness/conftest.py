"""Fixtures for the harness tests: the example third-party plugin installed by pip
into a temporary folder, and helpers to run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from iadbench.plugins import reset_registry

EXAMPLE_SRC = Path(__file__).resolve().parents[1] / "example_plugin"


@pytest.fixture(scope="session")
def example_site(tmp_path_factory) -> Path:
    """pip-install the example plugin (no deps, offline) into its own folder."""
    target = tmp_path_factory.mktemp("example_site")
    build = tmp_path_factory.mktemp("example_build")
    src = build / "src"
    subprocess.run(["cp", "-r", str(EXAMPLE_SRC), str(src)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(src)],
        check=True, capture_output=True,
    )
    assert list(target.glob("iadbench_example-*.dist-info")), "pip did not install the example plugin"
    return target


@pytest.fixture
def use_sites(monkeypatch):
    """Put folders on sys.path so importlib.metadata sees their entry points, and
    reload the registry before and after."""

    def add(*sites: Path) -> None:
        for site in sites:
            monkeypatch.syspath_prepend(str(site))
        reset_registry()

    for key in list(os.environ):
        if key.startswith("IADBENCH_") and key not in ("IADBENCH_CACHE",):
            monkeypatch.delenv(key)
    yield add
    reset_registry()


