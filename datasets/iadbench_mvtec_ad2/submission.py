"""The MVTec AD 2 evaluation server's submission folder, from ``adbench predict`` maps.

The private test sets have no public labels: they are scored here and evaluated on the
server (https://benchmark.mvtec.com/). Two steps, per category and test set::

    adbench predict MODEL <root>/<category>/test_private --out MAPS
    adbench data ad2-submission MAPS --model MODEL --category <category> --out SUBMISSION

``adbench predict --out`` writes each image's raw map at the image's own size as
``<stem>_map.png`` (16-bit levels, the value range in the PNG's text chunks); this
writes, for each::

    SUBMISSION/anomaly_images/<category>/<test_set>/<stem>.tiff              float32 map
    SUBMISSION/anomaly_images_thresholded/<category>/<test_set>/<stem>.png   0 / 255, for SegF1

The binary map flags pixels above the model's calibrated pixel threshold (model.json's
``pixel_threshold``, or ``--pixel-threshold``), as the seg_f1 metric does on test_public.
The folder names follow the server's instructions as we recall them; anomalib documents
no submission layout, so check them against the server's page before uploading.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from iadbench.api import InputError

MAP_SUFFIX = "_map.png"
MAPS, THRESHOLDED = "anomaly_images", "anomaly_images_thresholded"
# How `adbench predict` records a 16-bit map's value range (iadbench.visual.png).
RANGE_KEYS = ("iadbench:map_min", "iadbench:map_max")


def read_map(path: Path) -> np.ndarray:
    """A map written by ``adbench predict --out`` as float32 (H, W)."""
    try:
        with Image.open(path) as img:
            levels = np.asarray(img, dtype=np.float64)
            text = dict(getattr(img, "text", {}) or {})
    except OSError as exc:
        raise InputError(f"cannot read map ({exc})", path) from None
    if not all(k in text for k in RANGE_KEYS):
        raise InputError("not a map written by adbench predict --out (no value range recorded)", path)
    lo, hi = (float(text[k]) for k in RANGE_KEYS)
    span = hi - lo if hi > lo else 1.0
    return (lo + levels / 65535.0 * span).astype(np.float32)


def model_pixel_threshold(model_dir: Path) -> float:
    """The calibrated pixel threshold in a model folder's model.json."""
    path = Path(model_dir) / "model.json"
    try:
        value = json.loads(path.read_text()).get("pixel_threshold")
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the model's pixel threshold ({exc})", path) from None
    if value is None or not math.isfinite(float(value)):
        raise InputError("the model has no pixel threshold (too few good images calibrated it); "
                         "pass --pixel-threshold", path)
    return float(value)


def write_submission(maps_dir: Path, out: Path, category: str, test_set: str, pixel_threshold: float) -> int:
    """Write every ``<stem>_map.png`` under ``maps_dir`` into the submission layout;
    returns how many images were written."""
    maps = sorted(Path(maps_dir).rglob(f"*{MAP_SUFFIX}"))
    if not maps:
        raise InputError(f"no *{MAP_SUFFIX} files (write them with adbench predict MODEL IMAGES --out DIR)", maps_dir)
    if not math.isfinite(pixel_threshold):
        raise InputError(f"pixel threshold must be a finite number, got {pixel_threshold}")
    continuous = Path(out) / MAPS / category / test_set
    binary = Path(out) / THRESHOLDED / category / test_set
    continuous.mkdir(parents=True, exist_ok=True)
    binary.mkdir(parents=True, exist_ok=True)
    stems: dict[str, Path] = {}
    for path in maps:
        stem = path.name[: -len(MAP_SUFFIX)]
        if stem in stems:
            raise InputError(f"two maps for image '{stem}' (also {stems[stem]})", path)
        stems[stem] = path
        amap = read_map(path)
        Image.fromarray(amap, mode="F").save(continuous / f"{stem}.tiff", format="TIFF")
        Image.fromarray(np.where(amap > pixel_threshold, 255, 0).astype(np.uint8)).save(binary / f"{stem}.png")
    return len(maps)
