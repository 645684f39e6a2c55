"""What the detectors built on ``iadbench.backbones`` share: a lazily built extractor,
features through the shared cache, and the backbone-only forward of the cost table."""

from __future__ import annotations

import numpy as np
import torch

from iadbench.backbones import FeatureExtractor
from iadbench.errors import InputError
from iadbench.features.cache import extract_features


class BackboneMixin:
    """Lazily built extractor, cached feature extraction and the cost-table forward,
    for detectors built on ``iadbench.backbones``. Needs ``self.backbone``,
    ``self.layers``, ``self.weights`` and ``self.input_size``. ``features`` come back
    on the CPU, wherever the backbone runs."""

    backbone: str
    layers: list[str]
    weights: str | None
    input_size: tuple[int, int]
    _extractor: FeatureExtractor | None = None
    batch_size: int = 16

    @property
    def extractor(self) -> FeatureExtractor:
        """Built on first use, on the detector's device (``Detector.to`` moves it later)."""
        if self._extractor is None:
            self._extractor = FeatureExtractor(self.backbone, self.layers, self.weights).to(getattr(self, "device", "cpu"))
        return self._extractor

    def backbone_to(self, device: str) -> None:
        """Only the backbone on ``device``, for detectors whose fitted statistics stay
        on the CPU on purpose (their ``to`` calls this and sets ``self.device``)."""
        if self._extractor is not None:
            self._extractor.to(device)
        self.device = str(device)

    def _check_images(self, images: np.ndarray) -> None:
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"images must be a uint8 array (N, H, W, 3); got {getattr(images, 'shape', type(images))}")
        if tuple(images.shape[1:3]) != tuple(self.input_size):
            raise InputError(f"images are {images.shape[1]}x{images.shape[2]}, the detector expects {self.input_size[0]}x{self.input_size[1]}")
        if len(images) == 0:
            raise InputError("no images")

    def features(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        self._check_images(images)
        return extract_features(self.extractor, images, self.layers, batch_size=self.batch_size)

    def backbone_forward(self, images: np.ndarray) -> None:
        """The backbone alone at the given batch, never the cache (for the cost table)."""
        self._check_images(images)
        self.extractor(images)
