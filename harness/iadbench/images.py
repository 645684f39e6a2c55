"""Reading images and masks the way real folders hold them, with one-line errors.

Every image becomes uint8 RGB at the detector's input size; masks become bool at the
same size (nearest neighbour, so they stay binary).

What is accepted: PNG, JPEG, BMP, TIFF, WebP and GIF in any PIL mode -- greyscale,
RGBA (alpha dropped), palette, CMYK, 16-bit (scaled to 8-bit by a fixed /257, so every
image of a dataset keeps the same intensity scale) -- at any size.

Mask rule: a pixel is defective when any channel is non-zero, except in JPEG masks,
where compression smears edges and adds noise, so there it must reach half range
(>= 128). This accepts 0/255 masks (MVTec AD), 0/1 or instance-id masks (VisA) and
coloured masks drawn in an editor.

Every failure is an ImageError whose text is ``<path>: <what is wrong>``: missing,
zero-byte, truncated, corrupt or non-image files, and images over the pixel limit
(``IADBENCH_MAX_PIXELS``, default 64 megapixels) which guards against decompression
bombs before any pixel is decoded. Bytes (an upload) are decoded by the same rules
(``decode_image_bytes``); ImageTooLarge and NotAnImage tell those two failures apart.

One path from pixels to a detector's input: ``prepare_image`` (any uint8 image, resized
with PIL bilinear) serves dataset files (``load_image``), ``adbench predict`` and the web
service alike, so an image scores the same whichever way it came in.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from iadbench.errors import ImageError, InputError
from iadbench.types import Sample

Size = tuple[int, int]  # (height, width)

DEFAULT_MAX_PIXELS = 64_000_000


def max_pixels() -> int:
    """The largest width*height accepted (env ``IADBENCH_MAX_PIXELS`` overrides)."""
    value = os.environ.get("IADBENCH_MAX_PIXELS", "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        raise ImageError(f"IADBENCH_MAX_PIXELS must be an integer, got {value!r}") from None
    return limit


class ImageTooLarge(ImageError):
    """Over the pixel limit (a web service answers 413)."""


class NotAnImage(ImageError):
    """No known image format (a web service answers 415)."""


def _open(path: Path, decode: bool = True) -> Image.Image:
    """Open ``path`` (header only unless ``decode``), mapping every failure to ImageError."""
    try:
        if path.is_dir():
            raise ImageError("is a folder, not an image file", path)
        if path.stat().st_size == 0:
            raise ImageError("empty file (0 bytes)", path)
    except FileNotFoundError:
        raise ImageError("file not found", path) from None
    except OSError as exc:
        raise ImageError(f"cannot read ({exc.strerror or exc})", path) from exc
    return _open_source(path, path, decode, "file", " raise IADBENCH_MAX_PIXELS if it is real")


def _open_source(source, where, decode: bool, noun: str, hint: str = "") -> Image.Image:
    """Open a path or a binary stream; failures are ImageErrors naming ``where``."""
    limit = max_pixels()
    try:
        with warnings.catch_warnings():
            # PIL only warns between its limit and twice it; we refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source)
            width, height = img.size
            if width * height > limit:
                img.close()
                raise ImageTooLarge(
                    f"image is {width}x{height} = {width * height} pixels, over the limit of "
                    f"{limit} (a decompression bomb?{hint})",
                    where,
                )
            if width == 0 or height == 0:
                raise ImageError(f"image has no pixels ({width}x{height})", where)
            if decode:
                img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image is over the pixel limit (decompression bomb?): {str(exc)[:160]}", where) from None
    except UnidentifiedImageError:
        raise NotAnImage("not an image (no known image format)", where) from None
    except OSError as exc:
        text = str(exc)
        if "truncated" in text:
            raise ImageError(f"truncated image (the {noun} ends early)", where) from None
        raise ImageError(f"corrupt image ({text[:160]})", where) from None
    except Exception as exc:  # decoders raise SyntaxError, ValueError, struct.error...
        raise ImageError(f"corrupt image ({type(exc).__name__}: {str(exc)[:160]})", where) from None
    return img


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels; validates that the
    file is an image under the pixel limit."""
    img = _open(Path(path), decode=False)
    try:
        return img.size
    finally:
        img.close()


def check_mask_size(image_path: str | Path, mask_path: str | Path) -> None:
    """Raise ImageError naming the mask when its size differs from its image's."""
    image_wh = image_size(image_path)
    mask_wh = image_size(mask_path)
    if image_wh != mask_wh:
        raise ImageError(
            f"mask is {mask_wh[0]}x{mask_wh[1]} but its image {Path(image_path).name} is "
            f"{image_wh[0]}x{image_wh[1]}",
            mask_path,
        )


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img)
        if img.mode != "F":
            arr = arr.astype(np.float64) / 257.0  # 16-bit full range -> 8-bit
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # PIL wants palette transparency expanded first
    return img if img.mode == "RGB" else img.convert("RGB")


