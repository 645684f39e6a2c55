"""The model folder's format: a fitted detector plus what using it needs.

One format serves ``adbench fit --out DIR``, a run cell's ``cells/<key>/model`` and
everything downstream (predict, export, serve)::

    config.json         the detector artifact (iadbench.detector, unchanged)
    model.safetensors
    model.json          threshold and its rule, pixel threshold, display range, info,
                        and the calibration scores they were fixed on; ``version`` (1
                        for a fresh fit) and ``lineage`` (one entry per update:
                        version, parent, images_added, method, created)
    model.onnx          optional, written on first use: the checked ONNX graph (or
    front.onnx          the split runtime's front graph) cached by
                        iadbench.deploy.graph_cache; rebuilt when stale

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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.detector import CONFIG_FILE, WEIGHTS_FILE, Detector
from iadbench.errors import InputError
from iadbench.jsonio import finite_or_none, json_default

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
    # The centre fraction of each image the detector sees (iadbench.images.prepare_image):
    # 1 (the whole image) but for models fitted under ``--protocol paper``
    crop: float = 1.0

    @property
    def calibration_scores(self) -> np.ndarray:
        """The good training images' calibration scores the threshold was fixed on
        (empty for folders written before they were kept)."""
        return np.asarray((self.calibration or {}).get("scores") or [], dtype=np.float64)

    @property
    def threshold_note(self) -> str | None:
        """Why no threshold could be fixed, when none could."""
        return self.info.get("threshold_note")


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
    crop: float = 1.0,
) -> Path:
    """Save the detector artifact and model.json into ``directory``; returns it."""
    directory = Path(detector.save(directory))
    body = {
        "format": MODEL_FORMAT,
        "detector": detector.name,
        "input_size": list(detector.input_size),
        "threshold": finite_or_none(threshold),
        "threshold_rule": str(threshold_rule),
        "pixel_threshold": finite_or_none(pixel_threshold),
        "display_range": [float(display_range[0]), float(display_range[1])],
        "info": info,
        **({"calibration": calibration} if calibration is not None else {}),
        **({"crop": float(crop)} if crop != 1 else {}),
        "version": 1,
        "lineage": [],
    }
    write_model_json(directory, body)
    return directory


def write_model_json(directory: Path, body: dict[str, Any]) -> None:
    """model.json replaced atomically: a reader sees the old file or the new one."""
    tmp = directory / (MODEL_FILE + ".tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True, default=json_default))
    os.replace(tmp, directory / MODEL_FILE)


def _refuse_not_kept(directory: Path) -> None:
    """A run cell's model that ``--keep-models`` removed: one line saying so and naming the kept one."""
    from iadbench.results.housekeeping import not_kept_message, not_kept_note

    note = not_kept_note(directory)
    if note is not None:
        raise InputError(f"no model here: {not_kept_message(note)}", directory)


def read_model_json(directory: Path) -> dict[str, Any]:
    """model.json of a model folder, with one-line errors naming the folder."""
    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        _refuse_not_kept(Path(directory))
        raise InputError(f"not a usable model folder: missing {MODEL_FILE}", directory)
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"not a usable model folder: unreadable {MODEL_FILE} ({exc})", directory) from None
    if not isinstance(body, dict) or body.get("format") != MODEL_FORMAT:
        raise InputError(f"not a usable model folder: {MODEL_FILE} has an unsupported format", directory)
    return body


def model_version(directory: str | Path) -> int:
    """The folder's model version: 1 for a fresh fit (and folders from before versions),
    one more for each ``adbench update`` (its ``lineage`` says what each added)."""
    return int(read_model_json(Path(directory)).get("version", 1))


def load_model(directory: str | Path, device: str = "cpu") -> FittedModel:
    """Load a model folder, its detector on ``device`` (a torch device string: a model
    fitted on any device loads on any other); any problem is one InputError naming the
    folder."""
    from iadbench.artifacts import load_detector

    directory = Path(directory)

    def bad(why: str) -> InputError:
        return InputError(f"not a usable model folder: {why}", directory)

    if not directory.is_dir():
        raise bad("no such folder")
    _refuse_not_kept(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE, MODEL_FILE):
        if not (directory / name).is_file():
            raise bad(f"missing {name}")
    body = read_model_json(directory)
    try:
        detector = load_detector(directory, device=device)
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
            crop=float(body.get("crop", 1.0)),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise bad(f"{MODEL_FILE} lacks or mangles a field ({type(exc).__name__}: {exc})") from None
    return model


def _strip_path(message: str, directory: Path) -> str:
    """An inner error names a file in the folder; keep its name, drop the folder."""
    prefix = str(directory)
    if message.startswith(prefix):
        message = message[len(prefix) :].lstrip("/\\")
    return message


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


