"""SSIM (Wang et al., IEEE TIP 2004) as a differentiable per-pixel map.

Gaussian window sigma 1.5, 11 taps (scikit-image's truncate 3.5), K1 = 0.01, K2 = 0.03,
population (not sample) covariances, data range 1: the paper's settings, which
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`` reproduces away from the borders (we
mirror-pad by 5 px; skimage reflects and then averages only the interior).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

SIGMA = 1.5
RADIUS = 5  # int(3.5 * 1.5 + 0.5)
K1, K2 = 0.01, 0.03


@functools.lru_cache(maxsize=4)
def _window(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    t = torch.arange(-RADIUS, RADIUS + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / SIGMA) ** 2)
    return (g / g.sum()).to(dtype)


def filter_kernels(channels: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The separable Gaussian as depthwise conv weights, (C, 1, 1, k) and (C, 1, k, 1);
    materialised, so an export graph can hold them as constants."""
    g = _window(dtype)
    return g.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), g.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)


def _filter(x: torch.Tensor, kernels: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Separable Gaussian filter of (N, C, H, W), borders mirrored."""
    c = x.shape[1]
    kx, ky = kernels if kernels is not None else (k.to(x.device) for k in filter_kernels(c, x.dtype))
    x = F.pad(x, (RADIUS, RADIUS, RADIUS, RADIUS), mode="reflect")
    x = F.conv2d(x, kx, groups=c)
    return F.conv2d(x, ky, groups=c)


def ssim_map(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0,
             kernels: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Per-pixel, per-channel SSIM of two (N, C, H, W) batches (``kernels``: see
    ``filter_kernels``, computed when not given)."""
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_a, mu_b = _filter(a, kernels), _filter(b, kernels)
    var_a = _filter(a * a, kernels) - mu_a**2
    var_b = _filter(b * b, kernels) - mu_b**2
    cov = _filter(a * b, kernels) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
