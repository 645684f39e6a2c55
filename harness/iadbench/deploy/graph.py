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
from torch import nn

from iadbench.backbones import FeatureExtractor
from iadbench.features import patch_maps_to_pixels


class TrunkFeatures(nn.Module):
    """uint8 (N, H, W, 3) -> {layer: (N, C, h, w)}: the extractor's normalisation and
    steps, without its input checks (they branch in Python, which tracing cannot keep)."""

    def __init__(self, extractor: FeatureExtractor, layers: Sequence[str]):
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
