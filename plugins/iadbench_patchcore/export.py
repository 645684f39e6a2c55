"""PatchCore as one traceable graph (for ONNX export): the same operations as
``PatchCore.predict`` with exact search, batched over images, the memory bank a constant.

The search in the graph is the exact one (||q||^2 + ||m||^2 - 2 q.m and a min over the
bank) whatever the model's ``search``: an ONNX graph has no faiss. Image scores equal
eager ones under any search (the approximate ones re-check each image's top patches exactly);
maps equal the exact search's. ``adbench export`` writes this graph.

``PatchCoreFront`` is the graph up to the embedding: the onnx runtime of a model with an
approximate search (IVF-PQ, the default, or HNSW) runs it in onnxruntime and searches
with faiss in Python.
"""

from __future__ import annotations

import torch
from torch import nn

from iadbench.deploy.graph import PixelMaps, TrunkFeatures
from iadbench_patchcore.core import image_scores
from iadbench_patchcore.detector import locally_aware


class PatchCoreGraph(nn.Module):
    """uint8 (N, H, W, 3) -> (score (N,), map (N, H, W))."""

    def __init__(self, det):
        super().__init__()
        bank, bank_sq = det._bank()
        self.front = PatchCoreFront(det)  # the embedding, as the split runtime runs it
        self.register_buffer("bank", bank.float().clone())
        self.register_buffer("bank_t", bank.float().T.contiguous())
        self.register_buffer("bank_sq", bank_sq.float().clone())
        self.register_buffer("neighbourhoods", det.neighbourhoods().clone())  # (M, b), computed at fit
        self.maps = PixelMaps(det.input_size, det.sigma)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.front(images)
        n, c, h, w = emb.shape
        q = emb.permute(0, 2, 3, 1).reshape(n, h * w, c)
        flat = q.reshape(n * h * w, c)
        # ||m||^2 - 2 q.m as one Gemm; ||q||^2 is the same along a row, so it is added
        # after the min: one (N*P, bank) buffer and one pass over it instead of four
        part = torch.addmm(self.bank_sq.unsqueeze(0), flat, self.bank_t, alpha=-2.0)
        m2, index = part.min(1)
        dist = (m2 + (flat * flat).sum(1)).clamp_min(0).sqrt().view(n, h * w)
        score = image_scores(q, dist, index.view(n, h * w), self.neighbourhoods, self.bank)
        return score, self.maps(dist.view(n, h, w))


class PatchCoreFront(nn.Module):
    """uint8 (N, H, W, 3) -> locally aware embedding (N, C, h, w): the part of
    ``PatchCore.predict`` before the bank search, for the split onnx runtime
    (``PatchCore.predict_from_front`` does the search, eq. 7 and the maps)."""

    def __init__(self, det):
        super().__init__()
        self.trunk = TrunkFeatures(det.extractor, det.layers, det.input_size)
        self.layers, self.layer_dim = list(det.layers), det.layer_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return locally_aware(self.trunk(images), self.layers, self.layer_dim)
