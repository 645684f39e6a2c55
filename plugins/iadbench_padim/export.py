"""PaDiM as one traceable graph (for ONNX export): the same operations as
``Padim.predict``, with the fitted statistics as constants."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from iadbench.deploy.graph import PixelMaps, TrunkFeatures
from iadbench_padim.detector import mahalanobis_sq


class PadimGraph(nn.Module):
    """uint8 (N, H, W, 3) -> (score (N,), map (N, H, W))."""

    def __init__(self, det):
        super().__init__()
        if det.mean is None or det.inv_cov is None or det.channel_idx is None:
            raise RuntimeError("padim: nothing fitted to export")
        self.trunk = TrunkFeatures(det.extractor, det.layers, det.input_size)
        self.layers = list(det.layers)
        # per layer, the kept channels (the subset is sorted, so concatenation keeps its order)
        offset = 0
        self.keep: list[torch.Tensor] = []
        for c in self._channels(det.input_size):
            idx = det.channel_idx[(det.channel_idx >= offset) & (det.channel_idx < offset + c)] - offset
            self.keep.append(idx.long().clone())
            offset += c
        self.register_buffer("mean", det.mean.float().clone())
        self.register_buffer("inv_cov", det.inv_cov.float().clone())
        self.grid = tuple(det.grid) if det.grid else None
        self.maps = PixelMaps(det.input_size, det.sigma)

    def _channels(self, size: tuple[int, int]) -> list[int]:
        """Channels of each layer, from one probe through this graph's own trunk."""
        probe = torch.zeros(1, size[0], size[1], 3, dtype=torch.uint8)
        with torch.no_grad():
            feats = self.trunk(probe)
        return [feats[name].shape[1] for name in self.layers]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.trunk(images)
        maps = [feats[name] for name in self.layers]
        size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
        parts = []
        for m, idx in zip(maps, self.keep):
            m = m.index_select(1, idx)
            parts.append(m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="nearest"))
        emb = torch.cat(parts, 1).flatten(2).transpose(1, 2)
        dist = mahalanobis_sq(emb, self.mean, self.inv_cov).clamp_min(0).sqrt()
        pixel = self.maps(dist.view(-1, int(size[0]), int(size[1])))
        return pixel.flatten(1).amax(1), pixel
