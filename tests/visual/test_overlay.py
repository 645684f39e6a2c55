"""Overlays, colormap and PNG encoding, against matplotlib's colormap and PIL."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from iadbench.visual import OUTLINE_RGB, overlay, png_bytes, read_map_png, write_map_png
from iadbench.visual.overlay import ALPHA
from iadbench.visual.png import Z_RLE


def _jet(value: float) -> np.ndarray:
    return np.round(np.array(matplotlib.colormaps["jet"](value)[:3]) * 255)


def _blend(image_value: float, value: float) -> np.ndarray:
    return np.round(image_value * (1 - ALPHA) + _jet(value) * ALPHA)


def test_map_is_resized_to_the_image_and_coloured_on_the_fixed_range():
    image = np.full((40, 60, 3), 100, np.uint8)
    amap = np.zeros((8, 8), np.float32)
    amap[:, 4:] = 10.0  # right half hot at the detector's resolution
    out = overlay(image, amap, display_range=(0.0, 10.0))
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out[20, 2], _blend(100, 0.0), atol=1)  # left edge: bottom of jet
    np.testing.assert_allclose(out[20, 57], _blend(100, 1.0), atol=1)  # right edge: top of jet


def test_colour_scale_is_the_stored_range_not_the_image_own():
    image = np.full((16, 16, 3), 50, np.uint8)
    low = np.full((4, 4), 2.0, np.float32)
    low[0, 0] = 4.0
    high = low * 2.5  # same shape, hotter: a per-image stretch would draw both alike
    a = overlay(image, low, display_range=(0.0, 10.0))
    b = overlay(image, high, display_range=(0.0, 10.0))
    np.testing.assert_allclose(a[12, 12], _blend(50, 0.2), atol=1)
    np.testing.assert_allclose(b[12, 12], _blend(50, 0.5), atol=1)
    # values beyond the range saturate instead of rescaling the picture
    c = overlay(image, np.full((4, 4), 99.0, np.float32), display_range=(0.0, 10.0))
    np.testing.assert_allclose(c[5, 5], _blend(50, 1.0), atol=1)


def test_threshold_region_outline_is_white_and_encloses_the_region():
    image = np.full((64, 64, 3), 200, np.uint8)
    amap = np.zeros((16, 16), np.float32)
    amap[4:10, 6:12] = 5.0
    out = overlay(image, amap, display_range=(0.0, 5.0), threshold_map=2.5)
    white = (out == OUTLINE_RGB).all(axis=2)
    filled = ndimage.binary_fill_holes(white)
    # the region above 2.5 after the bilinear x4 resize, by PIL independently
    big = np.asarray(Image.fromarray(amap).resize((64, 64), Image.BILINEAR))
    region = big > 2.5
    iou = (filled & region).sum() / (filled | region).sum()
    assert iou > 0.95
    assert not (overlay(image, amap, (0.0, 5.0)) == OUTLINE_RGB).all(axis=2).any()  # no threshold, no outline


def test_png_bytes_and_16_bit_maps_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (7, 9, 3)).astype(np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(rgb)))), rgb)
    # the server's fast setting (level 1, run-length matches) is lossless too
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(rgb, 1, Z_RLE)))), rgb)
    amap = rng.normal(3.0, 2.0, (33, 21)).astype(np.float32)
    path = write_map_png(tmp_path / "m.png", amap)
    with Image.open(path) as img:
        assert img.mode.startswith("I") and np.asarray(img).max() == 65535
    back = read_map_png(path)
    assert np.abs(back - amap).max() <= (amap.max() - amap.min()) / 65535 + 1e-5
    with pytest.raises(ValueError):
        png_bytes(rgb.astype(np.float32))
