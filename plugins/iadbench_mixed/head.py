"""The segmentation head of the mixed detector and its losses.

The head sees, at every position of the backbone's finest grid, the standardised
multi-stage embedding (the one PaDiM models) and the standardised unsupervised anomaly
map as one more channel, and returns one defect logit per position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SegmentationHead(nn.Module):
    """1x1 -> 3x3 -> 1x1 convolutions, plus a skip from the prior channel to the logit.

    The skip (a learnt scale and offset of the unsupervised map) lets the head say
    "as anomalous as the unsupervised map says" without learning it through the
    features; the convolutions add what the labelled defects teach."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels + 1, hidden, 1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, 1, 1),
        )
        self.prior_scale = nn.Parameter(torch.ones(1))
        self.prior_offset = nn.Parameter(torch.full((1,), -4.0))  # starts at "good" (p ~ 0.02)

    def forward(self, features: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """features (N, C, h, w), prior (N, h, w) -> logits (N, h, w)."""
        x = torch.cat([features, prior[:, None]], 1)
        return self.body(x)[:, 0] + self.prior_scale * prior + self.prior_offset


def top_k_mean(logits: torch.Tensor, k: int) -> torch.Tensor:
    """(N, h, w) -> (N,): the mean of each map's k largest values (k = 1: the max)."""
    flat = logits.flatten(1)
    return flat.topk(min(int(k), flat.shape[1]), dim=1).values.mean(1)


def balanced_focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal binary cross-entropy (Lin et al. 2017) on soft targets, with defect and
    background positions weighted to contribute equally however few defect positions
    there are (a defect is often < 1% of an image)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_true = p * target + (1 - p) * (1 - target)
    focal = (1 - p_true).pow(gamma) * bce
    pos = target.sum().clamp_min(1e-6)
    neg = (1 - target).sum().clamp_min(1e-6)
    return 0.5 * (focal * target).sum() / pos + 0.5 * (focal * (1 - target)).sum() / neg


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - Dice of the sigmoid map against the soft target, over the images given (the
    defective ones: Dice of an empty target says nothing)."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = (2 * (p * t).sum(1) + 1.0) / (p.sum(1) + t.sum(1) + 1.0)
    return (1 - dice).mean()
