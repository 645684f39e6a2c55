"""Values in [0, 1] to RGB through a matplotlib colormap (jet by default)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

DEFAULT_CMAP = "jet"


@lru_cache(maxsize=8)
def _lut(name: str) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return np.round(cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def colorize(values: np.ndarray, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """(H, W) values, clipped to [0, 1] (NaN shown as 0), as (H, W, 3) uint8."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    index = np.round(np.clip(v, 0.0, 1.0) * 255).astype(np.intp)
    return _lut(cmap)[index]
