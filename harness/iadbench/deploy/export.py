"""ONNX export of a fitted detector, checked against eager PyTorch before it is written.

The graph is ``Detector.export_module()`` traced with torch's TorchScript-based ONNX
exporter (opset 17): input ``images`` uint8 (N, H, W, 3) at the detector's input size,
outputs ``score`` (N,) and ``map`` (N, H, W), batch dynamic. Before a file is written
the graph runs in onnxruntime on check images and its scores are compared with the
detector's own ``predict``, in float32 where it could predict in bfloat16: more than
``rtol`` relative difference refuses the export (nothing is written, an existing file
is left as it was). The file is written to a temporary name beside ``out`` and renamed,
so a reader never sees half a graph. ``checked_graph`` is that export and check without
the file: what the onnx runtime (iadbench.deploy.opening) and the model folder's graph
cache (iadbench.deploy.graph_cache) build on.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iadbench.deploy.runtime import FRONT_OUTPUT, INPUT, OUTPUTS, OnnxRuntime, SplitOnnxRuntime
from iadbench.detector import Detector
from iadbench.errors import InputError

OPSET = 17


@dataclass
class ExportCheck:
    images: int
    max_score_rel_diff: float
    max_map_rel_diff: float  # of the eager map's largest value

    def passes(self, rtol: float) -> bool:
        return self.max_score_rel_diff <= rtol  # also refuses NaN

    def refusal(self, rtol: float) -> str:
        return (f"onnxruntime scores differ from eager by {self.max_score_rel_diff:.2e} relative "
                f"(limit {rtol:g}) on {self.images} check images")


class ExportRefused(InputError):
    """A graph whose scores differ from the detector's eager ones by more than allowed."""


@dataclass
class CheckedGraph:
    graph: bytes  # serialised ONNX, without metadata
    runtime: Any  # the OnnxRuntime or SplitOnnxRuntime it was checked through
    check: ExportCheck


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


def graph_runtime(detector: Detector, graph: str | Path | bytes, front: bool = False, threads: int = 2):
    """A runtime over ``detector``'s graph: OnnxRuntime, or with ``front`` a SplitOnnxRuntime
    finishing in ``detector.predict_from_front``."""
    if not front:
        return OnnxRuntime(graph, threads=threads)
    return SplitOnnxRuntime(graph, detector.predict_from_front, detector.input_size, threads=threads,
                            detail=f"front graph in onnxruntime, the rest in Python ({type(detector).__name__}.predict_from_front)")


def compare(detector: Detector, onnx_model, images: np.ndarray, threads: int = 2) -> ExportCheck:
    """Scores and maps of ``onnx_model`` (serialised graph bytes, or an open runtime)
    against the detector's eager ``predict`` on ``images``."""
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


def checked_graph(detector: Detector, front: bool = False, rtol: float = 1e-3, threads: int = 2,
                  images: np.ndarray | None = None) -> CheckedGraph:
    """``detector``'s graph (its front graph with ``front``), run in onnxruntime on check
    images (``images``, default ``check_images``) against eager; ExportRefused past ``rtol``."""
    graph = graph_bytes(detector, front=front)
    runtime = graph_runtime(detector, graph, front, threads)
    check = compare(detector, runtime, check_images(detector.input_size) if images is None else images, threads)
    if not check.passes(rtol):
        raise ExportRefused(check.refusal(rtol))
    return CheckedGraph(graph, runtime, check)


def export_metadata(detector: Detector, check: ExportCheck | None = None) -> dict[str, Any]:
    """What every written graph says about itself (read back as OnnxRuntime.metadata)."""
    return {"detector": detector.name, "params": detector.params, "input_size": list(detector.input_size),
            **({"check": asdict(check)} if check is not None else {})}


def check_out_path(out: Path) -> None:
    if out.is_dir():
        raise InputError("is a folder; give the .onnx file to write", out)
    if not out.parent.is_dir():
        raise InputError("folder does not exist", out.parent)


def write_graph(out: Path, graph: bytes) -> None:
    """``graph`` to ``out`` through a temporary file beside it and a rename: a reader
    sees the old file or the new one, never half a graph."""
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(graph)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the graph from a container's non-root user
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    check_out_path(out)
    try:
        built = checked_graph(detector, rtol=rtol, threads=threads, images=images)
    except ExportRefused as exc:
        raise InputError(f"export refused: {exc}; nothing written", out) from None
    write_graph(out, with_metadata(built.graph, {**export_metadata(detector, built.check), **(metadata or {})}))
    return built.check


def with_metadata(model: bytes, meta: dict[str, Any]) -> bytes:
    """The graph with ``meta`` (and nothing else) as JSON strings in its metadata_props
    (read back by OnnxRuntime.metadata, or ``read_metadata``)."""
    import onnx

    proto = onnx.load_from_string(model)
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"iadbench.{key}", json.dumps(value, sort_keys=True, default=str)
    return proto.SerializeToString()


def read_metadata(model: bytes) -> dict[str, Any]:
    """A serialised graph's ``iadbench.*`` metadata, decoded (no session needed)."""
    import onnx

    out = {}
    for entry in onnx.load_from_string(model).metadata_props:
        if entry.key.startswith("iadbench."):
            try:
                out[entry.key.removeprefix("iadbench.")] = json.loads(entry.value)
            except ValueError:
                out[entry.key.removeprefix("iadbench.")] = entry.value
    return out
