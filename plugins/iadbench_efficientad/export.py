"""EfficientAD as one traceable graph (for ONNX export): the same operations as
``EfficientAD.predict`` (teacher, student, autoencoder, the two maps normalised by the
held-out quantiles and averaged, padding and upsampling), every fitted value a constant."""

from __future__ import annotations

import copy

import torch
from torch import nn

from iadbench.deploy.graph import TrunkFeatures
from iadbench_efficientad.core import combined_map, grid_maps
from iadbench_efficientad.teacher import project_backbone


class EfficientADGraph(nn.Module):
    """uint8 (N, H, W, 3) -> (score (N,), map (N, H, W))."""

    def __init__(self, det):
        super().__init__()
        if det.quantiles is None or det.teacher_mean is None or det.teacher_std is None:
            raise RuntimeError("efficientad: nothing fitted to export")
        # copies: tracing must never reach the live detector's modules
        self.pdn_teacher = copy.deepcopy(det.pdn_teacher).eval() if det.pdn_teacher is not None else None
        if self.pdn_teacher is None:
            self.trunk = TrunkFeatures(det.extractor, det.layers, det.input_size)
            self.layers, self.grid = list(det.layers), det.student_grid
            projection = det.projection  # None: the stages' own channels (teacher_channels=None)
            self.register_buffer("projection", None if projection is None else projection.float().clone())
        self.student = copy.deepcopy(det.student).eval()
        self.ae = copy.deepcopy(det.ae).eval()
        self.register_buffer("teacher_mean", det.teacher_mean.float().clone())
        self.register_buffer("teacher_std", det.teacher_std.float().clone())
        self.q = [float(v) for v in det.quantiles]
        self.padding, self.size = bool(det.padding), tuple(det.input_size)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float() / 255.0
        if self.pdn_teacher is not None:
            raw = self.pdn_teacher(x)
        else:
            raw = project_backbone(self.trunk(images), self.layers, self.projection, self.grid)
        t = (raw - self.teacher_mean) / self.teacher_std
        pixel = combined_map(*grid_maps(t, self.student(x), self.ae(x)), self.q, self.padding, self.size)
        return pixel.flatten(1).amax(1), pixel
