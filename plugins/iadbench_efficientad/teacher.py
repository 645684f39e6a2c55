"""EfficientAD's frozen teacher: either the default, built offline from pretrained
EfficientNet-Lite features, or a user's PDN teacher state dict.

Deviation from the paper (which distils a PDN from WideResNet-101 layer 2 + 3 features
on ImageNet, weights we cannot download here): the default teacher is the frozen
EfficientNet-Lite0 backbone cut at its stride 8 and 16 stages (``blocks.2``, 40 channels,
and ``blocks.3``, 80 channels, the strides of the paper's WideResNet layer 2 + 3),
upsampled bilinearly to the student's stride 4 grid, followed by a fixed random
projection with orthonormal columns (seeded, saved with the model) to the PDN's 384
channels. It plays the same role: a pretrained, frozen map of local descriptors. It
differs in receptive field (larger than the PDN's 33 px, so the student learns the
teacher's expectation given its own window) and in depth of the pretrained knowledge
(ImageNet classification features, not distilled WideResNet ones). The student is a
padded PDN whose grid is input/4. Version 2's teacher (``blocks.1`` + ``blocks.2``,
strides 4 + 8) scored 0.667 image AUROC on magnetic tile against 0.748 at 1,000 steps:
PaDiM on those stages alone scores 0.870 there, on ``blocks.2`` + ``blocks.3`` 0.948.

The projection only widens (rank 120 in 384 channels) to keep the PDN's shape.
``teacher_channels=None`` drops it: student and autoencoder as wide as the stages
(student 240 output channels instead of 768). Measured on magnetic tile (cached 256 px
images, seed 0, image / pixel AUROC of the combined map): at 1,000 steps the fit took
281 s against ~600 s and prediction ~40% less (182 against 333 ms/img, batch 16), at
0.733 / 0.692 against 0.748 / 0.715; at 2,000 steps (the projection's fit time) 0.746 /
0.697. The default keeps the projection, slightly ahead at the default length; the
difference is within a seed's spread on 740 test images (~0.02).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from iadbench.api import InputError
from iadbench.backbones import read_state_dict
from iadbench_efficientad.networks import PDNS

TEACHER_CHANNELS = 384


def read_teacher_state(path: str | Path, variant: str) -> dict[str, torch.Tensor]:
    """A PDN teacher state dict from ``path`` (safetensors, or a torch file read with
    ``weights_only=True``: never a general unpickle), checked against the variant."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"efficientad: teacher_weights is not a readable file: {p}")
    try:
        sd = read_state_dict(p)  # safetensors or weights_only torch; unwraps checkpoints, drops "module."
    except InputError as exc:
        raise InputError(f"efficientad: teacher_weights {p} cannot be used: {str(exc).splitlines()[0][:200]}") from None
    if not sd:
        raise InputError(f"efficientad: teacher_weights {p} holds no state dict of tensors")
    sd = {k.removeprefix("teacher."): v for k, v in sd.items()}
    net = PDNS[variant](TEACHER_CHANNELS, padding=False)
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise InputError(f"efficientad: teacher_weights {p} do not fit the {variant} PDN: {str(exc).splitlines()[0][:200]}") from None
    return sd


def orthonormal_projection(in_channels: int, out_channels: int, seed: int) -> torch.Tensor:
    """(out, in) matrix with orthonormal columns: distances between projected features
    equal distances between the backbone features."""
    g = torch.Generator().manual_seed(int(seed))
    a = torch.randn(out_channels, in_channels, generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # unique sign: reproducible
    return q.float().contiguous()


def project_backbone(feats: dict[str, torch.Tensor], layers: list[str], projection: torch.Tensor | None,
                     size: tuple[int, int]) -> torch.Tensor:
    """Backbone stages -> (N, C, h, w) on the grid ``size`` (the student's); stages
    on another grid are upsampled bilinearly. ``projection`` (out, in) maps the
    concatenated channels to ``out``; None keeps them as they are."""
    maps = [feats[name] for name in layers]
    size = tuple(size)
    parts = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps]
    x = torch.cat(parts, 1)
    return x if projection is None else torch.einsum("oc,nchw->nohw", projection, x)
