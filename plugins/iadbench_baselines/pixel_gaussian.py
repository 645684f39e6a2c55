"""Per-pixel Gaussian on blurred colours: each pixel position keeps the mean and
standard deviation of the good images; a test pixel scores its squared z-distance.

It needs aligned parts (objects photographed in the same pose) and fails on textures
that shift, which is the point of a floor.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from iadbench.api import Detector, FitContext, Prediction


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return x


class PixelGaussian(Detector):
    name = "pixel_gaussian"
    out_of_fold = "leave-one-out"

    def __init__(self, input_size: int = 128, blur_sigma: float = 2.0, min_std: float = 0.02):
        self.input_size = (input_size, input_size)
        self.blur_sigma = blur_sigma
        self.min_std = min_std
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def _prep(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return _blur(x, self.blur_sigma)

    def fit(self, images: np.ndarray, ctx: FitContext) -> None:
        x = self._prep(images)
        self.mean = x.mean(0)
        self.std = x.std(0, unbiased=False).clamp_min(self.min_std)

    def fit_out_of_fold(self, images: np.ndarray, ctx: FitContext) -> Prediction:
        """Fit, and score each image against the mean and spread of the others: from the
        sums of x and x^2 less its own terms (float64), exactly a refit without it."""
        if len(images) < 3:
            raise ValueError("pixel_gaussian: leave-one-out scores need at least 3 training images")
        x = self._prep(images)
        self.mean = x.mean(0)
        self.std = x.std(0, unbiased=False).clamp_min(self.min_std)
        xd = x.double()
        n, s1, s2 = len(xd), xd.sum(0), (xd * xd).sum(0)
        mean = (s1 - xd) / (n - 1)
        var = ((s2 - xd * xd) / (n - 1) - mean * mean).clamp_min(0)
        z = ((xd - mean) / var.sqrt().clamp_min(self.min_std)) ** 2
        return self._maps(z.float())

    def predict(self, images: np.ndarray) -> Prediction:
        if self.mean is None or self.std is None:
            raise RuntimeError("pixel_gaussian: predict() before fit()")
        return self._maps(((self._prep(images) - self.mean) / self.std) ** 2)

    def _maps(self, z: torch.Tensor) -> Prediction:
        maps = _blur(z.sum(1, keepdim=True), self.blur_sigma)[:, 0]
        maps = maps.cpu()
        return Prediction(scores=maps.flatten(1).amax(1).numpy(), maps=maps.numpy())

    def state_tensors(self) -> dict[str, torch.Tensor]:
        assert self.mean is not None and self.std is not None
        return {"mean": self.mean, "std": self.std}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.mean, self.std = tensors["mean"], tensors["std"]