def _rgb_array(img: Image.Image, where) -> np.ndarray:
    try:
        return np.asarray(_to_rgb(img), dtype=np.uint8)
    except Exception as exc:
        raise ImageError(f"cannot convert image of mode {img.mode} ({exc})", where) from exc


def decode_image(path: str | Path) -> np.ndarray:
    """The image at its native size as uint8 RGB (H, W, 3)."""
    path = Path(path)
    return _rgb_array(_open(path), path)


def decode_image_bytes(data: bytes, name: str = "upload") -> np.ndarray:
    """Encoded image bytes (an upload) as uint8 RGB (H, W, 3) at native size, by the
    same rules as ``decode_image``; errors name ``name``."""
    if not data:
        raise ImageError("empty upload (0 bytes)", name)
    return _rgb_array(_open_source(io.BytesIO(data), name, True, "data"), name)


def decode_mask(path: str | Path) -> np.ndarray:
    """The mask at its native size as bool (H, W), by the module's mask rule."""
    path = Path(path)
    img = _open(path)
    lossy = img.format in ("JPEG", "MPO")
    if img.mode == "P":
        img = img.convert("RGBA")
    arr = np.asarray(img)
    if arr.ndim == 3:
        if arr.shape[2] in (2, 4):  # drop alpha: what counts is the drawn colour
            arr = arr[..., :-1]
        arr = arr.max(axis=2)
    if arr.dtype == bool:
        return arr.copy()
    if lossy:
        return arr >= 128
    return arr > 0


def crop_box(shape: tuple[int, int], crop: float) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the centred window that keeps ``crop`` of an image
    of ``shape`` on each side (``crop`` 1: the whole image)."""
    h, w = int(shape[0]), int(shape[1])
    ch, cw = max(1, round(h * crop)), max(1, round(w * crop))
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def prepare_image(image: np.ndarray, size: Size, crop: float = 1.0) -> np.ndarray:
    """A uint8 image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) (alpha dropped) as RGB
    (size[0], size[1], 3), resized with PIL bilinear: the one resize between any image
    and a detector's input. ``crop`` < 1 (``--protocol paper``: 224/256) resizes to
    ``size / crop`` first and keeps the centre ``size``, as the PaDiM and PatchCore
    papers prepare MVTec AD images (resize 256, centre crop 224)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise InputError(f"images must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"images must be (H, W) or (H, W, 3), got shape {arr.shape}")
    full = _uncropped(size, crop)
    if arr.shape[:2] != full:
        arr = np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize((full[1], full[0]), Image.BILINEAR),
                         dtype=np.uint8)
    if full != tuple(size):
        top, left, _, _ = crop_box(full, crop)
        arr = arr[top : top + size[0], left : left + size[1]]
    return np.ascontiguousarray(arr)


def _uncropped(size: Size, crop: float) -> tuple[int, int]:
    """The size an image is resized to before its centre ``size`` is kept."""
    if not 0 < crop <= 1:
        raise InputError(f"crop must be in (0, 1], got {crop}")
    if crop == 1:
        return (int(size[0]), int(size[1]))
    return (round(size[0] / crop), round(size[1] / crop))


def load_image(path: str | Path, size: Size, crop: float = 1.0) -> np.ndarray:
    """The image as uint8 RGB (size[0], size[1], 3) (``crop``: see ``prepare_image``)."""
    return prepare_image(decode_image(path), size, crop)


def resize_mask(mask: np.ndarray, size: Size, crop: float = 1.0) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to (height, width), cropped as its image
    is (``prepare_image``)."""
    full = _uncropped(size, crop)
    if mask.shape != full:
        img = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
        mask = np.asarray(img.resize((full[1], full[0]), Image.NEAREST)) > 0
    if full != tuple(size):
        top, left, _, _ = crop_box(full, crop)
        mask = mask[top : top + size[0], left : left + size[1]]
    return mask


def load_mask(path: str | Path, size: Size, crop: float = 1.0) -> np.ndarray:
    """The mask as bool (size[0], size[1]), binarised by the mask rule."""
    return resize_mask(decode_mask(path), size, crop)


def load_images(samples: Sequence[Sample], size: Size, crop: float = 1.0) -> np.ndarray:
    out = np.empty((len(samples), size[0], size[1], 3), dtype=np.uint8)
    for i, s in enumerate(samples):
        out[i] = load_image(s.path, size, crop)
    return out


def load_masks(samples: Sequence[Sample], size: Size, crop: float = 1.0) -> np.ndarray:
    """Masks for a test list; good images (and defects without a mask) are all-False.

    A mask whose native size differs from its image's is an error, not resized away:
    it almost always means the wrong mask was paired with the image.
    """
    out = np.zeros((len(samples), size[0], size[1]), dtype=bool)
    for i, s in enumerate(samples):
        if s.mask_path is not None:
            check_mask_size(s.path, s.mask_path)
            out[i] = load_mask(s.mask_path, size, crop)
    return out
