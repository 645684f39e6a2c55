"""OpenVINO runtimes: a detector's checked ONNX graph (or front graph) converted to
OpenVINO IR and run on the CPU plugin, in three variants:

- ``openvino``: float32 IR, computed in float32 (the CPU plugin would otherwise run
  bfloat16 where the CPU has it);
- ``openvino-fp16``: weights stored in float16 (half the file), computed in float16
  where the CPU plugin can (AVX512-FP16/AMX-FP16), else in float32;
- ``openvino-bf16``: float32 IR computed in bfloat16 where the CPU has it (AVX512-BF16,
  AMX: efficientad 4-5x faster than float32 on a Sapphire Rapids Xeon), else float32;
- ``openvino-int8``: NNCF post-training quantization calibrated on good images:
  the convolutional part in INT8, the scoring tail (every node no convolution depends
  on: distances, maps, score) in float32, and with accuracy control the layers whose
  rounding moves the scores most back in float32.

Each IR passes the parity gate (iadbench.deploy.parity) before it scores. In a model
folder it is cached as ``<model|front>.<runtime>/`` (model.xml, model.bin and
iadbench.json: the fingerprint of the artifact it was built from, the gate's numbers,
the calibration images' count and source), written to a temporary folder and renamed.
INT8 needs calibration images, so it is built by ``adbench export --format
openvino-int8 --calibration GOOD_DIR``; later opens use the cached IR.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.deploy.runtime import FRONT_OUTPUT, INPUT, OUTPUTS, _in_batches
from iadbench.errors import InputError
from iadbench.types import Prediction

VARIANTS = ("openvino", "openvino-fp16", "openvino-bf16", "openvino-int8")
#: Bump when IRs built by this code differ from the code before's: every cached IR is rebuilt.
IR_FORMAT = 1
META_FILE = "iadbench.json"


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _ov():
    try:
        import openvino as ov
    except ImportError:
        raise InputError("the openvino runtimes need openvino (pip install 'iadbench[openvino]')") from None
    return ov


def convert(graph: bytes):
    """A serialised ONNX graph as an ``openvino.Model``."""
    ov = _ov()
    try:
        return ov.convert_model(io.BytesIO(graph))
    except Exception as exc:
        raise InputError(f"OpenVINO cannot convert the graph ({type(exc).__name__}: {str(exc)[:200]})") from None


#: Accuracy-aware INT8 reverts layers to float until the worst relative score error on
#: its validation images is at most this: half the gate's INT8 bound, so the gate's
#: held-out images have room (EfficientAD on MVTec bottle: 0.56 with every layer INT8,
#: 0.049 on the test set with 3 of 56 layers reverted).
INT8_TARGET_RTOL = 0.05
#: At most this many revert rounds: a model that needs more keeps too little INT8 to be
#: faster than float32 (PaDiM reverts most of its backbone), and the gate refuses it.
INT8_MAX_ROUNDS = 12


@dataclass
class Validation:
    """What accuracy-aware INT8 holds the quantized graph to: ``images`` (uint8) and the
    eager float32 ``scores`` on them; ``finish`` turns a front graph's features into a
    Prediction (PatchCore's search), None for a whole graph."""

    images: np.ndarray
    scores: np.ndarray
    finish: Callable[[np.ndarray], Prediction] | None = None


def quantize(model, calibration: np.ndarray, validation: Validation | None = None):
    """``model`` with NNCF's post-training INT8 quantization, its ranges calibrated on
    the uint8 images ``calibration`` one at a time. Only the convolutional part is
    quantized: every node that feeds no convolution (``scoring_tail``: PaDiM's
    Mahalanobis distances, PatchCore's bank distances, the map upsampling and blur, the
    score) stays float32; rounding a distance to 256 levels leaves every image the same
    score. With ``validation``, NNCF's accuracy control then reverts the layers whose
    rounding moves the scores most back to float32 until no validation image's score is
    more than INT8_TARGET_RTOL from eager's (at most INT8_MAX_ROUNDS rounds)."""
    try:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters
    except ImportError:
        raise InputError("--runtime openvino-int8 needs nncf (pip install 'iadbench[openvino]')") from None
    if len(calibration) == 0:
        raise InputError("INT8 quantization needs at least one calibration image")
    items = _one_by_one(calibration)
    common = dict(subset_size=len(items), preset=nncf.QuantizationPreset.MIXED, fast_bias_correction=True,
                  ignored_scope=nncf.IgnoredScope(names=scoring_tail(model), validate=False))
    with _quiet_nncf(nncf):
        if validation is None:
            return nncf.quantize(model, nncf.Dataset(items), **common)
        checks = _one_by_one(validation.images)
        reference = np.abs(np.asarray(validation.scores, dtype=np.float64))

        def agreement(compiled, data) -> tuple[float, list[float]]:
            """1 minus each image's relative score error from eager (higher is better; 1
            where equal: NNCF divides by the float graph's value), and the worst."""
            scores = [float(_prediction(compiled, compiled(item), validation.finish).scores[0]) for item in data]
            per = [1 - abs(score - ref) / max(ref, 1e-12) for score, ref in zip(scores, reference)]
            return float(min(per)), per

        return nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(items), nncf.Dataset(checks), agreement, max_drop=INT8_TARGET_RTOL,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(max_num_iterations=INT8_MAX_ROUNDS),
            **common)


