"""PNG encoding: 8-bit pictures, and raw anomaly maps as 16-bit greyscale.

A raw map has no natural 16-bit scale, so it is stored linearly between its own
minimum and maximum (65,536 levels) and those two values go into PNG text chunks;
``read_map_png`` turns it back into raw values (within (max - min) / 65535).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from iadbench.errors import ImageError

_MIN_KEY, _MAX_KEY = "iadbench:map_min", "iadbench:map_max"


Z_RLE = 3  # zlib strategy: run-length matches only


def png_bytes(array: np.ndarray, compress_level: int = 6, strategy: int = -1) -> bytes:
    """PNG bytes of an (H, W) or (H, W, 3|4) uint8 array, or an (H, W) uint16 one
    (``compress_level`` 1 is fastest, 9 smallest; ``strategy`` a zlib strategy, -1 its
    default)."""
    array = np.ascontiguousarray(array)
    if array.dtype == np.uint16 and array.ndim == 2:
        img = Image.fromarray(array)
    elif array.dtype == np.uint8 and (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        img = Image.fromarray(array)
    else:
        raise ValueError(f"png_bytes takes uint8 (H,W[,3|4]) or uint16 (H,W), got {array.shape} {array.dtype}")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level, compress_type=strategy)
    return buf.getvalue()


def write_map_png(path: str | Path, amap: np.ndarray) -> Path:
    """Save a raw float map as a 16-bit PNG with its value range in text chunks."""
    amap = np.nan_to_num(np.asarray(amap, dtype=np.float64))
    lo, hi = float(amap.min()), float(amap.max())
    span = hi - lo if hi > lo else 1.0
    levels = np.round((amap - lo) / span * 65535).astype(np.uint16)
    info = PngInfo()
    info.add_text(_MIN_KEY, repr(lo))
    info.add_text(_MAX_KEY, repr(hi))
    path = Path(path)
    Image.fromarray(levels).save(path, format="PNG", pnginfo=info)
    return path


def read_map_png(path: str | Path) -> np.ndarray:
    """The raw map written by ``write_map_png`` as float32 (H, W)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            levels = np.asarray(img, dtype=np.float64)
            text = dict(getattr(img, "text", {}) or {})
    except OSError as exc:
        raise ImageError(f"cannot read map PNG ({exc})", path) from None
    if _MIN_KEY not in text or _MAX_KEY not in text:
        raise ImageError("not an iadbench map PNG (no value range recorded)", path)
    lo, hi = float(text[_MIN_KEY]), float(text[_MAX_KEY])
    span = hi - lo if hi > lo else 1.0
    return (lo + levels / 65535.0 * span).astype(np.float32)
