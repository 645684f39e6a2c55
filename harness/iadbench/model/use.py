"""A model in use: a loaded model folder scoring through the runtime it holds (eager,
onnx, or split onnx), images of any size in, ImageResults out.

``open_model(directory, runtime, device, threads)`` is what ``adbench predict``,
``adbench serve`` and the benchmarks open a model folder with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.errors import InputError
from iadbench.model.folder import FittedModel
from iadbench.types import Prediction


@dataclass
class ImageResult:
    """One image's outcome: raw score, verdict at the stored threshold, and the raw
    anomaly map at the image's own size (``map``) and at the detector's (``map_input``)."""

    score: float
    anomalous: bool
    map: np.ndarray
    map_input: np.ndarray = field(repr=False)


@dataclass
class Model(FittedModel):
    """A model folder's contents with the runtime it scores through (default: the
    detector's eager predict)."""

    runtime: Any = None

    def __post_init__(self) -> None:
        if self.runtime is None:
            from iadbench.deploy.runtime import EagerRuntime

            self.runtime = EagerRuntime(self.detector.predict, self.input_size)

    @classmethod
    def of(cls, fitted: FittedModel, runtime=None) -> Model:
        """``fitted`` scoring through ``runtime`` (an open runtime; None: eager)."""
        return cls(**{f.name: getattr(fitted, f.name) for f in fields(FittedModel)}, runtime=runtime)

    @property
    def runtime_name(self) -> str:
        return self.runtime.name

    def score(self, images: np.ndarray) -> Prediction:
        """A uint8 batch already at ``input_size``, scored by the runtime."""
        return self.runtime.predict(images)

    def predict(self, images: list[np.ndarray], batch: int = 16) -> list[ImageResult]:
        """Images of any size and mode (see ``iadbench.images.prepare_image``)."""
        return image_results(self.score, images, tuple(self.input_size), self.threshold, batch, self.crop)


def image_results(score, images: list[np.ndarray], size: tuple[int, int], threshold: float,
                  batch: int = 8, crop: float = 1.0) -> list[ImageResult]:
    """Score images of any size: each is prepared to ``size`` (iadbench.images; ``crop``:
    the centre window a model fitted under ``--protocol paper`` sees), scored with
    ``score`` in batches, and its map put back (bilinear) on the image's own size."""
    from iadbench.images import prepare_image
    from iadbench.visual.overlay import place_map

    results: list[ImageResult] = []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        pred = score(np.stack([prepare_image(im, size, crop) for im in chunk]))
        for im, value, amap in zip(chunk, pred.scores, pred.maps):
            results.append(
                ImageResult(
                    score=float(value),
                    anomalous=bool(math.isfinite(threshold) and value > threshold),
                    map=place_map(amap, np.asarray(im).shape[:2], crop),
                    map_input=np.asarray(amap, dtype=np.float32),
                )
            )
    return results


def predict_images(model: FittedModel, images_uint8_list: list[np.ndarray], batch: int = 8) -> list[ImageResult]:
    """Score images of any size with the model's detector, eager (``Model.predict``
    scores through whichever runtime the model holds)."""
    return image_results(model.detector.predict, images_uint8_list, tuple(model.input_size), model.threshold, batch,
                         model.crop)


def check_device(device: str, runtime: str = "eager") -> str:
    """The torch device a model opens on (``auto``, ``cpu``, ``cuda``, ``cuda:N``;
    iadbench.devices), checked against this machine's GPUs. Exported graphs run in
    CPU runtimes, so on a GPU only the eager runtime scores."""
    from iadbench.devices import resolve_device, torch_device

    device = torch_device(resolve_device(device, "device"))
    if device != "cpu" and runtime not in ("auto", "eager"):
        raise InputError(f"--runtime {runtime} runs on the CPU: on {device} use --runtime eager, or --device cpu")
    return device


def open_model(directory: str | Path, runtime: str = "auto", device: str = "cpu", threads: int = 2,
               rtol: float = 1e-3) -> Model:
    """The model folder at ``directory`` ready to score: loaded, with the runtime chosen
    (``auto``, ``eager`` or ``onnx``; an onnx graph comes from the folder's cache,
    iadbench.deploy.graph_cache) on ``device`` (``auto`` is a GPU where torch sees one;
    ``auto`` runtime on a GPU is eager). ``threads``: the onnx runtime's intra-op threads."""
    from iadbench.deploy.opening import open_runtime
    from iadbench.deploy.runtime import check_runtime
    from iadbench.model.folder import load_model

    runtime = check_runtime(runtime)
    device = check_device(device, runtime)
    if device != "cpu":
        runtime = "eager"
    fitted = load_model(directory, device=device)
    return Model.of(fitted, open_runtime(fitted.detector, runtime, threads, rtol, directory=fitted.directory))
