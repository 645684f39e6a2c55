"""Image and mask loading: the formats real folders hold, and every kind of bad file."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from dsbuild import mask, png
from PIL import Image

from iadbench.errors import ImageError
from iadbench.images import (
    check_mask_size,
    decode_mask,
    image_size,
    load_image,
    load_mask,
    load_masks,
)
from iadbench.types import Sample


def test_greyscale_becomes_rgb_at_the_requested_size(tmp_path):
    p = png(tmp_path / "g.png", size=(50, 30), value=77, mode="L")
    img = load_image(p, (64, 40))
    assert img.shape == (64, 40, 3) and img.dtype == np.uint8
    assert (img == 77).all()


def test_rgba_drops_alpha_and_keeps_colour(tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(p)
    assert load_image(p, (8, 8))[0, 0].tolist() == [10, 20, 30]


def test_palette_with_transparency(tmp_path):
    p = tmp_path / "p.png"
    img = Image.new("P", (8, 8), 1)
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    img.info["transparency"] = 0
    img.save(p, transparency=0)
    assert load_image(p, (8, 8))[3, 3].tolist() == [200, 100, 50]


def test_16_bit_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 32896, 65535, 1000]], dtype=np.uint16)
    p = tmp_path / "d16.png"
    Image.fromarray(arr).save(p)
    assert Image.open(p).mode.startswith("I")
    out = load_image(p, (1, 4))[0, :, 0]
    assert out.tolist() == [0, 128, 255, 4]


def test_jpeg_loads(tmp_path):
    p = png(tmp_path / "c.jpg", size=(16, 16), value=90, fmt="JPEG")
    assert abs(int(load_image(p, (16, 16)).mean()) - 90) <= 2


@pytest.mark.parametrize(
    "values, expected",
    [((0, 255), [False, True]), ((0, 1), [False, True]), ((0, 3), [False, True])],  # 0/1, VisA ids
)
def test_lossless_mask_any_nonzero_is_defect(tmp_path, values, expected):
    p = tmp_path / "m.png"
    Image.fromarray(np.array([values], dtype=np.uint8)).save(p)
    assert decode_mask(p)[0].tolist() == expected


def test_jpeg_mask_ignores_compression_noise(tmp_path):
    arr = np.zeros((32, 32), np.uint8)
    arr[9:21, 11:23] = 255  # off the 8x8 JPEG blocks, so it rings
    p = tmp_path / "m.jpg"
    Image.fromarray(arr).save(p, quality=50)
    raw = np.asarray(Image.open(p))
    assert ((raw > 0) & (arr == 0)).any(), "the JPEG should have noise outside the square"
    m = decode_mask(p)
    assert m[11:19, 13:21].all() and not m[:5].any() and not m[25:].any()


def test_coloured_mask_from_an_editor(tmp_path):
    p = tmp_path / "m.png"
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[1, 1] = (255, 0, 0)
    Image.fromarray(arr).save(p)
    m = decode_mask(p)
    assert m[1, 1] and m.sum() == 1


def test_mask_resize_is_nearest_and_binary(tmp_path):
    p = mask(tmp_path / "m.png", size=(10, 10), box=(0, 0, 5, 10))  # left half
    m = load_mask(p, (4, 20))
    assert m.dtype == bool and m.shape == (4, 20)
    assert m[:, :10].all() and not m[:, 10:].any()


@pytest.mark.parametrize(
    "content, words",
    [(b"", "empty file"), (b"hello, I am text", "not an image"), (b"\x89PNG\r\n\x1a\nrubbish" * 3, "")],
)
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, content, words):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(ImageError) as err:
        load_image(p, (8, 8))
    text = str(err.value)
    assert text.startswith(f"{p}: ") and "\n" not in text and words in text


def test_truncated_image(tmp_path):
    p = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(p, (8, 8))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.png", (8, 8))
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path, (8, 8))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(ImageError, match="pixel"):
        load_image(p, (8, 8))


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    p = png(tmp_path / "x.png", size=(20, 20))
    monkeypatch.setenv("IADBENCH_MAX_PIXELS", "399")
    with pytest.raises(ImageError, match="over the limit of 399"):
        image_size(p)
    monkeypatch.setenv("IADBENCH_MAX_PIXELS", "400")
    assert image_size(p) == (20, 20)


def test_mask_size_mismatch_names_the_mask(tmp_path):
    img = png(tmp_path / "i.png", size=(32, 24))
    m = mask(tmp_path / "i_mask.png", size=(30, 24))
    with pytest.raises(ImageError) as err:
        check_mask_size(img, m)
    assert str(err.value).startswith(f"{m}: mask is 30x24 but its image i.png is 32x24")
    with pytest.raises(ImageError, match="mask is 30x24"):
        load_masks([Sample(path=img, label=1, defect_type="x", mask_path=m)], (8, 8))
    check_mask_size(img, mask(tmp_path / "ok.png", size=(32, 24)))  # no error
