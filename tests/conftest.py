"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def mvtec_root() -> Path:
    """The MVTec AD root holding bottle/ ($IADBENCH_MVTEC_ROOT, else ../shared/data/mvtec_ad)."""
    root = Path(os.environ.get("IADBENCH_MVTEC_ROOT") or REPO.parent / "shared" / "data" / "mvtec_ad")
    if not (root / "bottle" / "train" / "good").is_dir():
        pytest.skip(f"MVTec AD bottle not found under {root} (set IADBENCH_MVTEC_ROOT)")
    return root
