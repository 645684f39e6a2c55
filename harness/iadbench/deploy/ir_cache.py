"""A detector's OpenVINO runtime, from the model folder's cached IR where it is fresh,
else converted from its checked ONNX graph (iadbench.deploy.graph_cache), quantized
for INT8, held to the parity gate and cached (iadbench.deploy.openvino says where).

A cached IR is fresh when its fingerprint is the model folder's graph fingerprint (the
artifact, the plugin version, GRAPH_FORMAT) with IR_FORMAT; its recorded parity check
is held to today's bound on every open. On another machine (another CPU, ISA ceiling or
OpenVINO version: INT8, bfloat16 and float16 kernels round differently) the gate runs
again on the check images kept beside the IR, so a model folder exported on a
workstation is checked again on the line PC."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iadbench.deploy import openvino, parity
from iadbench.deploy.openvino import (
    IR_FORMAT,
    OpenVinoRuntime,
    Validation,
    convert,
    int8_share,
    ir_folder,
    load_checks,
    load_ir,
    machine,
    quantize,
    save_ir,
)
from iadbench.detector import Detector
from iadbench.errors import InputError

INT8 = "openvino-int8"


def int8_needs_calibration(name: str) -> InputError:
    return InputError(f"--runtime {INT8}: model folder '{name}' has no INT8 IR yet; build it once with "
                      f"`adbench export MODEL_DIR --format {INT8} --calibration GOOD_IMAGES --out model.xml`")


def runtime_of(model, detector: Detector, variant: str, threads: int) -> OpenVinoRuntime:
    finish = detector.predict_from_front if detector.split_runtime else None
    return OpenVinoRuntime(model, name=variant, threads=threads, finish=finish)


def _fingerprint(directory: Path, detector: Detector) -> str:
    from iadbench.deploy.graph_cache import fingerprint

    return f"{fingerprint(directory, detector.name)} ir{IR_FORMAT}"


def cached_ir(directory: str | Path, detector: Detector, variant: str, threads: int = 2):
    """The runtime of the folder's fresh cached IR of ``variant``, or None."""
    folder = ir_folder(directory, variant, detector.split_runtime)
    loaded = load_ir(folder)
    if loaded is None:
        return None
    model, meta = loaded
    if meta.get("fingerprint") != _fingerprint(Path(directory), detector) or not isinstance(meta.get("check"), dict):
        return None
    rt = runtime_of(model, detector, variant, threads)
    rt.metadata, rt.graph_source, rt.check = meta, f"cached {folder.name}/", meta["check"]
    built_on = meta.get("machine")
    checks = None if built_on == machine() else load_checks(folder, str(meta.get("check_images", "the gate's check images")))
    if checks is None:  # where it was gated (or cached before check images were kept)
        parity.accept(meta["check"], parity.BOUNDS[variant])
        return rt
    # another CPU rounds INT8, bfloat16 and float16 its own way: the gate runs again here
    try:
        rt.check = parity.gate(rt, parity.eager_reference(detector, checks), checks).as_dict()
    except parity.ParityRefused as exc:
        where = built_on.get("cpu") if isinstance(built_on, dict) else "another machine"
        raise parity.ParityRefused(f"{exc} (on this machine; the IR passed on {where})") from None
    rt.graph_source = f"cached {folder.name}/, gated again on this machine"
    return rt


def _onnx_graph(detector: Detector, directory: Path | None) -> bytes:
    """The detector's ONNX graph (front graph for a split runtime), checked against eager:
    the model folder's cached one where it has one."""
    from iadbench.deploy import export
    from iadbench.deploy.graph_cache import graph_path, open_cached

    front = detector.split_runtime
    if directory is not None:
        open_cached(directory, detector, front=front)  # builds, checks and caches where stale
        path = graph_path(directory, front)
        if path.is_file():
            return path.read_bytes()
    return export.checked_graph(detector, front=front, images=export.check_images(detector.input_size, n=2)).graph


#: Calibration images accuracy-aware INT8 validates on (each with a painted copy): every
#: few of them, so they span the set; the gate's check images stay out of it.
INT8_VALIDATION = 8


def int8_validation(detector: Detector, calibration: np.ndarray) -> Validation:
    """Calibration images and a painted copy of each, with eager's float32 scores: what
    accuracy-aware INT8 holds its scores to. Painted with other seeds than the gate's,
    and never the gate's held-out images, so the gate stays an independent check."""
    step = max(1, len(calibration) // INT8_VALIDATION)
    checks = parity.check_set(detector.input_size, calibration[::step][:INT8_VALIDATION], seed=1000)
    reference = parity.eager_reference(detector, checks)
    return Validation(images=checks.images, scores=np.asarray(reference.scores),
                      finish=detector.predict_from_front if detector.split_runtime else None)


def open_ir(detector: Detector, variant: str, directory: str | Path | None = None, threads: int = 2,
            calibration: np.ndarray | None = None, good: np.ndarray | None = None, rebuild: bool = False):
    """``detector`` in OpenVINO (``variant`` of iadbench.deploy.openvino.VARIANTS), gated.
    ``calibration``: good images INT8 is calibrated on; ``good``: held-out good images
    for the check set (else synthetic ones). With ``directory`` the IR comes from and
    goes to its cache; ``rebuild`` ignores a cached one (new calibration images)."""
    directory = Path(directory) if directory is not None else None
    if directory is not None and not rebuild:
        rt = cached_ir(directory, detector, variant, threads)
        if rt is not None:
            return rt
    if variant == INT8 and calibration is None:
        raise int8_needs_calibration(directory.name if directory is not None else detector.name)
    model = convert(_onnx_graph(detector, directory))
    extra = {}
    if variant == INT8:
        model = quantize(model, calibration, int8_validation(detector, calibration))
        extra["int8_convolutions"], extra["convolutions"] = int8_share(model)
    rt = runtime_of(model, detector, variant, threads)
    checks = parity.check_set(detector.input_size, good)
    try:
        check = parity.gate(rt, parity.eager_reference(detector, checks), checks)
    except parity.ParityRefused as exc:
        if variant != INT8:
            raise
        raise parity.ParityRefused(f"{exc} (accuracy control left {extra['int8_convolutions']} of "
                                   f"{extra['convolutions']} convolutions in INT8 after at most "
                                   f"{openvino.INT8_MAX_ROUNDS} rounds of reverting)") from None
    meta = {"runtime": variant, "check": check.as_dict(), "check_images": checks.source, "machine": machine(),
            **({"calibration_images": len(calibration)} if calibration is not None and variant == INT8 else {}), **extra}
    rt.metadata, rt.check, rt.graph_source = meta, meta["check"], "built in memory"
    if directory is not None:
        meta.update(fingerprint=_fingerprint(directory, detector), ir_format=IR_FORMAT, detector=detector.name)
        folder = ir_folder(directory, variant, detector.split_runtime)
        stored = save_ir(model, folder, variant, meta, checks)
        rt.graph_source = f"built and cached as {folder.name}/" if stored else "built in memory (model folder not writable)"
    return rt
