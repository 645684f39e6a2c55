"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Fit: mid-level features of the good images, each averaged over its 3x3 neighbourhood
(avg pool, stride 1, pad 1), the coarser map upsampled (bilinear) to the finer grid and
concatenated, give one vector per patch; a greedy k-center coreset of them, selected
on a Johnson-Lindenstrauss random projection, is the memory bank.
Predict: each test patch's distance to its nearest memory vector (one matrix product
per chunk) is the anomaly map, upsampled to the input size and smoothed (sigma 4); the
image score is the largest patch distance reweighted as in the paper's eq. 7, over
m* and its b - 1 nearest bank rows; every bank row's neighbourhood is found once at fit
and saved with the bank (``core.bank_neighbourhoods``), so prediction only gathers.

``layer_dim`` (default None, plain concatenation, as anomalib does; version 4 had 112,
version 5 went back, see below). An int D pools
each layer's locally aware features to D channels by adaptive average pooling over the
channel axis before concatenation, as the reference code (amazon-science/
patchcore-inspection, ``pretrain_embed_dimension``) does, so every layer gets D
coordinates. Two differences from the reference: it pools the unfolded C x 3 x 3
values of each patch, we pool channels after the 3x3 mean (the same when D divides
C; for D > 9C its bins hold single values, so it has no 3x3 mean); and we leave out
its second step, adaptive pooling of the concatenation to ``target_embed_dimension``:
with aligned bins that only averages neighbouring coordinates within each layer,
i.e. a smaller D, so it would be a second knob for the same thing. Equal coordinates are not equal weight: averaging k weakly
correlated channels divides their variance by up to k. Measured share of the deeper
layer (blocks.4) in the squared distances over all (test patch, memory) pairs, lite0
at 256 px on MVTec AD bottle (11 train, 12 test images): None 0.60; D=40 0.12; 64
0.22; 112 0.38; 256 0.32; 1024 0.34 (its share of nearest-neighbour residuals: 0.66,
0.24, 0.35, 0.50, 0.44, 0.46). So D moves weight to the shallow layer rather than
balancing them. The defaults study (leaderboards/defaults-study.md) picked D=112 by
its rule: mean image AUROC over its four datasets 0.957 vs 0.948 for None, carried by
the synthetic factory's fabric (+0.021) and wood (+0.020); on the real magnetic tile
it scores 0.955 vs 0.960 (-0.005, at the rule's tie margin) with pixel AUROC 0.860 vs
0.862 and AUPRO 0.771 vs 0.762, on bottle 1.000 either way (pixel 0.987 vs 0.984). It
costs 224 instead of 152 coordinates a patch (lite0's blocks.2 has 40 channels, so
pooling to 112 repeats each about 3 times): a 47% larger bank and search. Version 5
went back to None: on the factory grid at generator v2 (not a study dataset) 112
scored 0.880 mean image AUROC against 0.926 for None, worse on all five categories.

Against anomalib 2.7's PatchcoreModel fed the same inputs
(tests/methods/test_anomalib_parity.py): the embedding is bit-identical; patch
distances and nearest indices agree (float32); image scores agree to 1e-5 relative for
num_neighbors 1, 3 and 9; our greedy coreset picks KCenterGreedy's points in its order
given the same projected features and start. Deliberate differences:

* Map upsampling: bilinear (the reference code; anomalib's PaDiM), where anomalib's
  PatchCore uses F.interpolate's default, nearest. Same blur (sigma 4, 33 taps, scipy
  "mirror" borders; the reference code's scipy default "reflect" differs within 16
  px of the border). On MVTec AD bottle at 256 px (53 train, 42 test images): maps
  differ by up to 1.8% of their maximum, pixel AUROC 0.98355 (ours) vs 0.98363.
* Coreset projection: dense Gaussian to ``projection_dim`` (128, as the reference),
  where anomalib uses SparseRandomProjection(eps=0.9) to int(4 ln n / 0.162) dims
  (230 for 11k patches: wider than lite0's 152 channels). Covering radius of a 10%
  coreset of 11264 bottle patches, three seeds: ours 18.1-18.8, anomalib's 17.9-18.5,
  unprojected 16.3; mean nearest-memory distance within 0.6% of each other.
* Coreset size round(ratio * n) where anomalib takes int(ratio * n): at most one more.
* A one-row bank scores the plain distance; anomalib's softmax over one row gives 0.

``search`` (search.py): ``ivfpq`` (default since spec version 8: faiss IVF-PQ in its
fast-scan layout, ``ivf_probe`` 8 lists probed, 8 candidates re-ranked exactly), ``hnsw``
(the default of versions 3-7: a faiss HNSW graph, ``hnsw_ef`` = efSearch, default 16, 32
in versions 4 and 5), each with an exact re-check of each image's top patches that makes
image scores exact, since version 7 after tightening the largest bounds by an inverted
file; maps approximate elsewhere; or ``exact`` (the chunked GEMM above, the default up
to version 2). The gate for the
default: pixel AUROC within 0.002 of exact search on every test image of bottle and
magnetic tile (python -m bench.deploy search), image AUROC equal. Version 3 (152
coordinates, ef 16): bottle -0.00004, magnetic tile -0.00037 (M 32 graph). Version 4's
224 coordinates (112 per layer, blocks.2's 40 channels repeated) are harder for the
graph: on bottle ef 16 lost 0.0036 (fails), ef 32 0.00014, ef 64 0.00000, so ef is 32
(the cheapest that passes; ef 32 searches ~1.6x slower than ef 16, ~1.7x faster than
ef 64). Version 6, back at 152 coordinates (version 5), is at ef 16 again: bottle
-0.00004, magnetic tile -0.00020 (M 48 graph; ef 8 -0.00007 and -0.00050 also passes,
but on a 77k-row bank its looser bounds need ~3 exact re-check passes an image against
2 at ef 16). Version 7 (tightening, one exact pass of one patch an image, rarely two):
bottle -0.00000 (its 4x bank -0.00007), magnetic tile -0.00019. Version 8 (IVF-PQ,
8 lists): bottle -0.00005, magnetic tile -0.00078 (4 lists: -0.00004, -0.00171, too near
the line; 16: -0.00026 on a fifth of magnetic tile), for about half the search's CPU
time (search.py). A search-time choice: a
fitted bank serves any (``use_search``), and the onnx runtime runs the backbone in onnxruntime and the approximate search here
(``export_front`` / ``predict_from_front``).

Out-of-fold scores (``fit_out_of_fold``, ``out_of_fold = "self-excluded bank"``), on which
the harness fixes the threshold: the model is the plain fit (same bank and table), and
each training image is scored against the bank less the rows taken from its own
patches (patches are image-major, so a row's source is its patch index // patches an
image), with eq. 7's neighbourhood of m* found among the remaining rows: what a bank
with those rows deleted gives. In-sample scores are useless here: a training patch in
the bank is at distance 0 from itself (magnetic tile, 600 images: in-sample mean 15.9,
out-of-fold 21.2, every image higher). It is not a refit: the coreset of the other
images alone would differ (its rows would cover only them). Measured against true
leave-one-out refits (10 images each, coreset 10%, exact search): self-excluded minus
refit +3.2% on average on 42 bottle images, +1.3% on 105, +0.4% on 120 magnetic tile
images, per image within about +-12% either way: no clear bias beyond a slight
overestimate (a higher threshold) that shrinks with the number of images. Each image
costs one filtered search (search.py, ``exclude``), exact at its maximum as predict's,
from the embeddings fit computed; with ratio 1 it equals a leave-one-out refit exactly.
Cost on magnetic tile (61k-row bank, 2 threads): fit 107 s, fit + out-of-fold 141 s
(1.32x), 13 s of it the graph build predict would otherwise do (a 1.2x remainder).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from iadbench.api import Detector, FitContext, InputError, Prediction
from iadbench.backbones import ARCHS, canonical_arch
from iadbench.features import BackboneMixin, patch_maps_to_pixels
from iadbench_patchcore.core import (
    bank_neighbourhoods,
    greedy_coreset,
    image_scores,
    random_projection,
    reweighted_score,
    row_neighbourhood,
)
from iadbench_patchcore.search import BankSearch, check_search

# Mid-level stages: stride 8 and 16 (the paper's layer2 + layer3 for ResNets).
DEFAULT_LAYERS = {"efficientnet": ["blocks.2", "blocks.4"], "resnet": ["layer2", "layer3"]}


@functools.lru_cache(maxsize=16)
def channel_pooling_matrix(channels: int, dim: int) -> torch.Tensor:
    """(channels, dim) matrix whose column i averages input channels floor(i*C/dim) ..
    ceil((i+1)*C/dim) - 1: adaptive average pooling over channels as a product, which
    an ONNX graph holds as a constant (adaptive_avg_pool1d does not export). Cached:
    every embedded batch pools with the same few matrices; callers must not modify it."""
    pool = torch.zeros(channels, dim)
    for i in range(dim):
        lo, hi = (i * channels) // dim, -((-(i + 1) * channels) // dim)
        pool[lo:hi, i] = 1.0 / (hi - lo)
    return pool


def pool_channels(m: torch.Tensor, dim: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, dim, h, w): adaptive average pooling over the channel axis
    (output channel i averages input channels floor(i*C/dim) .. ceil((i+1)*C/dim) - 1;
    with dim > C channels are repeated)."""
    pool = channel_pooling_matrix(int(m.shape[1]), dim).to(m.dtype)
    return torch.einsum("nchw,cd->ndhw", m, pool)


def locally_aware(feats: dict[str, torch.Tensor], layers: Sequence[str], layer_dim: int | None) -> torch.Tensor:
    """(N, C, h, w) locally aware patch features at the finest grid of ``layers``: each
    stage 3x3-averaged, optionally channel-pooled, upsampled and concatenated. Eager
    scoring and the ONNX export graph both call this, so they cannot drift apart."""
    maps = [F.avg_pool2d(feats[name], 3, stride=1, padding=1) for name in layers]
    if layer_dim is not None:
        # Before upsampling: both are linear, on different axes, so they commute
        # and the coarse map is cheaper to pool.
        maps = [pool_channels(m, layer_dim) for m in maps]
    size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
    maps = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps]
    return torch.cat(maps, 1)


class PatchCore(BackboneMixin, Detector):
    name = "patchcore"
    out_of_fold = "self-excluded bank"

    def __init__(
        self,
        input_size: int = 256,
        backbone: str = "efficientnet_lite0",
        layers: Sequence[str] | None = None,
        weights: str | None = None,
        coreset_ratio: float = 0.1,
        projection_dim: int = 128,
        num_neighbors: int = 9,
        sigma: float = 4.0,
        layer_dim: int | None = None,
        search: str = "ivfpq",
        hnsw_ef: int = 16,
        ivf_probe: int = 8,
    ):
        arch = canonical_arch(backbone)
        layers = list(layers) if layers else list(DEFAULT_LAYERS[ARCHS[arch].family])
        if not 0.0 < float(coreset_ratio) <= 1.0:
            raise InputError(f"patchcore: coreset_ratio must be in (0, 1], got {coreset_ratio}")
        if int(num_neighbors) < 1:
            raise InputError(f"patchcore: num_neighbors must be >= 1, got {num_neighbors}")
        if int(input_size) < 32:
            raise InputError(f"patchcore: input_size must be >= 32, got {input_size}")
        if layer_dim is not None and (isinstance(layer_dim, bool) or not isinstance(layer_dim, int) or layer_dim < 1):
            raise InputError(f"patchcore: layer_dim must be a positive integer or None, got {layer_dim!r}")
        search = check_search(search)
        if isinstance(hnsw_ef, bool) or not isinstance(hnsw_ef, int) or hnsw_ef < 1:
            raise InputError(f"patchcore: hnsw_ef must be a positive integer, got {hnsw_ef!r}")
        if isinstance(ivf_probe, bool) or not isinstance(ivf_probe, int) or ivf_probe < 1:
            raise InputError(f"patchcore: ivf_probe must be a positive integer, got {ivf_probe!r}")
        self.params.update(layers=layers, search=search)  # resolved: a saved model keeps them
        self.input_size = (int(input_size), int(input_size))
        self.backbone, self.layers, self.weights = arch, layers, weights
        self.coreset_ratio, self.projection_dim = float(coreset_ratio), int(projection_dim)
        self.num_neighbors, self.sigma = int(num_neighbors), float(sigma)
        self.layer_dim = layer_dim
        self.memory_bank: torch.Tensor | None = None
        # patches the bank was selected from (saved in config.json): an update's coreset
        # size is the ratio of all patches seen, as a refit on the union would take
        self.train_patches: int | None = None
        self._bank_sq: torch.Tensor | None = None
        self._neighbourhoods: torch.Tensor | None = None  # (M, b), see core.bank_neighbourhoods
        self.search, self.hnsw_ef, self.ivf_probe = search, int(hnsw_ef), int(ivf_probe)
        self._searcher: BankSearch | None = None

    def to(self, device: str):
        """The backbone on ``device``; the memory bank and its nearest-neighbour search stay on the CPU (the search backends, exact, HNSW and IVF-PQ, are CPU code)."""
        self.backbone_to(device)
        return self

    def embed(self, images: np.ndarray) -> torch.Tensor:
        """(N, C, h, w) locally aware patch features at the finest requested grid."""
        return locally_aware(self.features(images), self.layers, self.layer_dim)

    def fit(self, images: np.ndarray, ctx: FitContext) -> None:
        self._fit_bank(self._training_patches(images)[0], ctx)

    def _training_patches(self, images: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """(N * h * w, C) patch features, image-major (patch j is image j // (h * w)), and (h, w)."""
        emb = self.embed(images)
        grid = (int(emb.shape[2]), int(emb.shape[3]))
        return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]).contiguous(), grid

    def _fit_bank(self, patches: torch.Tensor, ctx: FitContext) -> torch.Tensor:
        """The memory bank and its neighbourhood table from all training patches; returns
        the patch index each bank row was taken from."""
        self.train_patches = int(patches.shape[0])
        return self._select_bank(patches, max(1, int(round(self.coreset_ratio * patches.shape[0]))), ctx)

    def _select_bank(self, patches: torch.Tensor, k: int, ctx: FitContext) -> torch.Tensor:
        """The bank: ``k`` rows of ``patches`` by greedy coreset (all of them when k covers
        them), and its neighbourhood table; returns the row indices taken."""
        gen = torch.Generator().manual_seed(int(ctx.seed))
        if k < patches.shape[0]:
            projected = random_projection(patches, self.projection_dim, gen)
            start = int(torch.randint(patches.shape[0], (1,), generator=gen))
            idx = greedy_coreset(projected, k, start=start)
            del projected
            self.memory_bank = patches[idx].clone()
        else:
            idx = torch.arange(patches.shape[0])
            self.memory_bank = patches
        self._bank_sq = self._searcher = self._neighbourhoods = None
        self.neighbourhoods()  # at fit, so prediction never passes over the whole bank for eq. 7
        return idx

    def fit_out_of_fold(self, images: np.ndarray, ctx: FitContext) -> Prediction:
        """``fit``, then each training image scored against the bank less the rows taken
        from its own patches (module doc: a self-excluded bank, not a refit), from the
        embeddings the fit computed. Maps as ``predict`` (approximate off each image's
        maximum with an approximate search), scores exact with any search."""
        if len(images) < 2:
            raise InputError(f"patchcore: out-of-fold scores need at least 2 training images, got {len(images)}")
        patches, grid = self._training_patches(images)
        return self._score_self_excluded(patches, grid, self._fit_bank(patches, ctx))

    def _score_self_excluded(self, patches: torch.Tensor, grid: tuple[int, int], taken: torch.Tensor) -> Prediction:
        """Training ``patches`` (image-major, ``grid`` = (h, w) patches an image) scored by the fitted bank,
        each image without the rows ``taken`` from its own patches (``_fit_bank``)."""
        (h, w), bank, table = grid, self.memory_bank, self.neighbourhoods()
        n = patches.shape[0] // (h * w)
        # the image each bank row came from; n for rows from none of them (an update's
        # rows kept from the bank before it: ``taken`` -1)
        source = torch.where(taken >= 0, taken // (h * w), n)
        order = torch.argsort(source, stable=True)
        own = list(torch.split(order, torch.bincount(source, minlength=n + 1).tolist()))[:n]  # bank rows of image i
        if max(len(rows) for rows in own) == bank.shape[0]:
            raise InputError("patchcore: every bank row comes from one image, which then has no bank to be scored against "
                             "(raise coreset_ratio)")
        q = patches.view(n, h * w, -1)
        dist, index = self.searcher()(q, exclude=own)
        p = dist.argmax(1)  # as image_scores: the most anomalous patch and its nearest allowed row m*
        m_star = index[torch.arange(n), p]
        _, bank_sq = self._bank()
        scores = []
        for i in range(n):
            j, support = int(m_star[i]), table[int(m_star[i])]
            if bool((source[support] == i).any()):
                # Image i's own rows in m*'s neighbourhood: find it again among the other
                # rows (one pass over the bank; when none are its own the table's row is it).
                masked = bank_sq.clone()
                masked[own[i]] = float("inf")
                support = row_neighbourhood(bank, masked, j, min(table.shape[1], bank.shape[0] - len(own[i])))
            scores.append(float(reweighted_score(q[i, int(p[i])], support, bank)))
        maps = patch_maps_to_pixels(dist.view(n, h, w), self.input_size, self.sigma)
        return Prediction(scores=np.asarray(scores), maps=maps.numpy())

    def _bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.memory_bank is None:
            raise RuntimeError("patchcore: predict() before fit()")
        if self._bank_sq is None:
            self._bank_sq = (self.memory_bank * self.memory_bank).sum(1)
        return self.memory_bank, self._bank_sq

    def neighbourhoods(self) -> torch.Tensor:
        """(M, b): each bank row and its b - 1 nearest rows (recomputed if b changed)."""
        bank, bank_sq = self._bank()
        b = max(1, min(self.num_neighbors, bank.shape[0]))
        if self._neighbourhoods is None or self._neighbourhoods.shape != (bank.shape[0], b):
            self._neighbourhoods = bank_neighbourhoods(bank, bank_sq, b)
        return self._neighbourhoods

    def searcher(self) -> BankSearch:
        if self._searcher is None:
            bank, _ = self._bank()
            self._searcher = BankSearch(bank, self.search, ef=self.hnsw_ef, probe=self.ivf_probe)
        return self._searcher

    def use_search(self, search: str, hnsw_ef: int | None = None, ivf_probe: int | None = None) -> None:
        """Switch the nearest-neighbour search of a fitted model (the bank is unchanged)."""
        self.search = check_search(search)
        self.hnsw_ef = int(hnsw_ef) if hnsw_ef is not None else self.hnsw_ef
        self.ivf_probe = int(ivf_probe) if ivf_probe is not None else self.ivf_probe
        self.params.update(search=self.search, hnsw_ef=self.hnsw_ef, ivf_probe=self.ivf_probe)
        self._searcher = None

    def predict(self, images: np.ndarray) -> Prediction:
        self._bank()
        scores, patch_maps = [], []
        for s in range(0, len(images), self.batch_size):
            batch_scores, dist = self._score_embedding(self.embed(images[s : s + self.batch_size]))
            scores += batch_scores
            patch_maps.append(dist)
        maps = patch_maps_to_pixels(torch.cat(patch_maps), self.input_size, self.sigma)
        return Prediction(scores=np.asarray(scores), maps=maps.numpy())

    def _score_embedding(self, emb: torch.Tensor) -> tuple[list[float], torch.Tensor]:
        """(N, C, h, w) embedding -> image scores (eq. 7) and (N, h, w) patch distances."""
        n, c, h, w = emb.shape
        q = emb.permute(0, 2, 3, 1).reshape(n, h * w, c)
        dist, index = self.searcher()(q)
        scores = image_scores(q, dist, index, self.neighbourhoods(), self.memory_bank)
        return scores.tolist(), dist.view(n, h, w)

    # --- deployment -----------------------------------------------------------------

    def export_module(self) -> torch.nn.Module:
        from iadbench_patchcore.export import PatchCoreGraph

        return PatchCoreGraph(self).eval()

    def export_front(self) -> torch.nn.Module:
        from iadbench_patchcore.export import PatchCoreFront

        return PatchCoreFront(self).eval()

    @property
    def split_runtime(self) -> bool:
        # faiss is not an ONNX operator: with an approximate search the graph stops at the
        # embedding and the search runs here (exact search stays one graph).
        return self.search != "exact"

    def predict_from_front(self, front: np.ndarray) -> Prediction:
        scores, dist = self._score_embedding(torch.from_numpy(np.ascontiguousarray(front, dtype=np.float32)))
        maps = patch_maps_to_pixels(dist, self.input_size, self.sigma)
        return Prediction(scores=np.asarray(scores), maps=maps.numpy())

    def state_tensors(self) -> dict[str, torch.Tensor]:
        bank, _ = self._bank()
        return {"memory_bank": bank, "bank_neighbourhoods": self.neighbourhoods()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if "memory_bank" not in tensors:
            raise InputError("patchcore: saved state lacks memory_bank")
        self.memory_bank, self._bank_sq, self._searcher = tensors["memory_bank"].float(), None, None
        # models saved before the table existed compute it on first use
        table = tensors.get("bank_neighbourhoods")
        if table is not None and (table.ndim != 2 or table.numel() and not 0 <= int(table.min()) <= int(table.max()) < self.memory_bank.shape[0]):
            raise InputError(f"patchcore: saved bank_neighbourhoods {tuple(table.shape)} do not index the {self.memory_bank.shape[0]}-row bank")
        self._neighbourhoods = table.long() if table is not None else None

    def extra_config(self) -> dict[str, Any]:
        return {"bank_size": int(self.memory_bank.shape[0]) if self.memory_bank is not None else 0,
                "train_patches": self.train_patches}

    def load_extra_config(self, config: dict[str, Any]) -> None:
        # models saved before it was kept: the count the bank's size implies (exact up to
        # the rounding of ratio * patches, exact for ratio 1)
        seen = config.get("train_patches")
        self.train_patches = int(seen) if seen else (int(round(config["bank_size"] / self.coreset_ratio)) if config.get("bank_size") else None)

    # --- update ---------------------------------------------------------------------

    update_method = "coreset re-selected over the bank and the new images' patches"

    def update(self, images: np.ndarray, ctx: FitContext) -> Prediction:
        """Fold good ``images`` in: their patches join the bank's rows and the greedy
        coreset is selected again over both, ``coreset_ratio`` of every patch seen (old
        and new), as a refit on the union would size it. Returns the new images'
        self-excluded-bank predictions under the updated bank (as ``fit_out_of_fold``)."""
        bank, _ = self._bank()
        patches, grid = self._training_patches(images)
        seen = (self.train_patches or bank.shape[0]) + patches.shape[0]
        k = max(1, int(round(self.coreset_ratio * seen)))
        self.train_patches = seen
        taken = self._select_bank(torch.cat([bank, patches]), k, ctx)
        taken = torch.where(taken >= bank.shape[0], taken - bank.shape[0], -1)  # rows of the old bank: from no new image
        return self._score_self_excluded(patches, grid, taken)
