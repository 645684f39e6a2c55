"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly
Detection and Localization", ICPR 2021).

Fit: the backbone stages' features (by default the stride 8 and 16 stages for
EfficientNet-Lite, the first three for ResNets; see DEFAULT_LAYERS), the coarser ones
upsampled (nearest) to the finest grid and concatenated, reduced to a fixed random
channel subset (by default all channels for EfficientNet-Lite); at every grid
position a Gaussian: mean and covariance + 0.01 I. The artifact keeps what ``update``
needs to fold more images in exactly, in the smaller of two forms, and derives the
inverse at load: with fewer images than channels (N <= d) the training embeddings
themselves, float32 (P x N x d: the fit's float64 statistics are recomputed from them
bit for bit; 18 MB instead of 91 for a factory category, 29 images, d = 152), else the
image count and the covariance's lower triangle in float64 (P x d (d + 1) / 2, about
inv_cov's float32 bytes).
Mean and covariance are computed in float64 since this was added: predictions moved by
version 4's float32 round-off (<= 2e-5 relative on scores; nearer float64 truth), so
the version stays. Folders saved before hold inv_cov and predict as before.
Predict: the Mahalanobis distance of each position's embedding (one batched einsum),
upsampled bilinearly to the input size and smoothed (sigma 4); image score = max.

