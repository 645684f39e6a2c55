"""Training precision for detectors trained by gradient steps (public for plugins).

``auto`` trains convolutions in bfloat16 where the CPU multiplies bfloat16 natively
(Intel AMX or AVX-512 BF16: oneDNN then runs them 4x faster than float32 on two cores
for a PDN), else in float32. Only the forward and backward passes of the trained
networks run under autocast; the weights, the optimiser's state and the losses stay
float32 (mixed precision), and prediction runs in float32 so that eager scores and an
exported ONNX graph agree. The precision a fit used is recorded by the detector.
"""

from __future__ import annotations

import contextlib

import torch

from iadbench.errors import InputError

PRECISIONS = ("auto", "bf16", "fp32")


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX tiles or AVX-512 BF16)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, owner: str) -> str:
    """``bf16`` or ``fp32`` for a requested ``auto`` / ``bf16`` / ``fp32``."""
    if precision not in PRECISIONS:
        raise InputError(f"{owner}: precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


def training_autocast(precision: str):
    """The autocast context for a training step at a resolved precision."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def training_layout(precision: str) -> torch.memory_format:
    """oneDNN's bfloat16 kernels want channels-last tensors; float32 keeps the default."""
    return torch.channels_last if precision == "bf16" else torch.contiguous_format
