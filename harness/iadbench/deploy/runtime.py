"""Inference runtimes: one call, ``predict(images) -> Prediction`` on a uint8 batch
(N, H, W, 3) at the model's input size, over whichever predictor a runtime wraps:

- EagerRuntime: a Python predict function (a detector's own ``predict`` in PyTorch);
- OnnxRuntime: an exported graph in onnxruntime;
- SplitOnnxRuntime: a front graph in onnxruntime, its output finished by a Python
  function (a detector's ``predict_from_front``).

The runtimes know nothing of detectors or export: ``iadbench.deploy.opening`` builds
one for a fitted detector, and ``iadbench.deploy.export`` checks graphs through them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.errors import InputError
from iadbench.types import Prediction

#: openvino*: iadbench.deploy.openvino; auto: iadbench.deploy.opening.
RUNTIMES = ("auto", "eager", "onnx", "openvino", "openvino-fp16", "openvino-bf16", "openvino-int8")
#: The names of an iadbench graph's input and outputs, and of a front graph's output.
INPUT, OUTPUTS = "images", ("score", "map")
FRONT_OUTPUT = "features"


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_runtime(runtime: str) -> str:
    runtime = str(runtime).strip().lower()
    if runtime not in RUNTIMES:
        raise InputError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    return runtime


class EagerRuntime:
    """A Python predict function (uint8 batch at ``input_size`` -> Prediction) as a runtime."""

    name = "eager"
    detail = "the detector's own predict in PyTorch"

    def __init__(self, predict: Callable[[np.ndarray], Prediction], input_size: tuple[int, int]):
        self._predict = predict
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def predict(self, images: np.ndarray) -> Prediction:
        return self._predict(images)


def onnx_session(model: str | Path | bytes, threads: int):
    """An onnxruntime CPU session over a graph file or serialised bytes, one-line errors."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError("the onnx runtime needs onnxruntime (pip install 'iadbench[deploy]')") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # no spin-waiting between runs: idle sessions (a server, several models in one
    # process) would otherwise burn the cores torch and other sessions need
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes) and not Path(model).is_file():
        raise InputError("ONNX file not found", model)
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise InputError(f"not a loadable ONNX graph ({type(exc).__name__}: {str(exc)[:200]})",
                         "<memory>" if isinstance(model, bytes) else model) from None


def _in_batches(images: np.ndarray, size: tuple[int, int], max_batch: int, predict_batch) -> Prediction:
    """Check a uint8 (N, H, W, 3) batch at ``size``, score it ``max_batch`` images at a
    time with ``predict_batch`` (a contiguous slice -> Prediction) and join the parts."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
            or tuple(images.shape[1:]) != (*size, 3):
        raise InputError(f"images must be uint8 (N, {size[0]}, {size[1]}, 3); "
                         f"got {getattr(images, 'dtype', type(images))} {getattr(images, 'shape', '')}")
    parts = [predict_batch(np.ascontiguousarray(images[s : s + max_batch])) for s in range(0, len(images), max_batch)]
    return Prediction(scores=np.concatenate([p.scores for p in parts]).astype(np.float64),
                      maps=np.concatenate([p.maps for p in parts]))


class OnnxRuntime:
    """An onnxruntime session over an exported graph (a path or the serialised bytes).

    ``threads`` sets intra-op threads (default 2, one inter-op thread): the latency
    figures of the benchmark are taken that way. Batches run ``max_batch`` images at a
    time."""

    name = "onnx"
    detail = "whole graph in onnxruntime"

    def __init__(self, model: str | Path | bytes, threads: int = 2, max_batch: int = 8):
        self.session = onnx_session(model, threads)
        inp = self.session.get_inputs()[0]
        outs = [o.name for o in self.session.get_outputs()]
        if inp.type != "tensor(uint8)" or len(inp.shape) != 4 or outs[:2] != list(OUTPUTS):
            raise InputError("not an iadbench graph (want uint8 images (N, H, W, 3) -> score, map)",
                             "<memory>" if isinstance(model, bytes) else model)
        self.input_name = inp.name
        self.input_size = (int(inp.shape[1]), int(inp.shape[2]))
        self.threads, self.max_batch = int(threads), max(1, int(max_batch))
        self.metadata: dict[str, Any] = _metadata(self.session)

    def predict(self, images: np.ndarray) -> Prediction:
        # bounded memory: PatchCore's graph holds N x P x bank distances
        return _in_batches(images, self.input_size, self.max_batch, self._predict_batch)

    def _predict_batch(self, images: np.ndarray) -> Prediction:
        score, amap = self.session.run(list(OUTPUTS), {self.input_name: images})
        return Prediction(scores=score, maps=amap)


class SplitOnnxRuntime:
    """A front graph (uint8 images -> ``features``, e.g. a detector's backbone and
    embedding) in onnxruntime, its output handed to ``finish`` in Python (e.g.
    PatchCore's faiss search): for scoring with a step no ONNX operator does."""

    name = "onnx"

    def __init__(self, front: str | Path | bytes, finish: Callable[[np.ndarray], Prediction],
                 input_size: tuple[int, int], threads: int = 2, max_batch: int = 8,
                 detail: str = "front graph in onnxruntime, the rest in Python"):
        self.session = onnx_session(front, threads)
        inp = self.session.get_inputs()[0]
        if inp.type != "tensor(uint8)" or [o.name for o in self.session.get_outputs()] != [FRONT_OUTPUT]:
            raise InputError(f"not a front graph (want uint8 images -> {FRONT_OUTPUT})",
                             "<memory>" if isinstance(front, bytes) else front)
        self.input_name, self.output, self.finish = inp.name, FRONT_OUTPUT, finish
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.threads, self.max_batch = int(threads), max(1, int(max_batch))
        self.detail = detail
        self.metadata: dict[str, Any] = _metadata(self.session)

    def predict(self, images: np.ndarray) -> Prediction:
        return _in_batches(images, self.input_size, self.max_batch, self._predict_batch)

    def features(self, images: np.ndarray) -> np.ndarray:
        """The front graph's output for a batch already at the input size: ``finish``'s
        input, so the two halves can be timed apart (bench.deploy latency)."""
        (front,) = self.session.run([self.output], {self.input_name: images})
        return front

    def _predict_batch(self, images: np.ndarray) -> Prediction:
        return self.finish(self.features(images))


def _metadata(session) -> dict[str, Any]:
    """A graph's ``iadbench.*`` metadata (iadbench.deploy.export.with_metadata), decoded."""
    meta = session.get_modelmeta().custom_metadata_map
    out = {}
    for key, value in meta.items():
        if key.startswith("iadbench."):
            try:
                out[key.removeprefix("iadbench.")] = json.loads(value)
            except ValueError:
                out[key.removeprefix("iadbench.")] = value
    return out
