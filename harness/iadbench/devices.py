"""Where a detector computes: device strings, what they name, and peak GPU memory
(public for plugins).

A device string is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. ``parse_device`` checks
the spelling alone (no torch: the CLI calls it before anything heavy loads);
``resolve_device`` turns ``auto`` into ``cuda`` where torch sees a GPU, else ``cpu``, and
refuses a GPU this machine lacks with one line. Checking for a GPU imports torch and
asks the driver, so it runs at plan time in the parent only, never in a forkserver that
forks cells (a CUDA context does not survive a fork).

``cuda`` means "a GPU": a run's local executor gives each cell one visible GPU
(``CUDA_VISIBLE_DEVICES``) and the cell computes on ``cuda:0``, its only one;
``cuda:N`` pins every cell to GPU N.
"""

from __future__ import annotations

import os
import re
from typing import Any

from iadbench.errors import InputError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_SPELLING = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def parse_device(text: str, owner: str = "device") -> str:
    """``text`` normalised (``CUDA:1`` -> ``cuda:1``); one-line InputError where it is
    not a device string. Imports no torch."""
    device = str(text).strip().lower()
    match = _SPELLING.match(device)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise InputError(f"{owner} {text!r} is not a device: use {DEVICE_CHOICES}")
    return device


def device_kind(device: str) -> str:
    """``cpu`` or ``cuda``: what a device string names, without its index."""
    return parse_device(device).partition(":")[0]


def gpu_count() -> int:
    """GPUs torch can use here (0 without CUDA). Imports torch."""
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def resolve_device(text: str, owner: str = "--device", count: int | None = None) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` for a device string, checked against this
    machine's GPUs (``count``: their number; None asks torch). Plan time only."""
    device = parse_device(text, owner)
    if device == "cpu":
        return device
    count = gpu_count() if count is None else count
    if device == "auto":
        return "cuda" if count > 0 else "cpu"
    if count == 0:
        raise InputError(f"{owner} {device}: this machine has no GPU that torch can use (use cpu or auto)")
    index = device.partition(":")[2]
    if index and int(index) >= count:
        raise InputError(f"{owner} {device}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return device


def torch_device(device: str) -> str:
    """What torch is given: ``cuda`` becomes ``cuda:0`` (a cell's one visible GPU)."""
    device = parse_device(device)
    if device == "auto":
        raise InputError("device 'auto' must be resolved first (iadbench.devices.resolve_device)")
    return "cuda:0" if device == "cuda" else device


def visible_gpu_label(device: str) -> str:
    """The device a record names: ``cuda:N`` with N the physical GPU where the executor
    made one visible (CUDA_VISIBLE_DEVICES holds a single index), else as given."""
    device = torch_device(device)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if device == "cuda:0" and visible.isdigit():
        return f"cuda:{visible}"
    return device


def device_name(device: str) -> str:
    """The GPU's name (``NVIDIA H100 80GB HBM3``) or the CPU's model name."""
    device = torch_device(device)
    if device.startswith("cuda"):
        import torch

        return str(torch.cuda.get_device_name(torch.device(device)))
    return cpu_model()


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_identity() -> dict[str, str | None]:
    """What a CPU measurement depends on besides the code: the CPU model and the ISA
    ceiling set for oneDNN (an ``ONEDNN_MAX_CPU_ISA=AVX2`` run gets other kernels, so
    other speeds and other float16, bfloat16 and INT8 rounding, on the same CPU)."""
    return {"cpu": cpu_model(), "isa_ceiling": os.environ.get("ONEDNN_MAX_CPU_ISA") or None}


def reset_peak_gpu_memory(device: str) -> None:
    """Start counting peak GPU memory afresh (nothing on a CPU)."""
    device = torch_device(device)
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(torch.device(device))


def peak_gpu_mb(device: str) -> float | None:
    """Peak GPU memory torch allocated since the last reset, in MB; None on a CPU."""
    device = torch_device(device)
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20


def describe_device(device: str) -> dict[str, Any]:
    """What a record says about where a cell computed."""
    return {"device": visible_gpu_label(device), "device_name": device_name(device)}
