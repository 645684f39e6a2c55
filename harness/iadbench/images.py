"""Reading images and masks the way real folders hold them, with one-line errors.

Every image becomes uint8 RGB at the detector's input size; masks become bool at the
same size (nearest neighbour, so they stay binary).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from iadbench.errors import ImageError
from iadbench.types import Sample

Size = tuple[int, int]  # (height, width)


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise ImageError("file not found", path) from None
    except Exception as exc:
        raise ImageError(f"cannot read image ({type(exc).__name__}: {exc})", path) from exc
    return img


def load_image(path: str | Path, size: Size) -> np.ndarray:
    img = _open(Path(path)).convert("RGB")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def load_mask(path: str | Path, size: Size) -> np.ndarray:
    img = _open(Path(path)).convert("L")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.NEAREST)
    return np.asarray(img) > 0


def load_images(samples: Sequence[Sample], size: Size) -> np.ndarray:
    out = np.empty((len(samples), size[0], size[1], 3), dtype=np.uint8)
    for i, s in enumerate(samples):
        out[i] = load_image(s.path, size)
    return out


def load_masks(samples: Sequence[Sample], size: Size) -> np.ndarray:
    """Masks for a test list; good images (and defects without a mask) are all-False."""
    out = np.zeros((len(samples), size[0], size[1]), dtype=bool)
    for i, s in enumerate(samples):
        if s.mask_path is not None:
            out[i] = load_mask(s.mask_path, size)
    return out
