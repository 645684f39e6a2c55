"""ONNX export of a fitted detector, checked against eager PyTorch before it is written.

The graph is ``Detector.export_module()`` traced with torch's TorchScript-based ONNX
exporter (opset 17): input ``images`` uint8 (N, H, W, 3) at the detector's input size,
outputs ``score`` (N,) and ``map`` (N, H, W), batch dynamic. Before a file is written
the graph runs in onnxruntime on check images and its scores are compared with the
detector's own ``predict``, in float32 where it could predict in bfloat16: more than
``rtol`` relative difference refuses the export (nothing is written, an existing file
is left as it was). The file is written to a temporary name beside ``out`` and renamed,
so a reader never sees half a graph.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iadbench.detector import Detector
from iadbench.errors import InputError

OPSET = 17
INPUT, OUTPUTS = "images", ("score", "map")
FRONT_OUTPUT = "features"  # the split runtime's front graph (Detector.export_front)


@dataclass
class ExportCheck:
    images: int
    max_score_rel_diff: float
    max_map_rel_diff: float  # of the eager map's largest value


def graph_bytes(detector: Detector, front: bool = False) -> bytes:
    """The detector's inference graph as serialised ONNX (not yet checked); with
    ``front``, its ``export_front`` graph (uint8 images -> ``features``) instead."""
    if not (detector.split_runtime if front else detector.exportable):
        raise InputError(f"detector '{detector.name}' cannot be exported to ONNX: it has no export graph")
    try:
        module = detector.export_front() if front else detector.export_module()
    except NotImplementedError as exc:
        raise InputError(f"cannot export: {exc}") from None
    return onnx_bytes(module, detector.input_size, [FRONT_OUTPUT] if front else list(OUTPUTS))


def onnx_bytes(module: torch.nn.Module, size: tuple[int, int], outputs: list[str] | None = None) -> bytes:
    """``module`` (uint8 images (N, H, W, 3) at ``size`` -> tensors) traced to ONNX with
    a dynamic batch; ``outputs`` names the results (None: onnx's default names)."""
    from iadbench.deploy.graph import example_batch

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter
        torch.onnx.export(
            module, (example_batch(size, 2),), buf, input_names=[INPUT], output_names=outputs,
            dynamic_axes={INPUT: {0: "batch"}, **{name: {0: "batch"} for name in outputs or []}},
            opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    return buf.getvalue()


def check_images(size: tuple[int, int], n: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth random colour fields with a few blobs: image-like enough to exercise the
    backbone (pure noise saturates it), reproducible, no data needed."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        img = np.zeros((h, w, 3))
        for c in range(3):
            a, b, p = rng.uniform(-3, 3, 3)
            img[..., c] = 128 + 60 * np.sin(a * 6 * xx + b * 6 * yy + p)
        for _ in range(3):
            cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.15)
            img[((yy - cy) ** 2 + (xx - cx) ** 2) < r * r] = rng.uniform(0, 255, 3)
        out[i] = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return out


def compare(detector: Detector, onnx_model, images: np.ndarray, threads: int = 2) -> ExportCheck:
    """Scores and maps of ``onnx_model`` (serialised graph bytes, or an open runtime)
    against the detector's eager ``predict`` on ``images``."""
    from iadbench.deploy.runtime import OnnxRuntime
    from iadbench.precision import float32_predictions

    with float32_predictions(detector):  # the graph is float32 (iadbench.precision)
        eager = detector.predict(images)
    runtime = OnnxRuntime(onnx_model, threads=threads) if isinstance(onnx_model, bytes) else onnx_model
    got = runtime.predict(images)
    ref = np.abs(eager.scores).clip(min=1e-12)
    return ExportCheck(
        images=len(images),
        max_score_rel_diff=float((np.abs(got.scores - eager.scores) / ref).max()),
        max_map_rel_diff=float(np.abs(got.maps - eager.maps).max() / max(np.abs(eager.maps).max(), 1e-12)),
    )


def export_onnx(
    detector: Detector,
    out: str | Path,
    images: np.ndarray | None = None,
    rtol: float = 1e-3,
    metadata: dict[str, Any] | None = None,
    threads: int = 2,
) -> ExportCheck:
    """Write ``detector``'s graph to ``out`` once its scores match eager within ``rtol``."""
    out = Path(out)
    if out.is_dir():
        raise InputError("is a folder; give the .onnx file to write", out)
    if not out.parent.is_dir():
        raise InputError("folder does not exist", out.parent)
    model = graph_bytes(detector)
    if images is None:
        images = check_images(detector.input_size)
    check = compare(detector, model, images, threads)
    if not check.max_score_rel_diff <= rtol:  # also refuses NaN
        raise InputError(
            f"export refused: onnxruntime scores differ from eager by {check.max_score_rel_diff:.2e} "
            f"relative (limit {rtol:g}) on {check.images} check images; nothing written", out
        )
    model = with_metadata(model, {"detector": detector.name, "params": detector.params,
                                  "input_size": list(detector.input_size), **(metadata or {})})
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return check


def with_metadata(model: bytes, meta: dict[str, Any]) -> bytes:
    """The graph with ``meta`` as JSON strings in its metadata_props (read by OnnxRuntime)."""
    import onnx

    proto = onnx.load_from_string(model)
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"iadbench.{key}", json.dumps(value, sort_keys=True, default=str)
    return proto.SerializeToString()
