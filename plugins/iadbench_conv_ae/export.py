"""The convolutional autoencoder as one traceable graph (for ONNX export): the same
operations as ``ConvAE.predict`` (pixels to [0, 1], reconstruction, MSE + SSIM residual,
blur), the network's weights as constants."""

from __future__ import annotations

import copy

import torch
from torch import nn

from iadbench.features import gaussian_blur


class ConvAEGraph(nn.Module):
    """uint8 (N, H, W, 3) -> (score (N,), map (N, H, W))."""

    def __init__(self, det):
        super().__init__()
        if not det.fitted:
            raise RuntimeError("conv_ae: nothing fitted to export")
        self.net = copy.deepcopy(det.net).eval()  # a copy: tracing must not touch the live model
        self.sigma = float(det.sigma)
        from iadbench_conv_ae.ssim import filter_kernels

        kx, ky = filter_kernels(3)
        self.register_buffer("kx", kx)  # the SSIM window as constants of the graph
        self.register_buffer("ky", ky)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from iadbench_conv_ae.detector import residual_map

        x = images.permute(0, 3, 1, 2).float() / 255.0
        pixel = gaussian_blur(residual_map(x, self.net(x), (self.kx, self.ky)), self.sigma)
        return pixel.flatten(1).amax(1), pixel
