"""A fitted detector opened in a runtime: its eager ``predict``, its graph in
onnxruntime (exported and checked against eager, or from the model folder's cache), or
that graph in OpenVINO (float32, fp16 or INT8 IR: iadbench.deploy.ir_cache).

``auto`` on a model folder is the fastest runtime that passed the parity gate on this
machine, measured once and recorded there (iadbench.deploy.choice); on a detector
without a folder, onnx where the detector exports (and onnxruntime is installed) and
predicts in float32, else eager.
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
    if runtime != "eager" and not exports:
        raise InputError(f"--runtime {runtime}: detector '{detector.name}' cannot be exported (no export graph); use eager")
    return runtime


def open_runtime(detector: Detector, runtime: str = "auto", threads: int = 2, rtol: float = 1e-3,
                 directory: str | Path | None = None, calibration: np.ndarray | None = None):
    """An EagerRuntime over ``detector.predict``, an onnx one (OnnxRuntime over the
    whole graph, or SplitOnnxRuntime where the detector asks for it,
    ``Detector.split_runtime``) or an OpenVINO one (iadbench.deploy.ir_cache;
    ``calibration``: good images for openvino-int8). With ``directory`` (the model
    folder the detector was loaded from) graphs come from its cache
    (iadbench.deploy.graph_cache), else they are built in memory; an onnx graph scores
    within ``rtol`` of eager, an OpenVINO one passes the parity gate. ``auto`` with a
    ``directory`` is measured (iadbench.deploy.choice); the runtime's ``choice_note`` says
    what was chosen and why."""
    runtime = check_runtime(runtime)
    exports = detector.exportable or detector.split_runtime
    if runtime == "auto" and directory is not None and exports and onnxruntime_available():
        return _measured_auto(detector, Path(directory), threads, rtol)
    return _open(detector, resolve_runtime(detector, runtime), threads, rtol, directory, calibration)


def _measured_auto(detector: Detector, directory: Path, threads: int, rtol: float):
    from iadbench.deploy import choice

    record = choice.read_record(directory, choice.machine_key(directory, detector, threads))
    if record is not None:
        try:
            rt = _open(detector, record["chosen"], threads, rtol, directory)
            rt.choice_note = choice.note(record, measured_now=False)
            return rt
        except InputError:
            pass  # its cached graph went missing or is refused now: measure again
    record, opened = choice.measure(detector, directory, threads, lambda name: _open(detector, name, threads, rtol, directory))
    stored = choice.write_record(directory, record)
    rt = opened[record["chosen"]]
    rt.choice_note = choice.note(record, measured_now=True) + ("" if stored else " (not recorded: folder not writable)")
    return rt


def _open(detector: Detector, chosen: str, threads: int, rtol: float, directory: str | Path | None,
          calibration: np.ndarray | None = None):
    from iadbench.deploy import export

    if chosen == "eager":
        return EagerRuntime(detector.predict, detector.input_size)
    if chosen.startswith("openvino"):
        from iadbench.deploy.ir_cache import open_ir

        t = time.perf_counter()
        try:
            rt = open_ir(detector, chosen, directory, threads, calibration=calibration)
        except export.ExportRefused as exc:  # the onnx graph it is converted from
            raise InputError(f"{chosen} runtime refused: {exc}") from None
        rt.export_s = time.perf_counter() - t
        return rt
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
