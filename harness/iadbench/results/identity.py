"""Stable identities: the key of a cell and the setup a record belongs to."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_key(payload: dict[str, Any]) -> str:
    """16 hex digits of a JSON payload's SHA-256 (keys sorted), stable across runs."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def setup_id(detector: str | None, version: str | None, params: dict[str, Any] | None) -> str:
    """What makes two plan entries (or two records) the same setup: detector name,
    version and resolved params. Labels are display only and stay out."""
    return stable_key({"detector": detector, "version": version, "params": params or {}})


def row_label(label: str, k: int | None = None, unified: bool = False) -> str:
    """A row's name in tables: the plan's label, with the K labelled defects a learner
    trained on (each K of a sweep is its own row) and "(unified)" for one model per
    dataset. The runner's summary names cells by it, reports name records by it."""
    return label + (f" K={k}" if k is not None else "") + (" (unified)" if unified else "")
