"""Builders of small dataset trees on disk (imported by the dataset tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def png(path: Path, size=(32, 24), value: int = 128, mode: str = "RGB", fmt: str | None = None) -> Path:
    """Write a flat image of ``size`` (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode in ("L", "I;16", "I") else (value,) * len(mode)
    Image.new(mode, size, colour).save(path, format=fmt)
    return path


def mask(path: Path, size=(32, 24), box=(4, 4, 12, 12), value: int = 255) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = value
    Image.fromarray(arr).save(path)
    return path


def make_mvtec_category(root: Path, n_train=4, n_good=2, defects=None, masks=True) -> Path:
    """An MVTec-like category: train/good, test/good, test/<defect>, ground_truth/<defect>."""
    defects = defects or {"scratch": 2, "dent": 1}
    for i in range(n_train):
        png(root / "train" / "good" / f"{i:03d}.png", value=100 + i)
    for i in range(n_good):
        png(root / "test" / "good" / f"{i:03d}.png", value=120 + i)
    for kind, n in defects.items():
        for i in range(n):
            png(root / "test" / kind / f"{i:03d}.png", value=200)
            if masks:
                mask(root / "ground_truth" / kind / f"{i:03d}_mask.png")
    return root


def make_good_defect(root: Path, n_good=10, defects=None, masks=False) -> Path:
    defects = defects or {"scratch": 2, "dent": 2}
    for i in range(n_good):
        png(root / "good" / f"img{i}.png", value=100 + i)
    for kind, n in defects.items():
        for i in range(n):
            png(root / kind / f"d{i}.jpg", value=200, fmt="JPEG")
            if masks:
                mask(root / "ground_truth" / kind / f"d{i}.png")
    return root


