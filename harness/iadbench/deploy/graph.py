"""Building blocks of exportable inference graphs: uint8 images in, (score, map) out.

A detector that can be exported returns, from ``Detector.export_module()``, a
``torch.nn.Module`` whose ``forward(images)`` takes a uint8 (N, H, W, 3) batch at the
detector's input size and returns ``(score (N,), map (N, H, W))`` using only tensor
operations (no numpy, no Python branching on values), so that the ONNX exporter can
trace it. These helpers hold what the feature-based detectors share: the backbone
trunk with its normalisation, and the map post-processing.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from iadbench.backbones import FeatureExtractor
from iadbench.features import patch_maps_to_pixels


class _PaddedConv(torch.autograd.Function):
    """conv2d(pad(x)) in PyTorch; one ONNX ``Conv`` with asymmetric ``pads`` when exported.

    Traced as ``F.pad`` + ``conv2d`` it exports as a ``Pad`` node that onnxruntime does
    not fuse into the convolution (the pads are asymmetric): with the layout changes
    around it (its blocked NCHWc convolutions cannot take a Pad in between), lite0's
    four stride-2 pads cost ~4 of the ~11 ms it takes to stride 16 at 256 px on 2
    threads. ONNX's ``Conv`` takes per-side pads itself."""

    @staticmethod
    def forward(ctx, x, weight, bias, pad, stride, dilation, groups):  # noqa: ARG004
        return F.conv2d(F.pad(x, pad), weight, bias, stride, 0, dilation, groups)

    @staticmethod
    def symbolic(g, x, weight, bias, pad, stride, dilation, groups):
        left, right, top, bottom = pad
        inputs = [x, weight] if bias is None or bias.node().mustBeNone() else [x, weight, bias]
        return g.op("Conv", *inputs, kernel_shape_i=list(weight.type().sizes()[2:]),
                    pads_i=[top, left, bottom, right], strides_i=list(stride),
                    dilations_i=list(dilation), group_i=groups)


class StaticSamePadConv(nn.Module):
    """A TF-"same" convolution (timm's ``Conv2dSame``) with its pads fixed for one input
    size. ``Conv2dSame`` computes them from the traced input shape, which exports as a
    chain of Shape/Cast/Sub/Div nodes per convolution that onnxruntime cannot fold while
    the batch is dynamic (3 of the 10 ms lite0 takes to stride 16 at 256 px, 2 threads);
    constant pads export into the ``Conv`` node itself (``_PaddedConv``)."""

    def __init__(self, conv: nn.Conv2d, in_hw: tuple[int, int]):
        super().__init__()
        from timm.layers.padding import get_same_padding

        ph = get_same_padding(in_hw[0], conv.kernel_size[0], conv.stride[0], conv.dilation[0])
        pw = get_same_padding(in_hw[1], conv.kernel_size[1], conv.stride[1], conv.dilation[1])
        self.pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        # the convolution's own parameters (shared, not copied) and geometry
        self.register_parameter("weight", conv.weight)
        self.register_parameter("bias", conv.bias)
        self.stride, self.dilation, self.groups = conv.stride, conv.dilation, conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PaddedConv.apply(x, self.weight, self.bias, self.pad, self.stride, self.dilation, self.groups)


def fix_same_padding(steps: nn.ModuleList, size: tuple[int, int]) -> None:
    """Swap every ``Conv2dSame`` in ``steps`` (in place) for a ``StaticSamePadConv`` with
    the pads it gets for images of ``size``, found by one probe pass."""
    from timm.layers import Conv2dSame

    found: dict[str, tuple[int, int]] = {}

    def record(name: str):
        def hook(module, args) -> None:  # (a pre-hook returning a value would replace the input)
            found[name] = (int(args[0].shape[-2]), int(args[0].shape[-1]))

        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in steps.named_modules() if isinstance(m, Conv2dSame)]
    with torch.no_grad():
        x = torch.zeros(1, 3, int(size[0]), int(size[1]))  # only shapes matter
        for step in steps:
            x = step(x)
    for h in hooks:
        h.remove()
    for name, hw in found.items():
        parent, _, leaf = name.rpartition(".")
        holder = steps.get_submodule(parent) if parent else steps
        setattr(holder, leaf, StaticSamePadConv(getattr(holder, leaf), hw))


class TrunkFeatures(nn.Module):
    """uint8 (N, H, W, 3) -> {layer: (N, C, h, w)}: the extractor's normalisation and
    steps, without its input checks (they branch in Python, which tracing cannot keep).
    With ``size`` (the detector's input size) TF-"same" convolutions get constant pads
    (``fix_same_padding``); the graph then only takes images of that size, which every
    exported graph requires anyway."""

    def __init__(self, extractor: FeatureExtractor, layers: Sequence[str], size: tuple[int, int] | None = None):
        super().__init__()
        self.layers = [str(x) for x in layers]
        last = max(extractor.step_names.index(x) for x in self.layers)
        self.names = extractor.step_names[: last + 1]
        # A copy: tracing switches train/eval on the graph's modules and restores the
        # mode it found, which must never reach the live detector's batch norms.
        self.steps = copy.deepcopy(nn.ModuleList(list(extractor.steps)[: last + 1])).eval()
        # scale folds /255 and the weights' mean/std into one multiply-add
        self.register_buffer("scale", (1.0 / (255.0 * extractor.std)).clone())
        self.register_buffer("shift", (-extractor.mean / extractor.std).clone())
        if size is not None:
            fix_same_padding(self.steps, size)

    def train(self, mode: bool = True) -> TrunkFeatures:
        return super().train(False)  # frozen, like the extractor it copies

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float() * self.scale + self.shift
        out = {}
        for name, step in zip(self.names, self.steps):
            x = step(x)
            if name in self.layers:
                out[name] = x
        return out


class TrunkOutputs(nn.Module):
    """A trunk's layers as a tuple (what an ONNX graph returns), in ``trunk.layers`` order."""

    def __init__(self, trunk: TrunkFeatures):
        super().__init__()
        self.trunk = trunk

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.trunk(images)
        return tuple(feats[name] for name in self.trunk.layers)


class PixelMaps(nn.Module):
    """(N, h, w) patch scores -> (N, H, W) maps: the detectors' own post-processing."""

    def __init__(self, size: tuple[int, int], sigma: float):
        super().__init__()
        self.size, self.sigma = (int(size[0]), int(size[1])), float(sigma)

    def forward(self, patch_maps: torch.Tensor) -> torch.Tensor:
        return patch_maps_to_pixels(patch_maps, self.size, self.sigma)


def example_batch(size: tuple[int, int], n: int = 2, seed: int = 0) -> torch.Tensor:
    """A uint8 batch to trace with (values do not matter, shapes do)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size[0], size[1], 3), generator=g, dtype=torch.uint8)
