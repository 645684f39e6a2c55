"""Numeric precision for detectors built of convolutions (public for plugins).

``auto`` runs convolutions in bfloat16 where the CPU multiplies bfloat16 natively
(Intel AMX or AVX-512 BF16: oneDNN then runs them 4x faster than float32 on two cores
for a PDN), or on a GPU that has bfloat16 (CUDA autocast), else in float32. In training only the forward and backward passes of the
trained networks run under autocast; the weights, the optimiser's state and the losses
stay float32 (mixed precision). The precision a fit used is recorded by the detector.

Prediction runs in float32 unless a detector sets ``Detector.predict_precision`` to
``bf16``: then its ``predict`` may run under autocast, and ``float32_predictions``
switches it to float32 for a block. Export checks use that block, because an ONNX graph
is float32: its scores are compared with eager float32 ones, not with bfloat16 rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from iadbench.errors import InputError

if TYPE_CHECKING:
    from iadbench.detector import Detector

PRECISIONS = ("auto", "bf16", "fp32")


#: oneDNN's ISA ceilings (ONEDNN_MAX_CPU_ISA) below AVX-512 BF16: under one of these the
#: bfloat16 units are out of reach, as on a line PC without them (oneDNN in torch and
#: OpenVINO's CPU plugin honour the ceiling; onnxruntime does not).
NO_BF16_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def isa_capped_below_bf16() -> bool:
    """Whether ONEDNN_MAX_CPU_ISA caps oneDNN below the bfloat16 instructions."""
    import os

    return os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper() in NO_BF16_ISAS


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX tiles or AVX-512 BF16) and
    oneDNN may use it (no ONEDNN_MAX_CPU_ISA ceiling below it)."""
    if isa_capped_below_bf16():
        return False
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, owner: str, device: str = "cpu") -> str:
    """``bf16`` or ``fp32`` for a requested ``auto`` / ``bf16`` / ``fp32`` on ``device``
    (a torch device string): ``auto`` is bf16 on a GPU with bfloat16 (Ampere and later)
    as on a CPU with bfloat16 units."""
    if precision not in PRECISIONS:
        raise InputError(f"{owner}: precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        if str(device).startswith("cuda"):
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if native_bf16() else "fp32"
    return precision


def training_autocast(precision: str, device: str = "cpu"):
    """The autocast context for a training step at a resolved precision, on ``device``
    (a torch device string: autocast wants its type, cpu or cuda)."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def training_layout(precision: str) -> torch.memory_format:
    """oneDNN's bfloat16 kernels want channels-last tensors; float32 keeps the default."""
    return torch.channels_last if precision == "bf16" else torch.contiguous_format


def inference_autocast(precision: str, device: str = "cpu"):
    """The autocast context for a prediction at a resolved precision."""
    return training_autocast(precision, device)


@contextlib.contextmanager
def float32_predictions(detector: Detector) -> Iterator[None]:
    """Within this block ``detector`` predicts in float32 (``Detector.predict_precision``)."""
    before = detector.predict_precision
    detector.predict_precision = "fp32"
    try:
        yield
    finally:
        detector.predict_precision = before