Against anomalib 2.7's PadimModel, MultiVariateGaussian and AnomalyMapGenerator fed the
same features and channel indices (tests/methods/test_anomalib_parity.py): the
embedding is bit-identical (same nearest upsampling; anomalib keeps its random
channel order, we sort the subset and upsample only kept channels, which changes no
distance); means agree to float32 round-off; maps and scores from the same statistics
agree to 1e-5 of the map maximum, as does the post-processing (bilinear,
align_corners=False; blur sigma 4, 33 taps, scipy "mirror" borders; the reference
code's scipy default "reflect" differs within 16 px of the border). One deliberate
difference: we regularise with ``epsilon`` I (0.01, the paper's and the reference
code's), anomalib adds a further 1e-5 I. Where there are fewer images than channels
most covariance eigenvalues are epsilon, so the inverse covariances differ by ~1e-3
relative; on MVTec AD bottle at 256 px (53 train, 42 test images) maps differ by at
most 4e-4 of their maximum and image and pixel AUROC are equal to 5 digits. We invert
by Cholesky in float64, anomalib by float32 linalg.inv.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from iadbench.api import Detector, FitContext, InputError, Prediction
from iadbench.backbones import ARCHS, canonical_arch, default_layers
from iadbench.features import BackboneMixin, patch_maps_to_pixels

# Defaults chosen by the defaults study (leaderboards/defaults-study.md: the real
# Magnetic Tile set, the factory's five categories, MVTec AD bottle; each dataset
# weighted by its test images; rule in docs/defaults.md). For lite0
# the stride 8 + 16 stages (blocks.2 + blocks.4) with all their 152 channels at 256 px
# scored the best weighted mean image AUROC, 0.960, against 0.956 for all 176 channels
# of the stride 4/8/16 stages, 0.949 for d=100 and 0.920 for the old default d=50
# (magnetic tile 0.966 / 0.963 / 0.953 / 0.919); its model is 5x smaller than d=176's
# (a 32x32 grid instead of 64x64). 320 px (version 3, picked when every dataset weighed
# alike) scores 0.954: better on the factory's fabric, wood and nut, worse on magnetic
# tile (0.954 vs 0.966), and it costs a 40x40 grid (142 MB model, 91 at 256 px).
# lite1 has lite0's channels; lite2 follows the same rule untested (48 + 120). ResNets
# keep the paper's layer1-3 with d = 100 / 550 (not studied).
DEFAULT_LAYERS = {"efficientnet": ["blocks.2", "blocks.4"]}
DEFAULT_N_FEATURES = {
    "resnet18": 100,
    "wide_resnet50_2": 550,
    "tf_efficientnet_lite0": 152,
    "tf_efficientnet_lite1": 152,
    "tf_efficientnet_lite2": 168,
}


# Positions per block of the leave-one-out pass (its float64 copies: block x N x d).
LOO_POSITIONS = 128


@contextmanager
def single_thread():
    """One torch thread inside: torch's batched LAPACK loop over thousands of small
    matrices runs ~10x slower when each tiny factorisation is itself multi-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def leave_one_out_mahalanobis_sq(centred: torch.Tensor, scatter: torch.Tensor, epsilon: float,
                                 n: int | None = None) -> torch.Tensor:
    """(P, N) squared Mahalanobis distance of each training embedding to the Gaussian fitted
    at its position on the other N - 1 embeddings, exactly, from the full fit's statistics.
    ``n``: the images the statistics hold, when ``centred`` holds only some of them (an
    update scores its new images so); by default all of them.

    ``centred`` (P, N, d) are the embeddings less the full mean, ``scatter`` (P, d, d) the
    sum of their outer products. Without image i (d_i its centred embedding) the mean
    moves to mean - d_i / (N - 1), so x_i - mean_-i = N / (N - 1) d_i, and the scatter is
    downdated by rank one, S_-i = S - N / (N - 1) d_i d_i^T. With A = S / (N - 2) + eps I
    the left-out covariance is A - c d_i d_i^T, c = N / ((N - 1)(N - 2)), and by
    Sherman-Morrison d_i^T (A - c d_i d_i^T)^-1 d_i = m / (1 - c m), m = d_i^T A^-1 d_i.
    One factorisation per position serves every image, in float64: 1 - c m cancels for
    an image that dominates its position's spread."""
    n = int(n) if n is not None else centred.shape[1]
    a = scatter.double() / (n - 2)
    a.diagonal(dim1=1, dim2=2).add_(epsilon)
    with single_thread():
        a_inv = torch.cholesky_inverse(torch.linalg.cholesky(a))
    d = centred.double()
    m = (torch.bmm(d, a_inv) * d).sum(-1)  # (P, N)
    c = n / ((n - 1) * (n - 2))
    return (n / (n - 1)) ** 2 * m / (1.0 - c * m)


def mahalanobis_sq(emb: torch.Tensor, mean: torch.Tensor, inv_cov: torch.Tensor) -> torch.Tensor:
    """Squared Mahalanobis distances, emb (N, P, d), mean (P, d), inv_cov (P, d, d) -> (N, P)."""
    delta = (emb - mean).transpose(0, 1)  # (P, N, d): one batched product over positions
    return (torch.bmm(delta, inv_cov) * delta).sum(-1).T


def pack_lower(m: torch.Tensor) -> torch.Tensor:
    """(P, d, d) -> (P, d (d + 1) / 2): the lower triangles, row by row."""
    r, c = torch.tril_indices(m.shape[-1], m.shape[-1])
    return m[:, r, c].contiguous()


def unpack_lower(packed: torch.Tensor, d: int) -> torch.Tensor:
    """The symmetric (P, d, d) matrices whose lower triangles ``pack_lower`` packed."""
    r, c = torch.tril_indices(d, d)
    m = packed.new_zeros(packed.shape[0], d, d)
    m[:, c, r] = packed
    m[:, r, c] = packed  # lower last: the diagonal and every entry Cholesky reads are the packed ones
    return m


class Padim(BackboneMixin, Detector):
    name = "padim"
    out_of_fold = "leave-one-out"
    update_method = "exact running statistics (mean and covariance of the union)"

    def __init__(
        self,
        input_size: int = 256,
        backbone: str = "efficientnet_lite0",
        layers: Sequence[str] | None = None,
        weights: str | None = None,
        n_features: int | None = None,
        epsilon: float = 0.01,
        sigma: float = 4.0,
    ):
        arch = canonical_arch(backbone)
        layers = list(layers) if layers else list(DEFAULT_LAYERS.get(ARCHS[arch].family, default_layers(arch)))
        n_features = int(n_features) if n_features else DEFAULT_N_FEATURES[arch]
        if n_features < 1:
            raise InputError(f"padim: n_features must be >= 1, got {n_features}")
        if int(input_size) < 32:
            raise InputError(f"padim: input_size must be >= 32, got {input_size}")
        self.params.update(layers=layers, n_features=n_features)  # resolved: a saved model keeps them
        self.input_size = (int(input_size), int(input_size))
        self.backbone, self.layers, self.weights = arch, layers, weights
        self.n_features, self.epsilon, self.sigma = n_features, float(epsilon), float(sigma)
        self.channel_idx: torch.Tensor | None = None
        self.mean: torch.Tensor | None = None
        self.inv_cov: torch.Tensor | None = None
        # What an exact update needs (kept in the artifact; inv_cov is derived from them):
        # the covariance's lower triangle (P, d (d + 1) / 2), float64, and the image count.
        self.cov_tril: torch.Tensor | None = None
        self.mean64: torch.Tensor | None = None  # the mean before its float32 rounding
        self.n_images: int | None = None
        # The training embeddings (P, N, d) float32, held while N <= d: then they are the
        # smaller artifact, and the statistics follow from them exactly.
        self.train_emb: torch.Tensor | None = None
        self.grid: tuple[int, int] | None = None

    def to(self, device: str):
        """The backbone on ``device``; the Gaussians' float64 statistics stay on the CPU (their Cholesky factorisations are what the float64 reference fixes)."""
        self.backbone_to(device)
        return self

    def embed(self, images: np.ndarray) -> torch.Tensor:
        """(N, P, d) embeddings at the finest grid (P = h * w), channel subset applied."""
        if self.channel_idx is None:
            raise RuntimeError("padim: channel subset not chosen (fit first)")
        return self._embed(self.features(images))

    def _embed(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        maps = [feats[name] for name in self.layers]
        size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
        parts, offset = [], 0
        for m in maps:
            # Select the subset first, so only kept channels are upsampled (nearest).
            idx = self.channel_idx[(self.channel_idx >= offset) & (self.channel_idx < offset + m.shape[1])] - offset
            offset += m.shape[1]
            m = m.index_select(1, idx)
            parts.append(m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="nearest"))
        self.grid = (int(size[0]), int(size[1]))
        return torch.cat(parts, 1).flatten(2).transpose(1, 2).contiguous()

    def fit(self, images: np.ndarray, ctx: FitContext) -> None:
        self._fit(images, ctx, keep=False)

    def fit_out_of_fold(self, images: np.ndarray, ctx: FitContext) -> Prediction:
        """Fit as ``fit`` does, and score every training image with the exact leave-one-out
        Gaussians (see ``leave_one_out_mahalanobis_sq``): no refit, no second backbone pass."""
        if len(images) < 3:
            raise InputError("padim: leave-one-out scores need at least 3 training images")
        centred, scatter = self._fit(images, ctx, keep=True)
        return self._leave_one_out(centred, scatter, centred.shape[1])

    def _leave_one_out(self, centred: torch.Tensor, scatter: torch.Tensor, n: int) -> Prediction:
        """Leave-one-out predictions of the images whose centred embeddings (P, N', d) are
        given, from the scatter (P, d, d) of all ``n`` images the model holds."""
        count = centred.shape[1]
        out = torch.empty(count, centred.shape[0])
        for s in range(0, centred.shape[0], LOO_POSITIONS):  # positions in blocks: float64 copies stay small
            out[:, s : s + LOO_POSITIONS] = leave_one_out_mahalanobis_sq(
                centred[s : s + LOO_POSITIONS], scatter[s : s + LOO_POSITIONS], self.epsilon, n
            ).T.float()
        del centred, scatter
        assert self.grid is not None
        maps = torch.cat([
            patch_maps_to_pixels(out[i : i + self.batch_size].clamp_min_(0).sqrt_().view(-1, *self.grid), self.input_size, self.sigma)
            for i in range(0, count, self.batch_size)
        ])
        return Prediction(scores=maps.flatten(1).amax(1).numpy(), maps=maps.numpy())

    def _fit(self, images: np.ndarray, ctx: FitContext, keep: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The fit; with ``keep`` also returns the centred embeddings (P, N, d) and each
        position's scatter matrix (P, d, d), which the leave-one-out scores need."""
        self._check_images(images)
        if len(images) < 2:
            raise InputError("padim: needs at least 2 training images for a covariance")
        feats = self.features(images)
        total = sum(feats[name].shape[1] for name in self.layers)
        if self.n_features > total:
            raise InputError(f"padim: n_features={self.n_features} exceeds the {total} channels of {self.layers}")
        gen = torch.Generator().manual_seed(int(ctx.seed))
        self.channel_idx = torch.randperm(total, generator=gen)[: self.n_features].sort().values
        emb = self._embed(feats)  # (N, P, d)
        del feats
        ep = emb.permute(1, 0, 2).contiguous()  # (P, N, d)
        del emb
        return self._set_statistics(ep, keep)

    def _set_statistics(self, ep: torch.Tensor, keep: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Mean, covariance and inv_cov from the training embeddings ``ep`` (P, N, d): the
        fit, and a load of a folder that kept the embeddings, run this same code on the
        same float32 numbers, so both predict bit-identically. With ``keep`` returns
        the centred embeddings (``ep`` itself, centred in place) and the scatter."""
        n = ep.shape[1]
        self.train_emb = (ep.clone() if keep else ep) if self._keeps_embeddings(n) else None
        # Mean and covariance in float64, a block of positions at a time: an update adds to
        # them exactly, and a refit on the union gives the same to float64 round-off.
        P, d = ep.shape[0], ep.shape[2]
        mean = torch.empty(P, d, dtype=torch.float64)
        tril = torch.empty(P, d * (d + 1) // 2, dtype=torch.float64)
        scatter = torch.empty(P, d, d, dtype=torch.float64) if keep else None
        for s in range(0, P, LOO_POSITIONS):
            e = ep[s : s + LOO_POSITIONS].double()
            m = e.mean(1)
            e -= m[:, None]
            sc = torch.bmm(e.transpose(1, 2), e)  # (block, d, N) @ (block, N, d)
            mean[s : s + LOO_POSITIONS], tril[s : s + LOO_POSITIONS] = m, pack_lower(sc) / (n - 1)
            if keep:
                scatter[s : s + LOO_POSITIONS] = sc
                ep[s : s + LOO_POSITIONS] = e.float()  # centred, for the leave-one-out scores
        self.mean64, self.mean, self.n_images, self.cov_tril = mean, mean.float(), n, tril
        self.inv_cov = self._inverse_covariance()
        return (ep, scatter) if keep else None

    def _keeps_embeddings(self, n: int) -> bool:
        """Whether n images' embeddings (n d float32 a position) are smaller than the
        covariance's lower triangle (d (d + 1) / 2 float64)."""
        return n <= self.n_features

    def _inverse_covariance(self) -> torch.Tensor:
        """inv_cov (float32) from the kept covariance (float64) + eps I, by Cholesky in
        float64: the fit and a load run this same code on the same numbers, so a loaded
        model predicts bit-identically to the fitted one."""
        assert self.cov_tril is not None
        inv = torch.empty(self.cov_tril.shape[0], self.n_features, self.n_features)
        block = LOO_POSITIONS * 4  # a block's float64 copies stay small
        for s in range(0, inv.shape[0], block):
            cov = unpack_lower(self.cov_tril[s : s + block], self.n_features)
            cov.diagonal(dim1=1, dim2=2).add_(self.epsilon)
            with single_thread():
                inv[s : s + block] = torch.cholesky_inverse(torch.linalg.cholesky(cov)).float()
        return inv

    def update(self, images: np.ndarray, ctx: FitContext) -> Prediction:
        """Fold ``images`` (good) into the fitted Gaussians by exact running statistics
        (Chan et al.'s pairwise update of mean and scatter, in float64): the model equals
        a refit on the union to float32 round-off of the kept covariance. Returns the new
        images' leave-one-out predictions under the updated model."""
        if self.mean is None or self.channel_idx is None:
            raise RuntimeError("padim: update() before fit()")
        if self.cov_tril is None or self.n_images is None or self.mean64 is None:
            raise InputError("padim: this model was saved before padim kept its covariance and image count, "
                             "so it cannot be updated exactly")
        self._check_images(images)
        n_a, n_b = self.n_images, len(images)
        n = n_a + n_b
        if n < 3:
            raise InputError("padim: leave-one-out scores need at least 3 images in all")
        emb = torch.cat([self.embed(images[s : s + self.batch_size]) for s in range(0, n_b, self.batch_size)])
        if self.train_emb is not None and self.train_emb.shape[1] == n_a:
            # The statistics of the union from its embeddings, as a fit of the union (and
            # a load of the folder saved next) computes them; the new images' leave-one-out
            # scores from the same pass.
            union = torch.cat([self.train_emb, emb.permute(1, 0, 2)], 1)
            del emb
            centred, scatter = self._set_statistics(union, keep=True)
            return self._leave_one_out(centred[:, n_a:], scatter, n)
        emb_b = emb.double().permute(1, 0, 2).contiguous()  # (P, N_b, d)
        del emb
        mean_a = self.mean64
        mean_b = emb_b.mean(1)
        delta = mean_b - mean_a
        mean = mean_a + delta * (n_b / n)
        tril = torch.tril_indices(self.n_features, self.n_features)
        scatter_out = torch.empty_like(self.cov_tril, dtype=torch.float64)
        for s in range(0, emb_b.shape[0], LOO_POSITIONS):
            e = emb_b[s : s + LOO_POSITIONS] - mean_b[s : s + LOO_POSITIONS, None]
            sc = torch.bmm(e.transpose(1, 2), e)  # the new images' scatter about their own mean
            dl = delta[s : s + LOO_POSITIONS]
            sc += unpack_lower(self.cov_tril[s : s + LOO_POSITIONS], self.n_features) * (n_a - 1)
            sc += dl[:, :, None] * dl[:, None, :] * (n_a * n_b / n)
            scatter_out[s : s + LOO_POSITIONS] = sc[:, tril[0], tril[1]]
        self.n_images, self.mean64, self.mean = n, mean, mean.float()
        self.cov_tril, self.train_emb = scatter_out / (n - 1), None
        self.inv_cov = self._inverse_covariance()
        # the new images' leave-one-out scores, centred on the updated mean
        centred = emb_b - mean[:, None]
        del emb_b
        return self._leave_one_out(centred, unpack_lower(scatter_out, self.n_features), n)

    def predict(self, images: np.ndarray) -> Prediction:
        if self.mean is None or self.inv_cov is None:
            raise RuntimeError("padim: predict() before fit()")
        out = []
        for s in range(0, len(images), self.batch_size):
            emb = self.embed(images[s : s + self.batch_size])
            out.append(mahalanobis_sq(emb, self.mean, self.inv_cov).clamp_min_(0).sqrt_())
        assert self.grid is not None
        dist = torch.cat(out).view(-1, *self.grid)
        maps = patch_maps_to_pixels(dist, self.input_size, self.sigma)
        return Prediction(scores=maps.flatten(1).amax(1).numpy(), maps=maps.numpy())

    def state_tensors(self) -> dict[str, torch.Tensor]:
        # What an exact update needs, not inv_cov (derived at load): the training
        # embeddings where they are smaller (N <= d), else the covariance's lower triangle
        # (float64) and the image count, in inv_cov's bytes (+ 4 d per position). The
        # mean (P x d, small) is saved in both forms.
        if self.mean64 is None or self.cov_tril is None or self.channel_idx is None or self.n_images is None:
            raise RuntimeError("padim: nothing fitted to save")
        if self.train_emb is not None and self.train_emb.shape[1] == self.n_images:
            return {"channel_idx": self.channel_idx, "mean": self.mean64, "embeddings": self.train_emb}
        return {"channel_idx": self.channel_idx, "mean": self.mean64, "cov_tril": self.cov_tril,
                "n_images": torch.tensor([self.n_images], dtype=torch.int64)}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        # Folders saved before the covariance was kept hold inv_cov: they load and predict
        # as before, and cannot be updated exactly (``update`` says so).
        missing = {"channel_idx", "mean"} - set(tensors)
        if not {"embeddings", "cov_tril", "inv_cov"} & set(tensors):
            missing.add("embeddings or cov_tril")
        if missing:
            raise InputError(f"padim: saved state lacks {sorted(missing)}")
        self.channel_idx = tensors["channel_idx"].long()
        self.mean = tensors["mean"].float()  # the fit's rounding of the float64 mean: bit-identical
        self.train_emb = None
        if "embeddings" in tensors:
            ep = tensors["embeddings"].float()
            if ep.ndim != 3 or ep.shape[0] != self.mean.shape[0] or ep.shape[2] != self.n_features or ep.shape[1] < 2:
                raise InputError(f"padim: saved embeddings {tuple(ep.shape)} do not match mean {tuple(self.mean.shape)}")
            self._set_statistics(ep.contiguous(), keep=False)
        elif "cov_tril" in tensors:
            tril, d = tensors["cov_tril"].double(), self.mean.shape[-1]
            if "n_images" not in tensors or tril.shape != (self.mean.shape[0], d * (d + 1) // 2) or d != self.n_features:
                raise InputError(f"padim: saved cov_tril {tuple(tril.shape)} does not match mean {tuple(self.mean.shape)}")
            self.cov_tril, self.n_images = tril, int(tensors["n_images"].reshape(-1)[0])
            self.mean64 = tensors["mean"].double()
            self.inv_cov = self._inverse_covariance()
        else:
            self.cov_tril, self.n_images, self.mean64 = None, None, None
            self.inv_cov = tensors["inv_cov"].float()

    def export_module(self) -> torch.nn.Module:
        from iadbench_padim.export import PadimGraph

        return PadimGraph(self).eval()

    def extra_config(self) -> dict[str, Any]:
        return {"grid": list(self.grid) if self.grid else None}

    def load_extra_config(self, config: dict[str, Any]) -> None:
        if config.get("grid"):
            self.grid = tuple(config["grid"])  # type: ignore[assignment]
