"""A heatmap over the image it came from, with the defect region outlined.

The colour scale is fixed by the model's stored display range (raw map values shown as
0 and 1, set on held-out good images), never stretched per image: a clean part stays
blue instead of showing its own noise in red.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from iadbench.visual.colormap import DEFAULT_CMAP, colorize

#: Outline colour. Jet blended at ALPHA always keeps one channel <= 255 * (1 - ALPHA),
#: so pure white marks outline pixels unambiguously (a reader can find them again).
OUTLINE_RGB = (255, 255, 255)
ALPHA = 0.45


def resize_map(amap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (height, width)."""
    amap = np.asarray(amap, dtype=np.float32)
    if amap.shape == tuple(size):
        return amap
    img = Image.fromarray(amap).resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def place_map(amap: np.ndarray, shape: tuple[int, int], crop: float = 1.0) -> np.ndarray:
    """A detector's map back on an image of ``shape``: resized over the centre window the
    detector saw (``crop``: iadbench.images.prepare_image); the border it never saw
    gets the map's lowest value, so it reads as "nothing found", not as a defect."""
    if crop >= 1:
        return resize_map(amap, shape)
    from iadbench.images import crop_box

    top, left, h, w = crop_box(shape, crop)
    out = np.full(tuple(int(v) for v in shape[:2]), float(np.min(amap)), dtype=np.float32)
    out[top : top + h, left : left + w] = resize_map(amap, (h, w))
    return out


def normalise(amap: np.ndarray, display_range: tuple[float, float]) -> np.ndarray:
    """Raw map values to the display scale: display_range[0] -> 0, [1] -> 1, clipped."""
    lo, hi = float(display_range[0]), float(display_range[1])
    span = hi - lo if hi > lo else 1.0
    return np.clip((amap - lo) / span, 0.0, 1.0)


def outline_mask(region: np.ndarray, width: int = 1) -> np.ndarray:
    """The inner boundary (``width`` pixels thick) of a boolean region."""
    region = np.asarray(region, dtype=bool)
    if not region.any():
        return region
    inner = ndimage.binary_erosion(region, iterations=width, border_value=0)
    return region & ~inner


def overlay(
    image_rgb_uint8: np.ndarray,
    amap: np.ndarray,
    display_range: tuple[float, float],
    threshold_map: float | None = None,
    *,
    cmap: str = DEFAULT_CMAP,
    alpha: float = ALPHA,
) -> np.ndarray:
    """The map, resized to the image, coloured on the fixed display range and alpha
    blended over the image; with ``threshold_map`` (a raw map value) the region where
    the map exceeds it is outlined in white. Returns (H, W, 3) uint8 at the image size.
    """
    image = np.asarray(image_rgb_uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"overlay needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    full = resize_map(amap, (h, w))
    heat = colorize(normalise(full, display_range), cmap).astype(np.float32)
    out = np.round(image.astype(np.float32) * (1.0 - alpha) + heat * alpha).astype(np.uint8)
    if threshold_map is not None and np.isfinite(threshold_map):
        width = max(1, round(min(h, w) / 256))
        edge = outline_mask(full > threshold_map, width)
        out[edge] = OUTLINE_RGB
    return out
