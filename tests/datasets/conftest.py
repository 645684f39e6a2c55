"""Fixtures of the dataset tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def isolated_env(monkeypatch, tmp_path):
    """No data root or cache from the developer's environment leaks into a test."""
    monkeypatch.delenv("IADBENCH_DATA_ROOT", raising=False)
    monkeypatch.delenv("IADBENCH_MAX_PIXELS", raising=False)
    monkeypatch.setenv("IADBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path
