"""The model folder: a fitted detector plus what using it needs.

One format serves ``adbench fit --out DIR``, a run cell's ``cells/<key>/model`` and
everything downstream (predict, export, serve)::

    config.json         the detector artifact (iadbench.detector, unchanged)
    model.safetensors
    model.json          threshold and its rule, pixel threshold, display range, info,
                        and the calibration scores they were fixed on

The threshold is on raw image scores, fixed on good training images' calibration
scores: each image scored by a model that did not fit it (out of fold, or held out
from fit; ``iadbench.calibration``). The display range is two raw map values shown as
0 and 1 on heatmaps, fixed from the same images' maps, so every image of a model is
drawn on one scale. The pixel threshold (the outline drawn on overlays) is the same
rule applied to the per-image maximum of those maps: a region is outlined where the map
rises above what good images' maps reach. The calibration scores and map maxima are
kept, so ``adbench threshold`` can re-decide both without refitting.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.detector import CONFIG_FILE, WEIGHTS_FILE, Detector
from iadbench.errors import InputError
from iadbench.jsonio import json_default

MODEL_FILE = "model.json"
MODEL_FORMAT = 1
#: Percentiles of held-out good map pixels shown as 0 and 1 on heatmaps: the median
#: good pixel is the bottom of the scale and the top is the highest good pixel, so
#: anything hotter than any good pixel is drawn saturated.
DISPLAY_PERCENTILES = (50.0, 100.0)


@dataclass
class FittedModel:
    directory: Path
    detector: Detector
    input_size: tuple[int, int]
    threshold: float  # on raw image scores; NaN when none could be fitted
    threshold_rule: str
    display_range: tuple[float, float]
    info: dict[str, Any]
    pixel_threshold: float | None = None  # raw map level outlined on overlays
    # {"method", "images", "estimate", "scores", "map_maxima"}; None for folders written
    # before calibration scores were kept
    calibration: dict[str, Any] | None = None


@dataclass
class ImageResult:
    """One image's outcome: raw score, verdict at the stored threshold, and the raw
    anomaly map at the image's own size (``map``) and at the detector's (``map_input``)."""

    score: float
    anomalous: bool
    map: np.ndarray
    map_input: np.ndarray = field(repr=False)


#: Maps the display range's lower percentile is taken over (evenly spaced): hundreds of
#: out-of-fold maps would cost seconds of sorting for the same median.
DISPLAY_SAMPLE = 64


def display_range_from_maps(maps: np.ndarray) -> tuple[float, float]:
    """The display range from good images' calibration maps (see DISPLAY_PERCENTILES)."""
    maps = np.asarray(maps)
    if maps.size == 0:
        return (0.0, 1.0)
    sample = maps[np.unique(np.linspace(0, len(maps) - 1, min(len(maps), DISPLAY_SAMPLE)).round().astype(int))]
    lo = float(np.percentile(sample.astype(np.float64), DISPLAY_PERCENTILES[0]))
    top = DISPLAY_PERCENTILES[1]
    hi = float(maps.max()) if top >= 100 else float(np.percentile(maps.astype(np.float64), top))
    if not hi > lo:
        hi = lo + 1.0
    return (float(lo), float(hi))


def write_model(
    directory: str | Path,
    detector: Detector,
    *,
    threshold: float,
    threshold_rule: str,
    display_range: tuple[float, float],
    info: dict[str, Any],
    pixel_threshold: float | None = None,
    calibration: dict[str, Any] | None = None,
) -> Path:
    """Save the detector artifact and model.json into ``directory``; returns it."""
    directory = Path(detector.save(directory))
    body = {
        "format": MODEL_FORMAT,
        "detector": detector.name,
        "input_size": list(detector.input_size),
        "threshold": _num(threshold),
        "threshold_rule": str(threshold_rule),
        "pixel_threshold": _num(pixel_threshold),
        "display_range": [float(display_range[0]), float(display_range[1])],
        "info": info,
        **({"calibration": calibration} if calibration is not None else {}),
    }
    write_model_json(directory, body)
    return directory


