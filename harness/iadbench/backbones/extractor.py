"""A pretrained backbone as a multi-scale feature extractor: the network cut after the
deepest requested layer, normalising its input for the weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from iadbench.backbones.archs import ARCHS, canonical_arch, default_layers, timm_model
from iadbench.backbones.weights import resolve_weights
from iadbench.errors import InputError


def _trunk(model: nn.Module, family: str) -> list[tuple[str, nn.Module]]:
    """The network as a sequence of named steps, each one's output addressable."""
    if family == "efficientnet":
        steps: list[tuple[str, nn.Module]] = [("conv_stem", model.conv_stem), ("bn1", model.bn1)]
        steps += [(f"blocks.{i}", blk) for i, blk in enumerate(model.blocks)]
        return steps
    return [
        ("conv1", model.conv1), ("bn1", model.bn1), ("act1", model.act1), ("maxpool", model.maxpool),
        ("layer1", model.layer1), ("layer2", model.layer2), ("layer3", model.layer3), ("layer4", model.layer4),
    ]


def to_input_tensor(images: Any) -> torch.Tensor:
    """uint8 NHWC (numpy or torch) or float NCHW in [0, 1] -> float NCHW in [0, 1]."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"images must be uint8 (N, H, W, 3); got {images.dtype} {images.shape}")
        array = np.ascontiguousarray(images)
        if not array.flags.writeable:  # e.g. decoded from a request's bytes; torch warns on read-only memory
            array = array.copy()
        images = torch.from_numpy(array).permute(0, 3, 1, 2)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise InputError("images must be a 4-d array or tensor")
    if images.dtype == torch.uint8:
        if images.shape[1] != 3 and images.shape[-1] == 3:
            images = images.permute(0, 3, 1, 2)
        return images.float().div_(255.0)
    if images.shape[1] != 3:
        raise InputError(f"float images must be (N, 3, H, W); got {tuple(images.shape)}")
    return images.float()


class FeatureExtractor(nn.Module):
    """A pretrained backbone cut after its deepest requested layer.

    ``forward(images)`` takes uint8 images (N, H, W, 3) / (N, 3, H, W) or float
    (N, 3, H, W) in [0, 1], normalises them for the weights, and returns
    ``{layer: (N, C, h, w) float32}`` on the device the module was moved to (``.to``).
    ``forward(images, layers=[...])`` may ask for any
    step on the path (the feature cache uses this to store stages computed anyway).
    """

    def __init__(self, arch: str, layers: Sequence[str], weights: str | Path | None = None):
        super().__init__()
        arch = canonical_arch(arch)
        info = ARCHS[arch]
        layers = [str(x) for x in layers]
        if not layers:
            raise InputError("a feature extractor needs at least one layer")
        sd, wid = resolve_weights(arch, weights)
        model = timm_model(arch)
        model.load_state_dict(sd, strict=True)
        steps = _trunk(model, info.family)
        names = [n for n, _ in steps]
        unknown = [x for x in layers if x not in names]
        if unknown:
            raise InputError(f"unknown layer(s) {unknown} for {arch} (choose from {names})")
        last = max(names.index(x) for x in layers)
        self.arch, self.layers, self.weights_id = arch, layers, wid
        self.step_names = names[: last + 1]
        self.steps = nn.ModuleList(m for _, m in steps[: last + 1])
        self.register_buffer("mean", torch.tensor(info.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(info.std).view(1, 3, 1, 1), persistent=False)
        self.eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(False)  # frozen: batch-norm statistics stay the pretrained ones

    @torch.inference_mode()
    def forward(self, images: Any, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        want = list(self.layers if layers is None else layers)
        missing = [x for x in want if x not in self.step_names]
        if missing:
            raise InputError(f"layer(s) {missing} not computed by this extractor ({self.step_names})")
        # the weights' device (Module.to moved them); images arrive on the CPU
        x = (to_input_tensor(images).to(self.mean.device) - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for name, step in zip(self.step_names, self.steps):
            x = step(x)
            if name in want:
                out[name] = x
            if len(out) == len(want):
                break
        return {k: out[k] for k in want}

    @property
    def path_layers(self) -> list[str]:
        """Every step this extractor computes on its way to the deepest layer."""
        return list(self.step_names)


def create_feature_extractor(
    arch: str, layers: Sequence[str] | None = None, weights: str | Path | None = None
) -> FeatureExtractor:
    """An eval-mode FeatureExtractor for ``layers`` (default: the stride 4/8/16 stages)."""
    return FeatureExtractor(arch, layers if layers else default_layers(arch), weights)
