"""The networks of EfficientAD (Batzner et al., "EfficientAD: Accurate Visual Anomaly
Detection at Millisecond-Level Latencies", WACV 2024): the patch description networks
(PDN, small and medium; Table 6/7 of the paper) and the autoencoder (Table 8).

Attribute names (``conv1`` .. ``conv6``; ``encoder.enconv*``, ``decoder.deconv*``) are
the reference implementation's, so a published PDN teacher state dict loads as is.
Inputs are float images in [0, 1], (N, 3, H, W); each network applies the ImageNet
normalisation itself, as the reference code does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def scaled(channels: int, width: float) -> int:
    """A hidden layer's channels at ``width`` times the paper's (at least 8)."""
    return max(8, round(channels * width))


def _padded(conv: nn.Conv2d, x: torch.Tensor, pad: int) -> torch.Tensor:
    """``conv`` on ``x`` zero-padded by ``pad``: the padded PDN's convolutions. The pad
    is a separate op, not the convolution's own, because oneDNN has no fast kernel
    for the weight gradient of a convolution padded by 3 with a 4x4 kernel (its output
    larger than its input): that one fell back to a plain GEMM, 3x slower in bf16 and
    half of a training step. The result is the same."""
    return conv(F.pad(x, (pad, pad, pad, pad)) if pad else x)


class SmallPDN(nn.Module):
    """PDN-S: four convolutions, two 2x2 average pools; a 33x33 receptive field.
    Without padding a 256 px input gives a 56x56 grid; with padding (3 on the 4x4
    convolutions, 1 on the pools and the 3x3) the grid is input/4 (64x64).
    The ReLUs work in place: on the first convolution's 8M activations a copying ReLU
    was a fifth of a bfloat16 forward pass (same values, same gradients).
    ``width`` scales the hidden channels (128, 256, 256): 1 is the paper's network, the
    only width a published teacher has; below 1 a narrower student (the detector's
    ``student_width``)."""

    def __init__(self, out_channels: int = 384, padding: bool = False, width: float = 1.0):
        super().__init__()
        self.p = p = 1 if padding else 0
        c1, c2 = scaled(128, width), scaled(256, width)
        self.conv1 = nn.Conv2d(3, c1, 4)
        self.conv2 = nn.Conv2d(c1, c2, 4)
        self.conv3 = nn.Conv2d(c2, c2, 3)
        self.conv4 = nn.Conv2d(c2, out_channels, 4)
        self.pool1 = nn.AvgPool2d(2, 2, padding=p)
        self.pool2 = nn.AvgPool2d(2, 2, padding=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = self.pool1(F.relu(_padded(self.conv1, imagenet_normalise(x), 3 * p), inplace=True))
        x = self.pool2(F.relu(_padded(self.conv2, x, 3 * p), inplace=True))
        return self.conv4(F.relu(_padded(self.conv3, x, p), inplace=True))


class MediumPDN(nn.Module):
    """PDN-M: six convolutions (wider, two 1x1), the same 33x33 receptive field;
    ``width`` scales the hidden channels (256, 512, 512, 512) as PDN-S's."""

    def __init__(self, out_channels: int = 384, padding: bool = False, width: float = 1.0):
        super().__init__()
        self.p = p = 1 if padding else 0
        c1, c2 = scaled(256, width), scaled(512, width)
        self.conv1 = nn.Conv2d(3, c1, 4)
        self.conv2 = nn.Conv2d(c1, c2, 4)
        self.conv3 = nn.Conv2d(c2, c2, 1)
        self.conv4 = nn.Conv2d(c2, c2, 3)
        self.conv5 = nn.Conv2d(c2, out_channels, 4)
        self.conv6 = nn.Conv2d(out_channels, out_channels, 1)
        self.pool1 = nn.AvgPool2d(2, 2, padding=p)
        self.pool2 = nn.AvgPool2d(2, 2, padding=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = self.pool1(F.relu(_padded(self.conv1, imagenet_normalise(x), 3 * p), inplace=True))
        x = self.pool2(F.relu(_padded(self.conv2, x, 3 * p), inplace=True))
        x = F.relu(self.conv3(x), inplace=True)
        x = F.relu(_padded(self.conv4, x, p), inplace=True)
        return self.conv6(F.relu(self.conv5(x), inplace=True))


PDNS = {"small": SmallPDN, "medium": MediumPDN}


class _Encoder(nn.Module):
    def __init__(self, input_size: int = 256) -> None:
        super().__init__()
        self.enconv1 = nn.Conv2d(3, 32, 4, stride=2, padding=1)
        self.enconv2 = nn.Conv2d(32, 32, 4, stride=2, padding=1)
        self.enconv3 = nn.Conv2d(32, 64, 4, stride=2, padding=1)
        self.enconv4 = nn.Conv2d(64, 64, 4, stride=2, padding=1)
        self.enconv5 = nn.Conv2d(64, 64, 4, stride=2, padding=1)
        # The paper's 8x8 kernel at 256 px; input/32 elsewhere, so that any input size
        # (tests use 64 px) still ends in a 1x1 bottleneck of 64 values.
        self.enconv6 = nn.Conv2d(64, 64, max(1, input_size // 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.enconv1, self.enconv2, self.enconv3, self.enconv4, self.enconv5):
            x = F.relu(conv(x))
        return self.enconv6(x)


class _Decoder(nn.Module):
    def __init__(self, out_channels: int, padding: bool):
        super().__init__()
        self.padding = padding
        for i in range(1, 7):
            setattr(self, f"deconv{i}", nn.Conv2d(64, 64, 4, padding=2))
        self.deconv7 = nn.Conv2d(64, 64, 3, padding=1)
        self.deconv8 = nn.Conv2d(64, out_channels, 3, padding=1)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        # Bilinear upsampling between convolutions; the sizes are the paper's (for
        # 256 px: 3, 8, 15, 32, 63, 127, then the PDN's grid), scaled with the input.
        sizes = [(h // 64 - 1, w // 64 - 1), (h // 32, w // 32), (h // 16 - 1, w // 16 - 1),
                 (h // 8, w // 8), (h // 4 - 1, w // 4 - 1), (h // 2 - 1, w // 2 - 1)]
        sizes = [(max(1, a), max(1, b)) for a, b in sizes]  # below 128 px the first is 0
        for i, s in enumerate(sizes, start=1):
            x = F.interpolate(x, size=s, mode="bilinear")
            x = self.dropout(F.relu(getattr(self, f"deconv{i}")(x)))
        last = (math.ceil(h / 4), math.ceil(w / 4)) if self.padding else (math.ceil(h / 4) - 8, math.ceil(w / 4) - 8)
        x = F.interpolate(x, size=last, mode="bilinear")
        return self.deconv8(F.relu(self.deconv7(x)))


class AutoEncoder(nn.Module):
    """Image -> 64-value bottleneck -> teacher-like features on the PDN's grid; it sees
    the whole image, so it models the logical (global) constraints the PDN cannot."""

    def __init__(self, out_channels: int = 384, padding: bool = False, input_size: int = 256):
        super().__init__()
        self.encoder = _Encoder(input_size)
        self.decoder = _Decoder(out_channels, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(imagenet_normalise(x)), tuple(x.shape[-2:]))
