"""PaDiM as one traceable graph (for ONNX export): the same scores as ``Padim.predict``,
with the fitted statistics as constants.

At batch 1 the Mahalanobis distance is a matrix-vector product per position: reading
the (P, d, d) inverse covariances (95 MB at 1024 positions and d = 152) is what it
costs, not arithmetic. The graph therefore holds the Cholesky factor of each inverse
covariance instead (``P = L L^T``, so ``d^2 = |L^T delta|^2``), cut into row blocks
that drop the zero lower triangle: (k + 1) / 2k of the matrix at k blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from iadbench.deploy.graph import PixelMaps, TrunkFeatures

# row blocks of the triangular factor: 4 read 62% of the full matrix (8 would read 56%
# for twice the graph nodes)
WHITEN_BLOCKS = 4


def whitening_blocks(inv_cov: torch.Tensor, blocks: int = WHITEN_BLOCKS) -> list[tuple[int, torch.Tensor]]:
    """(start, W) pairs with ``sum_b |delta[..., start_b:] @ W_b|^2`` the squared
    Mahalanobis distance: W_b (P, d - start_b, rows_b) is block b of ``L^T``'s rows from
    its diagonal on, transposed, for ``inv_cov = L L^T`` (factorised in float64).

    A matrix the factorisation refuses (positive semi-definite only, as rounding can
    leave one) gets one full block from its eigendecomposition instead, V sqrt(w)
    with negative rounding-level eigenvalues taken as 0: the same distances as eager."""
    inv = inv_cov.double()
    lower, info = torch.linalg.cholesky_ex(inv)
    if bool(info.any()):
        w, v = torch.linalg.eigh(inv)
        return [(0, (v * w.clamp_min(0).sqrt().unsqueeze(-2)).float().contiguous())]
    upper = lower.mT  # (P, d, d), zero below the diagonal
    d = upper.shape[-1]
    edges = sorted({round(d * b / blocks) for b in range(blocks + 1)})
    return [(s, upper[:, s:e, s:].transpose(1, 2).float().contiguous()) for s, e in zip(edges[:-1], edges[1:])]


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
        self.starts = []
        for b, (start, w) in enumerate(whitening_blocks(det.inv_cov)):
            self.starts.append(start)
            self.register_buffer(f"whiten{b}", w)
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
        delta = (emb - self.mean).transpose(0, 1)  # (P, N, d): batched products over positions
        sq = sum(torch.bmm(delta[..., s:], getattr(self, f"whiten{b}")).square().sum(-1)
                 for b, s in enumerate(self.starts))
        dist = sq.T.sqrt()
        pixel = self.maps(dist.view(-1, int(size[0]), int(size[1])))
        return pixel.flatten(1).amax(1), pixel
