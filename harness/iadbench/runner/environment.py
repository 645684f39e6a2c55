"""What a run ran on: versions, git sha, CPU, threads, device. Stored in run.json and shown
in leaderboard footers, because a number without its environment is not comparable."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from iadbench.devices import cpu_model
from iadbench.switches import env_flag

PACKAGES = ("iadbench", "torch", "torchvision", "timm", "anomalib", "numpy", "scikit-learn")


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def describe(threads_per_cell: int, workers: int, plugin_versions: dict[str, str | None],
             device: str = "cpu") -> dict[str, Any]:
    return {
        "packages": {name: _version(name) for name in PACKAGES},
        "plugins": plugin_versions,
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "workers": workers,
        "torch_threads_per_cell": threads_per_cell,
        "feature_cache": "on" if env_flag("IADBENCH_FEATURE_CACHE", default=True) else "off",
        # where cells computed (resolved: cpu, cuda or cuda:N) and the GPUs, by name
        "device": device,
        **({"gpus": _gpu_names()} if device != "cpu" else {}),
    }


def _gpu_names() -> list[str]:
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
