"""Shared fixtures."""

from __future__ import annotations

import os
import signal
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


@pytest.fixture
def ctrl_c_reaches_children():
    """For tests that press Ctrl-C (SIGINT) on a child ``adbench``. A shell starts its
    background jobs (``make test &``, a CI script run with ``&``) with SIGINT ignored,
    and an ignored signal stays ignored across fork and exec, so the child would never
    see the Ctrl-C (it went on to finish, or the test timed out). A handler here is not
    inherited (exec resets it to the default), so children start as from a terminal."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)
