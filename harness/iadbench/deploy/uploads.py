"""The bad uploads a service must refuse (for its tests and its load test)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np


def png_of(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def bomb_header(width: int = 40000, height: int = 40000) -> bytes:
    """A PNG whose header declares width x height RGB pixels, with one tiny compressed
    row: what a decompression bomb looks like before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def bad_uploads(good_png: bytes, big_mb: int = 30) -> dict[str, tuple[bytes, set[int]]]:
    """name -> (body of the 'image' field, acceptable status codes)."""
    return {
        "empty": (b"", {422}),
        "text": (b"this is not an image, just some text\n" * 20, {415}),
        "truncated png": (good_png[: len(good_png) // 2], {422}),
        "bomb header": (bomb_header(), {413}),
        "30 MB body": (b"\0" * (big_mb * 1024 * 1024), {413}),
    }