def write_model_json(directory: Path, body: dict[str, Any]) -> None:
    """model.json replaced atomically: a reader sees the old file or the new one."""
    tmp = directory / (MODEL_FILE + ".tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True, default=json_default))
    os.replace(tmp, directory / MODEL_FILE)


def read_model_json(directory: Path) -> dict[str, Any]:
    """model.json of a model folder, with one-line errors naming the folder."""
    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        raise InputError(f"not a usable model folder: missing {MODEL_FILE}", directory)
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"not a usable model folder: unreadable {MODEL_FILE} ({exc})", directory) from None
    if not isinstance(body, dict) or body.get("format") != MODEL_FORMAT:
        raise InputError(f"not a usable model folder: {MODEL_FILE} has an unsupported format", directory)
    return body


def load_model(directory: str | Path) -> FittedModel:
    """Load a model folder; any problem is one InputError naming the folder."""
    from iadbench.artifacts import load_detector

    directory = Path(directory)

    def bad(why: str) -> InputError:
        return InputError(f"not a usable model folder: {why}", directory)

    if not directory.is_dir():
        raise bad("no such folder")
    for name in (CONFIG_FILE, WEIGHTS_FILE, MODEL_FILE):
        if not (directory / name).is_file():
            raise bad(f"missing {name}")
    try:
        body = json.loads((directory / MODEL_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise bad(f"unreadable {MODEL_FILE} ({exc})") from None
    if not isinstance(body, dict) or body.get("format") != MODEL_FORMAT:
        raise bad(f"{MODEL_FILE} has an unsupported format")
    try:
        detector = load_detector(directory)
    except InputError as exc:
        raise bad(_strip_path(str(exc), directory)) from None
    except Exception as exc:  # a plugin's load_state_tensors on mismatched tensors
        raise bad(f"the detector cannot load its tensors ({type(exc).__name__}: {exc})") from None
    try:
        display = body["display_range"]
        model = FittedModel(
            directory=directory,
            detector=detector,
            input_size=tuple(int(v) for v in body.get("input_size", detector.input_size)),
            threshold=_float(body.get("threshold")),
            threshold_rule=str(body["threshold_rule"]),
            display_range=(float(display[0]), float(display[1])),
            info=dict(body.get("info") or {}),
            pixel_threshold=None if body.get("pixel_threshold") is None else float(body["pixel_threshold"]),
            calibration=body.get("calibration") if isinstance(body.get("calibration"), dict) else None,
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise bad(f"{MODEL_FILE} lacks or mangles a field ({type(exc).__name__}: {exc})") from None
    return model


def prepare_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (H, W), (H, W, 1|3|4) uint8 image as (size, 3) RGB uint8, resized the way the
    harness resizes dataset images (PIL bilinear)."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"images must be (H, W) or (H, W, 3), got shape {arr.shape}")
    if arr.shape[:2] == tuple(size):
        return np.ascontiguousarray(arr)
    return np.asarray(Image.fromarray(arr).resize((size[1], size[0]), Image.BILINEAR), dtype=np.uint8)


def predict_images(model: FittedModel, images_uint8_list: list[np.ndarray], batch: int = 8) -> list[ImageResult]:
    """Score images of any size: each is resized to the detector's input, scored, and
    its map resized back (bilinear) to the image's own size."""
    from iadbench.visual.overlay import resize_map

    size = tuple(model.input_size)
    results: list[ImageResult] = []
    for start in range(0, len(images_uint8_list), batch):
        chunk = images_uint8_list[start : start + batch]
        stacked = np.stack([prepare_image(im, size) for im in chunk])
        pred = model.detector.predict(stacked)
        for im, score, amap in zip(chunk, pred.scores, pred.maps):
            own = np.asarray(im).shape[:2]
            results.append(
                ImageResult(
                    score=float(score),
                    anomalous=bool(math.isfinite(model.threshold) and score > model.threshold),
                    map=resize_map(amap, own),
                    map_input=np.asarray(amap, dtype=np.float32),
                )
            )
    return results


def _strip_path(message: str, directory: Path) -> str:
    """An inner error names a file in the folder; keep its name, drop the folder."""
    prefix = str(directory)
    if message.startswith(prefix):
        message = message[len(prefix) :].lstrip("/\\")
    return message


def _num(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