def _one_by_one(images: np.ndarray) -> list[np.ndarray]:
    """Batches of one image: NNCF feeds each item to the graph as it is."""
    return [np.ascontiguousarray(images[i : i + 1]) for i in range(len(images))]


@contextlib.contextmanager
def _quiet_nncf(nncf):
    """NNCF's INFO lines and progress bars off (they go to stdout, which predict's JSON
    and the CLI's tables own); warnings still reach the log."""
    import logging

    nncf.set_log_level(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def int8_note(meta: dict[str, Any]) -> str:
    """', N of M convolutions INT8' for an IR's metadata where accuracy control ran, else ''."""
    return f", {meta['int8_convolutions']} of {meta['convolutions']} convolutions INT8" if "convolutions" in meta else ""


def int8_share(model) -> tuple[int, int]:
    """(convolutions computing in INT8, all convolutions) of a quantized ``model``: NNCF
    stores a quantized convolution's weights as INT8 with a scale (a decompression
    subgraph), a float32 one's as a plain constant."""
    convs = [op for op in model.get_ops() if op.get_type_name() in CONVOLUTIONS]
    quantized = sum(op.input(1).get_source_output().get_node().get_type_name() != "Constant" for op in convs)
    return quantized, len(convs)


CONVOLUTIONS = ("Convolution", "GroupConvolution")


def scoring_tail(model) -> list[str]:
    """Names of the nodes of ``model`` no convolution depends on (constants aside)."""
    feeding: set[str] = set()
    stack = [op for op in model.get_ops() if op.get_type_name() in CONVOLUTIONS]
    while stack:
        op = stack.pop()
        for inp in op.inputs():
            src = inp.get_source_output().get_node()
            if src.get_friendly_name() not in feeding:
                feeding.add(src.get_friendly_name())
                stack.append(src)
    skip = ("Constant", "Parameter", "Result", *CONVOLUTIONS)
    return [op.get_friendly_name() for op in model.get_ops()
            if op.get_type_name() not in skip and op.get_friendly_name() not in feeding]


def _precision(core, variant: str) -> str:
    """The inference precision a variant computes in on this CPU."""
    from iadbench.precision import native_bf16

    capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if variant == "openvino-fp16" and "FP16" in capabilities:
        return "f16"
    # native_bf16 holds the ISA ceiling too: under ONEDNN_MAX_CPU_ISA=AVX2 the plugin still
    # lists BF16, then cannot compile in it
    if variant == "openvino-bf16" and "BF16" in capabilities and native_bf16():
        return "bf16"
    return "f32"


class OpenVinoRuntime:
    """An OpenVINO model compiled for the CPU: the whole graph (uint8 images -> score,
    map), or with ``finish`` a front graph (-> features) finished in Python (PatchCore's
    search). ``threads`` inference threads, latency hint, one stream, as the onnx runtime."""

    def __init__(self, model, name: str = "openvino", threads: int = 2, max_batch: int = 8,
                 finish: Callable[[np.ndarray], Prediction] | None = None):
        ov = _ov()
        core = ov.Core()
        self.name, self.finish = name, finish
        self.precision = _precision(core, name)
        config = {"INFERENCE_NUM_THREADS": max(1, int(threads)), "PERFORMANCE_HINT": "LATENCY",
                  "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": self.precision}
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise InputError(f"OpenVINO cannot compile the graph ({type(exc).__name__}: {str(exc)[:200]})") from None
        names = [set(o.get_names()) for o in self.compiled.outputs]
        want = [FRONT_OUTPUT] if finish else list(OUTPUTS)
        if not all(any(w in n for n in names) for w in want):
            raise InputError(f"not an iadbench graph (want outputs {', '.join(want)})")
        shape = self.compiled.input(0).get_partial_shape()
        self.input_size = (shape[1].get_length(), shape[2].get_length())
        self.threads, self.max_batch = int(threads), max(1, int(max_batch))
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: calls from several threads take turns
        weights = {"openvino-fp16": "float16", "openvino-int8": "INT8"}.get(name, "float32")
        where = "front graph in OpenVINO, the rest in Python" if finish else "whole graph in OpenVINO"
        self.detail = f"{where} ({weights} IR, computing in {self.precision})"
        self.metadata: dict[str, Any] = {}

    def predict(self, images: np.ndarray) -> Prediction:
        return _in_batches(images, self.input_size, self.max_batch, self._predict_batch)

    def _predict_batch(self, images: np.ndarray) -> Prediction:
        with self._lock:
            return _prediction(self.compiled, self._request.infer({INPUT: images}), self.finish)

    def features(self, images: np.ndarray) -> np.ndarray:
        """A front graph's output for a batch already at the input size (``finish``'s
        input), as SplitOnnxRuntime.features."""
        if self.finish is None:
            raise ValueError("a whole graph has no separate features: only a front graph's runtime does")
        with self._lock:
            return _front(self.compiled, self._request.infer({INPUT: images}))


def _front(compiled, out) -> np.ndarray:
    """A front graph's features from its outputs ``out``."""
    return np.array(out[compiled.output(FRONT_OUTPUT)])


def _prediction(compiled, out, finish) -> Prediction:
    """A compiled graph's outputs ``out`` as a Prediction: score and map, or a front
    graph's features finished in Python."""
    if finish is not None:
        return finish(_front(compiled, out))
    return Prediction(scores=np.array(out[compiled.output(OUTPUTS[0])]), maps=np.array(out[compiled.output(OUTPUTS[1])]))


def ir_folder(directory: str | Path, variant: str, front: bool = False) -> Path:
    return Path(directory) / f"{'front' if front else 'model'}.{variant}"


CHECKS_FILE = "check_images.npz"


def machine() -> dict[str, Any]:
    """What an IR's numbers depend on besides its weights: the CPU (its INT8, bfloat16
    and float16 kernels round differently), an ISA ceiling, the OpenVINO version."""
    from iadbench.devices import cpu_identity

    return {**cpu_identity(), "openvino": getattr(_ov(), "__version__", None)}


def save_ir(model, folder: Path, variant: str, meta: dict[str, Any], checks=None) -> bool:
    """The IR (fp16-compressed for ``openvino-fp16``), ``meta`` and the gate's check
    images (``checks``, a parity.CheckSet: uint8 images, labels and masks, so another
    machine can run the gate again) into ``folder``, through a temporary folder renamed
    into place; False where it cannot be written."""
    ov = _ov()
    try:
        tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", suffix=".tmp", dir=folder.parent))
    except OSError:
        return False
    try:
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=variant == "openvino-fp16")
        (tmp / META_FILE).write_text(json.dumps(meta, sort_keys=True, default=str))
        if checks is not None:
            np.savez_compressed(tmp / CHECKS_FILE, images=checks.images, labels=checks.labels, masks=checks.masks)
        os.chmod(tmp, 0o755)
        if folder.exists():  # stale: moved aside, then replaced
            old = folder.with_name(folder.name + f".old-{os.getpid()}")
            os.replace(folder, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    return True


def load_ir(folder: Path):
    """(openvino.Model, its iadbench.json) of a cached IR folder; None where absent or unreadable."""
    if not (folder / "model.xml").is_file():
        return None
    try:
        meta = json.loads((folder / META_FILE).read_text())
        return _ov().Core().read_model(str(folder / "model.xml")), meta
    except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt, whatever broke it
        return None


def load_checks(folder: Path, source: str):
    """The gate's check images kept with a cached IR (a parity.CheckSet), or None
    (cached before they were kept, or unreadable)."""
    from iadbench.deploy.parity import CheckSet

    try:
        with np.load(folder / CHECKS_FILE, allow_pickle=False) as z:
            return CheckSet(images=z["images"], labels=z["labels"], masks=z["masks"], source=source)
    except (OSError, KeyError, ValueError):
        return None
