"""A fitted detector opened in a runtime: its eager ``predict``, or its graph in
onnxruntime (exported and checked against eager, or from the model folder's cache).

``auto`` is onnx where the detector exports (and onnxruntime is installed), else eager.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from iadbench.deploy.runtime import EagerRuntime, check_runtime, onnxruntime_available
from iadbench.detector import Detector
from iadbench.errors import InputError

#: Check images when a graph is built in memory only (a cached one gets export's three).
IN_MEMORY_CHECK_IMAGES = 2


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


def open_runtime(detector: Detector, runtime: str = "auto", threads: int = 2, rtol: float = 1e-3,
                 directory: str | Path | None = None):
    """An EagerRuntime over ``detector.predict``, or an onnx one: OnnxRuntime over the
    whole graph, or SplitOnnxRuntime where the detector asks for it
    (``Detector.split_runtime``). With ``directory`` (the model folder the detector was
    loaded from) the graph comes from its cache (iadbench.deploy.graph_cache), else it
    is exported in memory; either way it scores within ``rtol`` of eager."""
    from iadbench.deploy import export

    chosen = resolve_runtime(detector, runtime)
    if chosen == "eager":
        return EagerRuntime(detector.predict, detector.input_size)
    front = detector.split_runtime
    t = time.perf_counter()
    try:
        if directory is not None:
            from iadbench.deploy.graph_cache import open_cached

            rt = open_cached(directory, detector, front=front, rtol=rtol, threads=threads)
        else:
            images = export.check_images(detector.input_size, n=IN_MEMORY_CHECK_IMAGES)
            rt = export.checked_graph(detector, front=front, rtol=rtol, threads=threads, images=images).runtime
            rt.graph_source = "built in memory"
    except export.ExportRefused as exc:
        raise InputError(f"onnx runtime refused: {exc}") from None
    rt.export_s = time.perf_counter() - t
    return rt


def open_backbone(detector: Detector, threads: int = 2):
    """The detector's backbone trunk alone (normalisation and the stages up to its deepest
    layer) in onnxruntime: a callable on uint8 (N, H, W, 3) batches, the onnx twin of
    ``Detector.backbone_forward`` for cost tables. Needs a ``BackboneMixin`` detector."""
    from iadbench.deploy.export import onnx_bytes
    from iadbench.deploy.graph import TrunkFeatures, TrunkOutputs
    from iadbench.deploy.runtime import INPUT, onnx_session

    if getattr(detector, "extractor", None) is None or not getattr(detector, "layers", None):
        raise InputError(f"detector '{detector.name}' has no backbone extractor to export")
    trunk = TrunkFeatures(detector.extractor, detector.layers, detector.input_size).eval()
    session = onnx_session(onnx_bytes(TrunkOutputs(trunk).eval(), detector.input_size), threads)
    return lambda images: session.run(None, {INPUT: np.ascontiguousarray(images)})
