"""JSON for the files the harness writes (records, results, model.json): numpy scalars
and arrays and paths become plain JSON values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def json_default(obj: Any) -> Any:
    """``json.dumps(..., default=json_default)``."""
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
