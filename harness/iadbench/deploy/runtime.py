"""Inference runtimes: where a fitted model is used, the same call runs either the
detector's eager PyTorch ``predict`` or its exported graph in onnxruntime.

``open_runtime(detector, "auto" | "eager" | "onnx")``: ``auto`` is onnx where the
detector exports (and onnxruntime is installed), else eager. The onnx runtime of a
model folder exports the graph in memory (checked against eager, as ``adbench
export`` does) rather than writing beside the model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.detector import Detector
from iadbench.errors import InputError
from iadbench.types import Prediction

RUNTIMES = ("auto", "eager", "onnx")


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class EagerRuntime:
    name = "eager"
    detail = "the detector's own predict in PyTorch"

    def __init__(self, detector: Detector):
        self.detector = detector
        self.input_size = tuple(detector.input_size)

    def predict(self, images: np.ndarray) -> Prediction:
        return self.detector.predict(images)


def _session(model: str | Path | bytes, threads: int):
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
        self.session = _session(model, threads)
        inp = self.session.get_inputs()[0]
        outs = [o.name for o in self.session.get_outputs()]
        if inp.type != "tensor(uint8)" or len(inp.shape) != 4 or outs[:2] != ["score", "map"]:
            raise InputError("not an iadbench graph (want uint8 images (N, H, W, 3) -> score, map)",
                             "<memory>" if isinstance(model, bytes) else model)
        self.input_name = inp.name
        self.input_size = (int(inp.shape[1]), int(inp.shape[2]))
        self.threads, self.max_batch = int(threads), max(1, int(max_batch))
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, Any] = {
            k.removeprefix("iadbench."): json.loads(v) for k, v in meta.items() if k.startswith("iadbench.")
        }

    def predict(self, images: np.ndarray) -> Prediction:
        # bounded memory: PatchCore's graph holds N x P x bank distances
        return _in_batches(images, self.input_size, self.max_batch, self._predict_batch)

    def _predict_batch(self, images: np.ndarray) -> Prediction:
        score, amap = self.session.run(["score", "map"], {self.input_name: images})
        return Prediction(scores=score, maps=amap)


class SplitOnnxRuntime:
    """The detector's front graph (``Detector.export_front``: backbone and embedding) in
    onnxruntime, the rest (``predict_from_front``: e.g. PatchCore's faiss search) in
    Python: for detectors whose scoring has a step no ONNX operator does."""

    name = "onnx"

    def __init__(self, detector: Detector, front: bytes, threads: int = 2, max_batch: int = 8):
        from iadbench.deploy.export import FRONT_OUTPUT

        self.detector = detector
        self.session = _session(front, threads)
        inp = self.session.get_inputs()[0]
        if inp.type != "tensor(uint8)" or [o.name for o in self.session.get_outputs()] != [FRONT_OUTPUT]:
            raise InputError(f"not a front graph of '{detector.name}' (want uint8 images -> {FRONT_OUTPUT})")
        self.input_name, self.output = inp.name, FRONT_OUTPUT
        self.input_size = tuple(detector.input_size)
        self.threads, self.max_batch = int(threads), max(1, int(max_batch))
        self.detail = f"front graph in onnxruntime, the rest in Python ({type(detector).__name__}.predict_from_front)"

    def predict(self, images: np.ndarray) -> Prediction:
        return _in_batches(images, self.input_size, self.max_batch, self._predict_batch)

    def _predict_batch(self, images: np.ndarray) -> Prediction:
        (front,) = self.session.run([self.output], {self.input_name: images})
        return self.detector.predict_from_front(front)


def check_runtime(runtime: str) -> str:
    runtime = str(runtime).strip().lower()
    if runtime not in RUNTIMES:
        raise InputError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    return runtime


def resolve_runtime(detector: Detector, runtime: str = "auto") -> str:
    """``auto`` -> onnx where the detector exports and onnxruntime is installed, else eager
    (eager too where the detector predicts in bfloat16: iadbench.precision);
    an explicit ``onnx`` for a detector that cannot export is an error naming why."""
    runtime = check_runtime(runtime)
    exports = detector.exportable or detector.split_runtime
    if runtime == "auto":
        if detector.predict_precision == "bf16":
            # Its eager path runs in bfloat16, the graph in float32: eager is the faster
            # one (efficientad at 256 px: ~60 against ~190 ms an image on 2 cores).
            return "eager"
        return "onnx" if exports and onnxruntime_available() else "eager"
    if runtime == "onnx" and not exports:
        raise InputError(f"--runtime onnx: detector '{detector.name}' cannot be exported (no export graph); use eager")
    return runtime


def open_runtime(detector: Detector, runtime: str = "auto", threads: int = 2, rtol: float = 1e-3):
    """An EagerRuntime, or an onnx one (the graph exported in memory and checked against
    eager) for ``detector``: OnnxRuntime over the whole graph, or SplitOnnxRuntime where
    the detector asks for it (``Detector.split_runtime``)."""
    chosen = resolve_runtime(detector, runtime)
    if chosen == "eager":
        return EagerRuntime(detector)
    from iadbench.deploy.export import check_images, compare, graph_bytes

    t = time.perf_counter()
    if detector.split_runtime:
        rt = SplitOnnxRuntime(detector, graph_bytes(detector, front=True), threads=threads)
    else:
        rt = OnnxRuntime(graph_bytes(detector), threads=threads)
    check = compare(detector, rt, check_images(detector.input_size, n=2), threads)
    if not check.max_score_rel_diff <= rtol:
        raise InputError(f"onnx runtime refused: graph scores differ from eager by {check.max_score_rel_diff:.2e} relative")
    rt.export_s = time.perf_counter() - t
    return rt


def open_backbone(detector: Detector, threads: int = 2):
    """The detector's backbone trunk alone (normalisation and the stages up to its deepest
    layer) in onnxruntime: a callable on uint8 (N, H, W, 3) batches, the onnx twin of
    ``Detector.backbone_forward`` for cost tables. Needs a ``BackboneMixin`` detector."""
    from iadbench.deploy.export import INPUT, onnx_bytes
    from iadbench.deploy.graph import TrunkFeatures, TrunkOutputs

    if getattr(detector, "extractor", None) is None or not getattr(detector, "layers", None):
        raise InputError(f"detector '{detector.name}' has no backbone extractor to export")
    trunk = TrunkFeatures(detector.extractor, detector.layers, detector.input_size).eval()
    session = _session(onnx_bytes(TrunkOutputs(trunk).eval(), detector.input_size), threads)
    return lambda images: session.run(None, {INPUT: np.ascontiguousarray(images)})


class _RuntimePredictor:
    """Stands in for a model's detector where only ``predict`` is used (model.predict_images)."""

    def __init__(self, runtime, detector: Detector):
        self.runtime, self.name, self.input_size = runtime, detector.name, tuple(detector.input_size)

    def predict(self, images: np.ndarray) -> Prediction:
        return self.runtime.predict(images)


class ModelRunner:
    """A model folder (iadbench.model.FittedModel) scored through a chosen runtime:
    images of any size in, ``ImageResult``s out, exactly as ``predict_images`` does."""

    def __init__(self, model, runtime="auto", threads: int = 2):
        """``runtime``: a name (RUNTIMES) or an already open EagerRuntime / OnnxRuntime."""
        import dataclasses

        self.model = model
        self.runtime = open_runtime(model.detector, runtime, threads) if isinstance(runtime, str) else runtime
        self._bound = dataclasses.replace(model, detector=_RuntimePredictor(self.runtime, model.detector))

    @property
    def runtime_name(self) -> str:
        return self.runtime.name

    def predict(self, images: list[np.ndarray], batch: int = 16):
        from iadbench.model import predict_images

        return predict_images(self._bound, images, batch=batch)
