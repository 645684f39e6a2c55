"""A mixed-supervision detector: PaDiM's map, sharpened by a segmentation head trained
on a few labelled defects where a run gives some (``--defects-in-train K``).

Unsupervised part: a PaDiM (iadbench_padim's detector, held by composition: the
import contract forbids plugins only the core's internal modules, not each other) on
the same frozen backbone stages. With no labelled defect (K = 0) the detector *is* that
PaDiM: the same scores and maps, so its ranking is PaDiM's.

With K > 0 labelled defects, a small head (1x1 -> 3x3 -> 1x1 convolutions, ``hidden``
channels, plus a learnt skip from the prior) reads at every position of the stride 8
grid the standardised PaDiM embedding and the standardised PaDiM map (pooled to the
grid) as a prior channel, and returns a defect logit. It is trained for ``steps`` Adam
steps on batches half good, half defective:

- pixel loss on every image with a mask (the good training images have all-background
  masks): focal BCE with defect and background positions weighted equally, plus soft
  Dice on the defective images (the masks are area-pooled to the grid: soft targets);
- image loss on every image: BCE of the top-k mean of its logits (``top_k``, a
  fraction of the grid), the only signal from a defect labelled without a mask;
- the two balanced dynamically, after Božič et al. ("Mixed supervision for
  surface-defect detection: from weakly to fully supervised learning", Computers in
  Industry 2021): the image term's weight ramps from 0 to 0.5 over training (theirs to
  1; ours keeps half on pixels, so the map stays a segmentation);
- ``augment``: the defects' flips (and with ``d4`` right-angle rotations), features
  from the transformed image, the prior transformed with it (iadbench_mixed.augment).

The prior channel of each good training image is PaDiM's exact leave-one-out map
(``fit_out_of_fold``), so the head learns how much to trust the prior from maps
distributed as a test image's are, not from in-sample ones (which would be too low).

Image score: the PaDiM score and the head's top-k logit, each standardised (mean and
standard deviation) over good images the part did not learn from - PaDiM's
leave-one-out scores, and ``head_holdout`` of the good images kept out of the head's
training - then summed as z-scores, so neither swamps the other by its units, with two
guards for a tiny K:

- the head's term is clamped at 0 (the held-out good images' mean): a head trained on a
  few defects of some types reads an unseen type as good, and that verdict says nothing,
  while "looks like a labelled defect" does; the head adds evidence, never removes it;
- it is weighted K / (K + ``trust_defects``) (5: half weight at 5 labelled defects, 0.8
  at 20), a shrinkage towards PaDiM while the head has seen few defects.

On magnetic tile (200 good images at 256 px, seed 0; the weights were chosen on this
one run) image AUROC against the same fit's PaDiM: K = 20 0.962 (unclamped, unweighted
0.964; PaDiM 0.928), K = 2 0.924 (unclamped, unweighted 0.878; PaDiM 0.926). The map is
combined alike from the two pixel maps, standardised over the same images' pixels.

From SuperSimpleNet (Rolih et al., ICPR 2024) we took the frozen-backbone features with a
light convolutional segmentation head, and pooling the segmentation output into the
image score; not its feature-space synthetic anomalies (the PaDiM prior plays that part)
nor its separate classification head (Božič's too): with a few dozen labelled images a
second trained head mostly overfits, while a pooled map stays tied to where the defect is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from iadbench.api import Detector, FitContext, InputError, LabelledDefects, Prediction
from iadbench.features import patch_maps_to_pixels
from iadbench.precision import resolve_precision, training_autocast, training_layout
from iadbench.progress import training_progress
from iadbench_mixed.augment import AUGMENTS, views
from iadbench_mixed.head import SegmentationHead, balanced_focal_loss, soft_dice_loss, top_k_mean
from iadbench_padim.detector import Padim, mahalanobis_sq

DEFAULT_STEPS = 300
#: Order of the standardisation constants in the saved ``stats`` tensor.
STATS = ("unsup_score_mean", "unsup_score_std", "unsup_map_mean", "unsup_map_std",
         "head_score_mean", "head_score_std", "head_map_mean", "head_map_std", "head_weight")


class Mixed(Detector):
    name = "mixed"
    supervision = "mixed"

    def __init__(
        self,
        input_size: int = 256,
        backbone: str = "efficientnet_lite0",
        layers: Sequence[str] | None = None,
        weights: str | None = None,
        n_features: int | None = None,
        epsilon: float = 0.01,
        sigma: float = 4.0,
        hidden: int = 64,
        steps: int = DEFAULT_STEPS,
        batch: int = 16,
        lr: float = 1e-3,
        augment: str = "flips",
        top_k: float = 0.005,
        head_holdout: float = 0.2,
        trust_defects: float = 5.0,
        precision: str = "auto",
    ):
        self.padim = Padim(input_size=input_size, backbone=backbone, layers=layers, weights=weights,
                           n_features=n_features, epsilon=epsilon, sigma=sigma)
        self.params.update(layers=self.padim.layers, n_features=self.padim.n_features)  # resolved, as padim keeps them
        for key, value, ok in (("hidden", hidden, int(hidden) >= 1), ("steps", steps, int(steps) >= 1),
                               ("batch", batch, int(batch) >= 2), ("lr", lr, float(lr) > 0),
                               ("top_k", top_k, 0 < float(top_k) <= 1),
                               ("head_holdout", head_holdout, 0 <= float(head_holdout) < 1),
                               ("trust_defects", trust_defects, float(trust_defects) >= 0)):
            if not ok:
                raise InputError(f"mixed: {key}={value} is out of range (see the detector reference)")
        if augment not in AUGMENTS:
            raise InputError(f"mixed: augment must be one of {', '.join(AUGMENTS)}; got {augment!r}")
        self.input_size = self.padim.input_size
        self.sigma = float(sigma)
        self.hidden, self.steps, self.batch, self.lr = int(hidden), int(steps), int(batch), float(lr)
        self.augment, self.top_k, self.head_holdout = augment, float(top_k), float(head_holdout)
        self.trust_defects = float(trust_defects)
        self.precision = resolve_precision(precision, "mixed")
        self.head: SegmentationHead | None = None
        self.feat_mean: torch.Tensor | None = None  # (1, C, 1, 1) over the good training images
        self.feat_std: torch.Tensor | None = None
        self.stats: torch.Tensor | None = None  # float64, in STATS order
        self.training_done: dict[str, Any] | None = None

    # --- devices and the cost table -------------------------------------------------

    def to(self, device: str) -> Mixed:
        """PaDiM as PaDiM moves (its statistics stay on the CPU), the head to ``device``;
        ``precision="auto"`` decided again for it."""
        self.padim.to(device)
        for name in ("head", "feat_mean", "feat_std"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        self.device = str(device)
        self.precision = resolve_precision(self.params.get("precision", "auto"), "mixed", self.device)
        return self

    def backbone_forward(self, images: np.ndarray) -> None:
        self.padim.backbone_forward(images)

    # --- the unsupervised part ------------------------------------------------------

    def _unsupervised(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """One backbone pass: the embedding (N, C, h, w) and PaDiM's pixel maps (N, H, W),
        computed as ``Padim.predict`` computes them."""
        emb = self.padim.embed(images)  # (N, P, C)
        dist = mahalanobis_sq(emb, self.padim.mean, self.padim.inv_cov).clamp_min_(0).sqrt_()
        grid = self.padim.grid
        assert grid is not None
        maps = patch_maps_to_pixels(dist.view(-1, *grid), self.input_size, self.sigma)
        return emb.transpose(1, 2).reshape(len(images), -1, *grid), maps

    def _embedding(self, images: np.ndarray) -> torch.Tensor:
        """(N, C, h, w): PaDiM's embedding on its grid."""
        grid = self.padim.grid
        assert grid is not None
        return torch.cat([self.padim.embed(images[s : s + 16]).transpose(1, 2).reshape(-1, self.padim.n_features, *grid)
                          for s in range(0, len(images), 16)])

    def _prior(self, maps: torch.Tensor) -> torch.Tensor:
        """Pixel maps (N, H, W) -> the standardised prior on the grid (N, h, w)."""
        assert self.stats is not None and self.padim.grid is not None
        pooled = F.adaptive_avg_pool2d(maps[:, None].float(), self.padim.grid)[:, 0]
        return ((pooled - self.stats[2]) / self.stats[3]).float()

    def _head_input(self, emb: torch.Tensor) -> torch.Tensor:
        assert self.feat_mean is not None and self.feat_std is not None
        return (emb.to(self.device) - self.feat_mean) / self.feat_std

    # --- fit ------------------------------------------------------------------------

    def fit(self, images: np.ndarray, ctx: FitContext) -> None:
        defects = self._checked_defects(ctx.defects)
        self.head = self.feat_mean = self.feat_std = self.stats = None
        if defects is None:  # K = 0: PaDiM itself
            self.padim.fit(images, ctx)
            self.training_done = {"steps": 0, "defects": 0}
            return
        if len(images) < 3:
            raise InputError(f"mixed: needs at least 3 good training images with labelled defects, got {len(images)}")
        oof = self.padim.fit_out_of_fold(images, ctx)  # fits PaDiM on all good images, as fit does
        oof_maps = torch.from_numpy(oof.maps)
        emb_good = self._embedding(images)  # the feature cache serves this second pass
        self.feat_mean = emb_good.mean(dim=(0, 2, 3), keepdim=True)
        self.feat_std = emb_good.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        scores = torch.from_numpy(oof.scores).double()
        self.stats = torch.tensor([scores.mean(), _std(scores), oof_maps.double().mean(), _std(oof_maps.double())]
                                  + [0.0, 1.0, 0.0, 1.0, len(defects) / (len(defects) + self.trust_defects)],
                                  dtype=torch.float64)
        feats_good = self._head_input(emb_good)
        del emb_good
        prior_good = self._prior(oof_maps).to(self.device)

        gen = torch.Generator().manual_seed(int(ctx.seed))
        order = torch.randperm(len(images), generator=gen)
        # at least 4 held out (a spread of 2 scores says little); under 8 images none:
        # the head's statistics are then in-sample (too narrow: the head counts for more)
        n_hold = min(max(int(round(self.head_holdout * len(images))), 4), len(images) - 2) \
            if self.head_holdout > 0 and len(images) >= 8 else 0
        held, trained = order[:n_hold].sort().values, order[n_hold:].sort().values

        feats_def, prior_def, target_def, masked_def = self._defect_views(defects)
        torch.manual_seed(int(ctx.seed))  # the head's initial weights
        self.head = SegmentationHead(feats_good.shape[1], self.hidden).to(self.device)
        self._train(feats_good[trained], prior_good[trained], feats_def, prior_def, target_def, masked_def, gen)

        stat_idx = held if n_hold else trained
        with torch.no_grad():
            logits = self.head(feats_good[stat_idx], prior_good[stat_idx])
        h_scores = top_k_mean(logits, self._k()).double().cpu()
        h_maps = patch_maps_to_pixels(logits.cpu(), self.input_size, self.sigma).double()
        self.stats[4:8] = torch.stack([h_scores.mean(), _std(h_scores), h_maps.mean(), _std(h_maps)])
        self.training_done = {"steps": self.steps, "defects": len(defects), "defects_with_mask": int(defects.has_mask.sum()),
                              "views": len(AUGMENTS[self.augment]), "head_stats_on": "held-out" if n_hold else "in-sample",
                              "precision": self.precision}

    def _checked_defects(self, defects: LabelledDefects | None) -> LabelledDefects | None:
        """``defects`` with arrays of the contract's shapes and types, or None for none."""
        if defects is None or len(defects) == 0:
            return None
        h, w = self.input_size
        k = len(defects.images)
        images, masks, has_mask = (np.asarray(a) for a in (defects.images, defects.masks, defects.has_mask))
        if images.dtype != np.uint8 or images.shape != (k, h, w, 3):
            raise InputError(f"mixed: labelled defect images must be uint8 ({k}, {h}, {w}, 3); got {images.dtype} {images.shape}")
        if masks.shape != (k, h, w) or has_mask.shape != (k,):
            raise InputError(f"mixed: labelled defect masks must be ({k}, {h}, {w}) with has_mask ({k},); "
                             f"got {masks.shape} and {has_mask.shape}")
        return LabelledDefects(images=images, masks=masks.astype(bool), has_mask=has_mask.astype(bool))

    def _defect_views(self, defects: LabelledDefects) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Head inputs, priors, grid targets and has-mask flags of every view of the defects."""
        grid = self.padim.grid
        assert grid is not None
        emb, maps = [], []
        for s in range(0, len(defects), 16):
            e, m = self._unsupervised(defects.images[s : s + 16])
            emb.append(e)
            maps.append(m)
        upright_emb, upright_maps = torch.cat(emb), torch.cat(maps).numpy()
        feats, priors, targets = [], [], []
        for i, (imgs, masks, prior_maps) in enumerate(views((defects.images, defects.masks, upright_maps), self.augment)):
            feats.append(self._head_input(upright_emb if i == 0 else self._embedding(imgs)))
            priors.append(self._prior(torch.from_numpy(prior_maps)))
            targets.append(F.adaptive_avg_pool2d(torch.from_numpy(masks).float()[:, None], grid)[:, 0])
        masked = torch.from_numpy(np.tile(defects.has_mask, len(feats)))
        dev = self.device
        return torch.cat(feats), torch.cat(priors).to(dev), torch.cat(targets).to(dev), masked.to(dev)

    def _k(self) -> int:
        grid = self.padim.grid
        assert grid is not None
        return max(1, math.ceil(self.top_k * grid[0] * grid[1]))

    def _train(self, feats_good, prior_good, feats_def, prior_def, target_def, masked_def, gen: torch.Generator) -> None:
        """``steps`` Adam steps on batches of half good, half defective views (drawn with
        replacement from ``gen``: the same sequence on any device)."""
        assert self.head is not None
        head, k = self.head, self._k()
        opt = torch.optim.Adam(head.parameters(), lr=self.lr, weight_decay=1e-4)
        n_good = self.batch // 2
        n_def = self.batch - n_good
        labels = torch.cat([torch.zeros(n_good), torch.ones(n_def)]).to(self.device)
        target_good = torch.zeros(n_good, *prior_good.shape[1:], device=self.device)
        layout = training_layout(self.precision)  # channels-last for oneDNN's bfloat16 kernels
        head.to(memory_format=layout)
        progress, task = training_progress(self.steps, "mixed")
        head.train()
        with progress:
            for step in range(self.steps):
                gi = torch.randint(len(feats_good), (n_good,), generator=gen).to(self.device)
                di = torch.randint(len(feats_def), (n_def,), generator=gen).to(self.device)
                with training_autocast(self.precision, self.device):
                    x = torch.cat([feats_good[gi], feats_def[di]]).contiguous(memory_format=layout)
                    logits = head(x, torch.cat([prior_good[gi], prior_def[di]]))
                logits = logits.float()
                target = torch.cat([target_good, target_def[di]])
                seg_rows = torch.cat([torch.ones(n_good, dtype=torch.bool, device=self.device), masked_def[di]])
                seg = balanced_focal_loss(logits[seg_rows], target[seg_rows])
                if masked_def[di].any():
                    seg = seg + soft_dice_loss(logits[n_good:][masked_def[di]], target_def[di][masked_def[di]])
                image = F.binary_cross_entropy_with_logits(top_k_mean(logits, k), labels)
                ramp = 0.5 * (step + 1) / self.steps  # the image term's weight (Božič's dynamic balance)
                loss = (1 - ramp) * seg + ramp * image
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                progress.advance(task)
        head.to(memory_format=torch.contiguous_format)
        head.eval()

    # --- predict --------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> Prediction:
        if self.head is None:  # K = 0: PaDiM's own predictions
            return self.padim.predict(images)
        scores, maps = [], []
        for s in range(0, len(images), 16):
            u_z, h_z, u_map_z, h_map_z = self.standardised_parts(images[s : s + 16])
            # the head adds evidence, never takes it away (see the module's docstring)
            weight = self.stats[8]
            scores.append(u_z + weight * h_z.clamp_min(0))
            maps.append((u_map_z + weight * h_map_z.clamp_min(0)).float())
        return Prediction(scores=torch.cat(scores).numpy(), maps=torch.cat(maps).numpy())

    @torch.no_grad()
    def standardised_parts(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The two parts of a fitted head's predictions, each in good-image standard
        deviations (float64): PaDiM's score (N,), the head's top-k logit (N,), PaDiM's
        map (N, H, W) and the head's (N, H, W)."""
        if self.head is None or self.stats is None:
            raise RuntimeError("mixed: no head (fitted without labelled defects, or not fitted)")
        st = self.stats
        emb, u_maps = self._unsupervised(images)
        logits = self.head(self._head_input(emb), self._prior(u_maps).to(self.device)).float().cpu()
        h_maps = patch_maps_to_pixels(logits, self.input_size, self.sigma)
        u_z = (u_maps.flatten(1).amax(1).double() - st[0]) / st[1]
        h_z = (top_k_mean(logits, self._k()).double() - st[4]) / st[5]
        return u_z, h_z, (u_maps.double() - st[2]) / st[3], (h_maps.double() - st[6]) / st[7]

    # --- artifacts ------------------------------------------------------------------

    def state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"padim.{k}": v for k, v in self.padim.state_tensors().items()}
        if self.head is not None:
            assert self.feat_mean is not None and self.feat_std is not None and self.stats is not None
            tensors.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
            tensors.update(feat_mean=self.feat_mean, feat_std=self.feat_std, stats=self.stats)
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.padim.load_state_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("padim.")})
        self.head = self.feat_mean = self.feat_std = self.stats = None
        if "stats" not in tensors:
            return  # fitted without labelled defects: PaDiM alone
        if "feat_mean" not in tensors or "feat_std" not in tensors or tensors["stats"].shape != (len(STATS),):
            raise InputError("mixed: saved state has a head but lacks feat_mean/feat_std or a stats tensor of "
                             f"{len(STATS)} values")
        self.feat_mean, self.feat_std, self.stats = tensors["feat_mean"], tensors["feat_std"], tensors["stats"].double()
        self.head = SegmentationHead(int(self.feat_mean.shape[1]), self.hidden)
        try:
            self.head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        except RuntimeError as exc:
            raise InputError(f"mixed: saved head does not fit: {str(exc).splitlines()[0][:200]}") from None
        self.head.eval()
        self.to(self.device)

    def extra_config(self) -> dict[str, Any]:
        return {"padim": self.padim.extra_config(), "training_done": self.training_done}

    def load_extra_config(self, config: dict[str, Any]) -> None:
        self.padim.load_extra_config(config.get("padim") or {})
        self.training_done = config.get("training_done")


def _std(values: torch.Tensor) -> torch.Tensor:
    """Sample standard deviation, floored: a constant part must not divide by zero."""
    return values.flatten().std().clamp_min(1e-6)
