"""The loss and normalisation rules of EfficientAD, as small functions that can be
tested against numpy."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile of all elements with linear interpolation (numpy's default).
    Exact for any size (torch.quantile refuses more than 2**24 elements)."""
    flat = values.reshape(-1)
    n = flat.numel()
    pos = q * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    v_lo = torch.kthvalue(flat, lo + 1).values
    v_hi = torch.kthvalue(flat, hi + 1).values if hi != lo else v_lo
    return v_lo + (pos - lo) * (v_hi - v_lo)


def hard_feature_loss(distance: torch.Tensor, q: float = 0.999) -> torch.Tensor:
    """Mean of the squared errors at or above their q-quantile (the paper's hard-feature
    mining: with q = 0.999 only the hardest 0.1% of (channel, position) errors train
    the student). The threshold is a constant; gradients flow through kept errors."""
    with torch.no_grad():
        d_hard = quantile(distance.detach(), q)
    return distance[distance >= d_hard].mean()


def map_quantiles(maps: torch.Tensor, qa: float = 0.9, qb: float = 0.995) -> tuple[float, float]:
    """(q_a, q_b) of every value of a stack of maps (held-out good images)."""
    return float(quantile(maps.float(), qa)), float(quantile(maps.float(), qb))


def normalise_map(maps: torch.Tensor, q_a: float, q_b: float) -> torch.Tensor:
    """The paper's linear map normalisation: q_a -> 0 and q_b -> 0.1, so that the
    student-teacher and autoencoder maps weigh equally when averaged."""
    span = q_b - q_a
    if span <= 0:
        span = 1e-12  # constant maps on the held-out images: keep the map finite
    return 0.1 * (maps - q_a) / span


def grid_maps(t: torch.Tensor, s: torch.Tensor, ae_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(student-teacher, student-autoencoder) maps (N, h, w) on the PDN grid, from the
    standardised teacher output t (N, C, ...), the student's 2C channels and the
    autoencoder's output. Eager scoring and the export graph both call this."""
    if t.shape[-2:] != s.shape[-2:]:  # a backbone grid not a multiple of the PDN's
        t = F.interpolate(t, size=s.shape[-2:], mode="bilinear", align_corners=False)
    c = t.shape[1]
    return (t - s[:, :c]).pow(2).mean(1), (ae_out - s[:, c:]).pow(2).mean(1)


def combined_map(map_st: torch.Tensor, map_ae: torch.Tensor, q: list[float], padding: bool,
                 size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) anomaly map: the two grid maps normalised by their held-out quantiles
    ``q`` (st q_a, q_b, ae q_a, q_b) and averaged, padded back to the input's grid when
    the PDN ran without padding, upsampled to ``size``."""
    combined = 0.5 * normalise_map(map_st, q[0], q[1]) + 0.5 * normalise_map(map_ae, q[2], q[3])
    if not padding:
        combined = F.pad(combined, (4, 4, 4, 4))
    return F.interpolate(combined.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]
