"""A feature autoencoder: reconstruct pretrained CNN features through a bottleneck.

A common industrial baseline (in the line of Shi et al., "Unsupervised anomaly
segmentation via deep feature reconstruction", Neurocomputing 2021, which uses 1x1
convolutions on multi-scale VGG features). Fit: the backbone stages PaDiM uses by default
(EfficientNet-Lite ``blocks.2`` + ``blocks.4``, the coarser nearest-upsampled to the
stride 8 grid and concatenated: 152 channels for lite0), standardised per channel over
the training images; a small convolutional encoder-decoder (1x1 -> 3x3 down to a
``latent``-channel bottleneck, 3x3 -> 1x1 back) trained with MSE on good images only
(Adam, lr 1e-3, batches of 8 feature maps, ``epochs`` passes). Predict: the per-position
squared reconstruction error averaged over channels, upsampled bilinearly to the input
and blurred (sigma 4, as PaDiM); image score = the map's maximum. Its natural threshold
is mean + 3 sigma of held-out good scores (``--threshold sigma:3``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from iadbench.api import Detector, FitContext, InputError, Prediction
from iadbench.backbones import ARCHS, canonical_arch, default_layers
from iadbench.features import BackboneMixin, patch_maps_to_pixels
from iadbench.progress import training_progress

DEFAULT_LAYERS = {"efficientnet": ["blocks.2", "blocks.4"]}  # PaDiM's defaults
DEFAULT_EPOCHS = 25
HIDDEN = 128


class FeatureAutoEncoder(nn.Module):
    def __init__(self, channels: int, latent: int, hidden: int = HIDDEN):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, hidden // 2, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden // 2, latent, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent, hidden // 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden // 2, hidden, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def stack_layers(feats: dict[str, torch.Tensor], layers: list[str]) -> torch.Tensor:
    """(N, C, h, w): ``layers`` of a feature dict concatenated at the finest grid
    (nearest upsampling). Eager scoring and the export graph both call this."""
    maps = [feats[name] for name in layers]
    size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
    return torch.cat([m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="nearest") for m in maps], 1)


def reconstruction_error(net: nn.Module, emb: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(N, h, w): squared reconstruction error of the standardised embedding, averaged
    over channels."""
    z = (emb - mean) / std
    return (net(z) - z).pow(2).mean(1)


class FeatureAE(BackboneMixin, Detector):
    name = "feature_ae"
    # a fit takes seconds on a small training set, where a 10% holdout leaves too few
    # calibration scores: the harness refits on folds there instead
    calibration_refits = True

    def __init__(
        self,
        input_size: int = 256,
        backbone: str = "efficientnet_lite0",
        layers: Sequence[str] | None = None,
        weights: str | None = None,
        latent: int = 32,
        epochs: int = DEFAULT_EPOCHS,
        lr: float = 1e-3,
        batch: int = 8,
        sigma: float = 4.0,
    ):
        arch = canonical_arch(backbone)
        layers = list(layers) if layers else list(DEFAULT_LAYERS.get(ARCHS[arch].family, default_layers(arch)))
        if int(epochs) < 1:
            raise InputError(f"feature_ae: epochs must be >= 1, got {epochs}")
        if int(latent) < 1:
            raise InputError(f"feature_ae: latent must be >= 1, got {latent}")
        if int(batch) < 1:
            raise InputError(f"feature_ae: batch must be >= 1, got {batch}")
        if int(input_size) < 32:
            raise InputError(f"feature_ae: input_size must be >= 32, got {input_size}")
        if float(lr) <= 0:
            raise InputError(f"feature_ae: lr must be > 0, got {lr}")
        self.params.update(layers=layers)  # resolved: a saved model keeps them
        self.input_size = (int(input_size), int(input_size))
        self.backbone, self.layers, self.weights = arch, layers, weights
        self.latent, self.epochs, self.lr, self.batch, self.sigma = int(latent), int(epochs), float(lr), int(batch), float(sigma)
        self.net: FeatureAutoEncoder | None = None
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.training_done: dict[str, Any] | None = None

    def embed(self, images: np.ndarray) -> torch.Tensor:
        """(N, C, h, w): the stages concatenated at the finest grid (nearest upsampling)."""
        return stack_layers(self.features(images), self.layers)

    def fit(self, images: np.ndarray, ctx: FitContext) -> None:
        self._check_images(images)
        emb = torch.cat([self.embed(images[i : i + 16]) for i in range(0, len(images), 16)]).to(self.device)
        # Seeded after the backbone is built: building it draws from the global RNG.
        torch.manual_seed(int(ctx.seed))
        gen = torch.Generator().manual_seed(int(ctx.seed))
        self.mean = emb.mean(dim=(0, 2, 3), keepdim=True)[:1]
        self.std = emb.std(dim=(0, 2, 3), keepdim=True)[:1].clamp_min(1e-6) if emb.numel() > emb.shape[1] else torch.ones_like(self.mean)
        z = (emb - self.mean) / self.std
        del emb
        self.net = FeatureAutoEncoder(z.shape[1], self.latent).to(self.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        per_epoch = -(-len(z) // self.batch)
        progress, task = training_progress(self.epochs * per_epoch, "feature_ae")
        self.net.train()
        with progress:
            for _ in range(self.epochs):
                order = torch.randperm(len(z), generator=gen).to(self.device)  # drawn on the CPU: one sequence on any device
                for s in range(0, len(z), self.batch):
                    xb = z[order[s : s + self.batch]]
                    loss = F.mse_loss(self.net(xb), xb)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    progress.advance(task)
        self.net.eval()
        self.training_done = {"epochs": self.epochs, "steps": self.epochs * per_epoch}

    @torch.no_grad()
    def error_grid(self, images: np.ndarray) -> torch.Tensor:
        """(N, h, w) per-position squared reconstruction error, averaged over channels."""
        if self.net is None or self.mean is None or self.std is None:
            raise RuntimeError("feature_ae: predict() before fit()")
        return reconstruction_error(self.net, self.embed(images).to(self.device), self.mean, self.std)

    def predict(self, images: np.ndarray) -> Prediction:
        grids = [self.error_grid(images[s : s + self.batch_size]) for s in range(0, len(images), self.batch_size)]
        maps = patch_maps_to_pixels(torch.cat(grids), self.input_size, self.sigma).cpu()
        return Prediction(scores=maps.flatten(1).amax(1).numpy(), maps=maps.numpy())

    def export_module(self) -> torch.nn.Module:
        from iadbench_feature_ae.export import FeatureAEGraph

        return FeatureAEGraph(self).eval()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.net is None or self.mean is None or self.std is None:
            raise RuntimeError("feature_ae: nothing fitted to save")
        return {"mean": self.mean, "std": self.std, **{f"net.{k}": v for k, v in self.net.state_dict().items()}}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if "mean" not in tensors or "std" not in tensors:
            raise InputError("feature_ae: saved state lacks mean/std")
        self.mean, self.std = tensors["mean"], tensors["std"]
        self.net = FeatureAutoEncoder(int(self.mean.shape[1]), self.latent).to(self.mean.device)
        try:
            self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        except RuntimeError as exc:
            raise InputError(f"feature_ae: saved network does not fit: {str(exc).splitlines()[0][:200]}") from None
        self.net.eval()

    def extra_config(self) -> dict[str, Any]:
        return {"training_done": self.training_done}

    def load_extra_config(self, config: dict[str, Any]) -> None:
        self.training_done = config.get("training_done")
