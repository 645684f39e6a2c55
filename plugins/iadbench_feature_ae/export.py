"""The feature autoencoder as one traceable graph (for ONNX export): the same operations
as ``FeatureAE.predict``, the fitted normalisation and network as constants."""

from __future__ import annotations

import copy

import torch
from torch import nn

from iadbench.deploy.graph import PixelMaps, TrunkFeatures
from iadbench_feature_ae.detector import reconstruction_error, stack_layers


class FeatureAEGraph(nn.Module):
    """uint8 (N, H, W, 3) -> (score (N,), map (N, H, W))."""

    def __init__(self, det):
        super().__init__()
        if det.net is None or det.mean is None or det.std is None:
            raise RuntimeError("feature_ae: nothing fitted to export")
        self.trunk = TrunkFeatures(det.extractor, det.layers, det.input_size)
        self.layers = list(det.layers)
        self.net = copy.deepcopy(det.net).eval()  # a copy: tracing must not touch the live model
        self.register_buffer("mean", det.mean.float().clone())
        self.register_buffer("std", det.std.float().clone())
        self.maps = PixelMaps(det.input_size, det.sigma)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = stack_layers(self.trunk(images), self.layers)
        pixel = self.maps(reconstruction_error(self.net, emb, self.mean, self.std))
        return pixel.flatten(1).amax(1), pixel
