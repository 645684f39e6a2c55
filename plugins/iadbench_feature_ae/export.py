"""The feature autoencoder as one traceable graph (for ONNX export): the same operations
as ``FeatureAE.predict``, the fitted normalisation and network as constants."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from iadbench.deploy.graph import PixelMaps, TrunkFeatures


class FeatureAEGraph(nn.Module):
    """uint8 (N, H, W, 3) -> (score (N,), map (N, H, W))."""

    def __init__(self, det):
        super().__init__()
        if det.net is None or det.mean is None or det.std is None:
            raise RuntimeError("feature_ae: nothing fitted to export")
        self.trunk = TrunkFeatures(det.extractor, det.layers)
        self.layers = list(det.layers)
        self.net = copy.deepcopy(det.net).eval()  # a copy: tracing must not touch the live model
        self.register_buffer("mean", det.mean.float().clone())
        self.register_buffer("std", det.std.float().clone())
        self.maps = PixelMaps(det.input_size, det.sigma)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.trunk(images)
        maps = [feats[name] for name in self.layers]
        size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
        emb = torch.cat([m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="nearest") for m in maps], 1)
        z = (emb - self.mean) / self.std
        pixel = self.maps((self.net(z) - z).pow(2).mean(1))
        return pixel.flatten(1).amax(1), pixel
