"""EfficientAD (Batzner et al., "EfficientAD: Accurate Visual Anomaly Detection at
Millisecond-Level Latencies", WACV 2024), trained in-house.

Fit: a frozen teacher (see ``teacher.py``: by default EfficientNet-Lite0 features with a
fixed projection to ``teacher_channels``, or without one when None; or a user's PDN via
``teacher_weights``), its outputs standardised per
channel over the training images. A PDN student with twice the teacher's channels is
trained with Adam (weight decay 1e-5, learning rates x0.1 after 95% of the steps), one
training image per step, on the sum of
  * the hard-feature loss: the mean of the student-teacher squared errors at or above
    their ``mining_quantile`` (first half of the student's channels);
  * the penalty: the mean square of the student's first half on a natural image from
    ``penalty_dir`` (the paper uses ImageNet; without a folder the term is off and
    ``extra`` records it);
  * the autoencoder loss: MSE of the autoencoder against the teacher, and the student's
    second half against the autoencoder, both on a colour-jittered copy (brightness,
    contrast or saturation by a factor in [0.8, 1.2]).
Map normalisation: on held-out good training images (``val_fraction``, never trained on),
the 0.9 and 0.995 quantiles of the student-teacher and the student-autoencoder maps
map each to [0, 0.1]; the anomaly map is their average, upsampled bilinearly to the
input (zero-padded by 4 first with an unpadded PDN teacher, as the reference code);
the image score is its maximum.

Deviations, all for the CPU budget or offline use: the default teacher is not the
distilled WideResNet-101 PDN (``teacher.py``). The default training is a short-budget
recipe: ``DEFAULT_STEPS`` (1,000) instead of the paper's 70,000 steps, in bfloat16 mixed
precision where the CPU has bfloat16 units (``precision``, ``iadbench.precision``), and
for so few steps the student learns at lr 1e-3 (the paper: 1e-4) and mines the errors
above their 0.9 quantile (the paper: 0.999); the autoencoder keeps the paper's 1e-4
(``ae_lr``). Why, measured on MVTec bottle at 60 steps (image / pixel AUROC of the
student-teacher map, version 2's teacher): the paper's 1e-4 / 0.999 barely moves the
student from its initialisation in that many steps; 1e-3 / 0.999 gave 0.935 / 0.574
(keeping 0.1% of the errors, most of each step's gradient is thrown away); 1e-3 / 0.9
0.913 / 0.861. An autoencoder at 1e-3 gave a map worse than chance at the pixel level
(0.583 / 0.346), at 1e-4 0.832 / 0.755. Version 3 (1,000 bf16 steps, the stride 8 + 16
teacher) on bottle: 1.000 / 0.991, where 1,000 steps with version 2's stride 4 + 8
teacher gave 0.997 / 0.986 (its autoencoder map alone 0.998 / 0.982, the student-teacher
map 0.963 / 0.963); on magnetic tile 0.748 / 0.715 against 0.667 / 0.634.
``steps=70000 lr=1e-4 mining_quantile=0.999`` is the paper's setting.
``student_width`` (1: the paper's) scales the student PDN's hidden channels, a cheaper
student for CPUs without bfloat16: at 0.5 with ``teacher_channels=None``, 89 against 302
ms an image in OpenVINO float32 under an AVX2 ceiling (2 cores), for image / pixel AUROC
1.000 / 0.990 on bottle (1.000 / 0.991) and 0.700 / 0.698 on magnetic tile (0.748 /
0.715) at 1,000 steps.
Prediction (version 4): the student and the autoencoder run in bfloat16 where the CPU
has it (``predict_precision``, ``auto``); the teacher and the maps stay float32. At
256 px, batch 1, on 2 cores: 230 -> 61 ms an image on bottle, 228 -> 60 on magnetic
tile, the same image / pixel AUROC and AUPRO on both to three decimals. An ONNX export
is float32 and is checked against float32 eager predictions.
The student and teacher squared errors are computed in one batch of two (the training
image and its jittered copy) instead of two forward passes, which gives the same
gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iadbench.api import Detector, FitContext, InputError, Prediction
from iadbench.backbones import canonical_arch
from iadbench.features import BackboneMixin
from iadbench.precision import inference_autocast, resolve_precision, training_autocast, training_layout
from iadbench.progress import training_progress
from iadbench_efficientad.core import combined_map, grid_maps, hard_feature_loss, map_quantiles
from iadbench_efficientad.networks import PDNS, AutoEncoder
from iadbench_efficientad.teacher import (
    TEACHER_CHANNELS,
    orthonormal_projection,
    project_backbone,
    read_teacher_state,
)

# CPU budget: on an idle 2-core machine with bfloat16 units (AMX) a PDN-S training step
# (student on two 256 px images, autoencoder, teacher on the jittered copy) takes ~0.35 s
# in mixed precision (~1.5 s in float32); 1,000 steps plus the teacher features and the
# held-out quantiles fit a bottle fit in ~7 of the 10 minutes. The paper: 70,000.
DEFAULT_STEPS = 1000  # the paper: PAPER_STEPS in plugin.py (kept there: registering imports no torch)
DEFAULT_LR, DEFAULT_AE_LR, DEFAULT_MINING_QUANTILE = 1e-3, 1e-4, 0.9  # the short-budget recipe (module doc)
DEFAULT_TEACHER_LAYERS = ["blocks.2", "blocks.3"]  # strides 8 + 16, as the paper's WideResNet layer 2 + 3
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def colour_jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One of brightness, contrast or saturation, by a factor drawn from U(0.8, 1.2)."""
    from torchvision.transforms.v2 import functional as TF

    factor = 0.8 + 0.4 * float(torch.rand((), generator=gen))
    kind = int(torch.randint(0, 3, (), generator=gen))
    fn = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)[kind]
    return fn(x, factor)


def load_penalty_images(folder: str, size: tuple[int, int], limit: int = 2000) -> np.ndarray:
    """Natural images for the penalty term, resized (bilinear) to the input size."""
    from iadbench.images import load_image

    paths = sorted(p for p in Path(folder).expanduser().rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not paths:
        raise InputError(f"efficientad: penalty_dir {folder} holds no images")
    return np.stack([load_image(p, size) for p in paths])


class EfficientAD(BackboneMixin, Detector):
    name = "efficientad"

    def __init__(
        self,
        input_size: int = 256,
        variant: str = "small",
        steps: int = DEFAULT_STEPS,
        lr: float = DEFAULT_LR,
        ae_lr: float = DEFAULT_AE_LR,
        weight_decay: float = 1e-5,
        teacher_weights: str | None = None,
        penalty_dir: str | None = None,
        backbone: str = "efficientnet_lite0",
        teacher_layers: Sequence[str] | None = None,
        val_fraction: float = 0.1,
        mining_quantile: float = DEFAULT_MINING_QUANTILE,
        precision: str = "auto",
        teacher_channels: int | None = TEACHER_CHANNELS,
        predict_precision: str = "auto",
        student_width: float = 1.0,
    ):
        if variant not in PDNS:
            raise InputError(f"efficientad: unknown variant {variant!r} (choose from {sorted(PDNS)})")
        if int(steps) < 1:
            raise InputError(f"efficientad: steps must be >= 1, got {steps}")
        if int(input_size) < 64 or int(input_size) % 32:
            raise InputError(f"efficientad: input_size must be a multiple of 32, >= 64; got {input_size}")
        for name, value in (("lr", lr), ("ae_lr", ae_lr)):
            if not float(value) > 0:
                raise InputError(f"efficientad: {name} must be > 0, got {value}")
        if not float(weight_decay) >= 0:
            raise InputError(f"efficientad: weight_decay must be >= 0, got {weight_decay}")
        if not 0 <= float(val_fraction) < 1:
            raise InputError(f"efficientad: val_fraction must be in [0, 1), got {val_fraction}")
        if not 0 < float(mining_quantile) < 1:
            raise InputError(f"efficientad: mining_quantile must be in (0, 1), got {mining_quantile}")
        if teacher_channels is not None and (not isinstance(teacher_channels, int) or isinstance(teacher_channels, bool) or teacher_channels < 1):
            raise InputError(f"efficientad: teacher_channels must be an integer >= 1 (or null: the stages' own), got {teacher_channels!r}")
        if not 0 < float(student_width) <= 4:
            raise InputError(f"efficientad: student_width must be in (0, 4] (1: the paper's PDN), got {student_width!r}")
        if penalty_dir and not Path(penalty_dir).expanduser().is_dir():
            raise InputError(f"efficientad: penalty_dir is not a folder: {penalty_dir}")
        self.precision = resolve_precision(precision, "efficientad")
        # The student and autoencoder at prediction (the teacher stays float32); also the
        # held-out quantiles' precision. iadbench.precision.float32_predictions switches it.
        self.predict_precision = resolve_precision(predict_precision, "efficientad predict_precision")
        arch = canonical_arch(backbone)
        layers = list(teacher_layers) if teacher_layers else list(DEFAULT_TEACHER_LAYERS)
        # Read (and check) a user's teacher now, so a bad file is a plan-time error.
        self.teacher_state = read_teacher_state(teacher_weights, variant) if teacher_weights else None
        self.params.update(teacher_layers=layers)  # resolved: a saved model keeps them
        self.input_size = (int(input_size), int(input_size))
        self.variant, self.steps, self.student_width = variant, int(steps), float(student_width)
        self.lr, self.ae_lr, self.weight_decay = float(lr), float(ae_lr), float(weight_decay)
        self.penalty_dir, self.val_fraction = penalty_dir, float(val_fraction)
        self.mining_quantile = float(mining_quantile)
        self.backbone, self.layers, self.weights = arch, layers, None
        # A PDN teacher keeps the paper's unpadded networks (maps padded by 4 after);
        # the backbone teacher's grid is input/4, which the padded PDN matches.
        self.padding = self.teacher_state is None
        # The teacher's width: a PDN teacher's 384; a backbone teacher's projected to
        # ``teacher_channels`` (384, the PDN's), or its stages' own with None (set in fit).
        self.requested_channels = teacher_channels  # validated above: None or an int >= 1
        self.channels = TEACHER_CHANNELS
        pdn = PDNS[variant]
        self.student = self._new_student()
        self.ae = AutoEncoder(self.channels, padding=self.padding, input_size=self.input_size[0])
        self.pdn_teacher = None
        if self.teacher_state is not None:
            self.pdn_teacher = pdn(TEACHER_CHANNELS, padding=False)
            self.pdn_teacher.load_state_dict(self.teacher_state)
            self.pdn_teacher.eval().requires_grad_(False)
        self.projection: torch.Tensor | None = None
        self.teacher_mean: torch.Tensor | None = None
        self.teacher_std: torch.Tensor | None = None
        self.quantiles: torch.Tensor | None = None  # q_a st, q_b st, q_a ae, q_b ae
        self.training_done: dict[str, Any] | None = None
        self.info: dict[str, Any] = {}

    def to(self, device: str) -> EfficientAD:
        """Moved, and the ``auto`` precisions decided again for the new device."""
        super().to(device)
        self.precision = resolve_precision(self.params.get("precision", "auto"), "efficientad", self.device)
        self.predict_precision = resolve_precision(self.params.get("predict_precision", "auto"),
                                                   "efficientad predict_precision", self.device)
        return self

    def _new_student(self) -> torch.nn.Module:
        """The student PDN: twice the teacher's channels out (the teacher's, then the
        autoencoder's), hidden channels at ``student_width`` times the paper's."""
        return PDNS[self.variant](2 * self.channels, padding=self.padding, width=self.student_width)

    # --- teacher -----------------------------------------------------------------

    def _raw_teacher(self, images: np.ndarray | None, x: torch.Tensor | None = None, cached: bool = True) -> torch.Tensor:
        """Teacher outputs before standardisation. ``cached``: through the shared
        feature cache (real images only; jittered copies would only fill it)."""
        if self.pdn_teacher is not None:
            with torch.no_grad():
                return self.pdn_teacher(to_float(images).to(self.device) if x is None else x)
        if cached and images is not None:
            feats = {k: v.to(self.device) for k, v in self.features(images).items()}  # the cache's are on the CPU
        else:
            feats = self.extractor(x if x is not None else to_float(images).to(self.device))
            feats = {k: v.clone() for k, v in feats.items()}  # leave inference mode
        return project_backbone(feats, self.layers, self.projection, self.student_grid)

    @property
    def student_grid(self) -> tuple[int, int]:
        """The padded student's output grid (input/4): a backbone teacher's stages are
        upsampled to it, whichever strides they have."""
        return (self.input_size[0] // 4, self.input_size[1] // 4)

    def _teacher(self, images: np.ndarray | None, x: torch.Tensor | None = None, cached: bool = True) -> torch.Tensor:
        assert self.teacher_mean is not None and self.teacher_std is not None
        return (self._raw_teacher(images, x, cached) - self.teacher_mean) / self.teacher_std

    # --- fit -----------------------------------------------------------------------

    def fit(self, images: np.ndarray, ctx: FitContext) -> None:
        self._check_images(images)
        if len(images) < 2:
            raise InputError("efficientad: needs at least 2 training images")
        if self.pdn_teacher is None:
            # Built before seeding: building a backbone (and converting its weights the
            # first time) draws from the global RNG, which would shift dropout's draws.
            c = sum(self.extractor(images[:1])[name].shape[1] for name in self.layers)
            if self.requested_channels is None:
                self.projection, self.channels = None, c
            else:
                if self.requested_channels < c:
                    raise InputError(f"efficientad: teacher_channels {self.requested_channels} is below the backbone stages' {c} channels")
                self.projection = orthonormal_projection(c, self.requested_channels, seed=int(ctx.seed)).to(self.device)
                self.channels = self.requested_channels
        torch.manual_seed(int(ctx.seed))  # initialisation and dropout
        gen = torch.Generator().manual_seed(int(ctx.seed))
        c = self.channels
        # initialised on the CPU, then moved: the same initial weights on any device
        self.student = self._new_student().to(self.device)
        self.ae = AutoEncoder(c, padding=self.padding, input_size=self.input_size[0]).to(self.device)

        n_val = int(round(len(images) * self.val_fraction)) if len(images) >= 5 else 0
        order = torch.randperm(len(images), generator=gen).numpy()
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        train = images[train_idx]

        # Teacher outputs of the training images, once; per-channel mean and std.
        raw = torch.cat([self._raw_teacher(train[i : i + 8]) for i in range(0, len(train), 8)])
        self.teacher_mean = raw.mean(dim=(0, 2, 3), keepdim=True)[:1]
        self.teacher_std = raw.std(dim=(0, 2, 3), keepdim=True)[:1].clamp_min(1e-6)
        targets = (raw - self.teacher_mean) / self.teacher_std
        del raw
        penalty = load_penalty_images(self.penalty_dir, self.input_size) if self.penalty_dir else None
        self.info = {
            "penalty": penalty is not None,
            "penalty_images": 0 if penalty is None else len(penalty),
            "teacher": "pdn:teacher_weights" if self.pdn_teacher is not None else f"backbone:{self.backbone}:{'+'.join(self.layers)}",
            "teacher_channels": c,
            "val_images": int(n_val),
            "precision": self.precision,
            "predict_precision": self.predict_precision,
        }

        groups = [{"params": list(self.student.parameters()), "lr": self.lr},
                  {"params": list(self.ae.parameters()), "lr": self.ae_lr}]
        opt = torch.optim.Adam(groups, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, int(0.95 * self.steps)), gamma=0.1)
        layout = training_layout(self.precision)
        self.student.train().to(memory_format=layout)
        self.ae.train().to(memory_format=layout)
        xs = to_float(train).to(self.device)
        perm = torch.randperm(len(train), generator=gen)
        progress, task = training_progress(self.steps, "efficientad")
        with progress:
            for step in range(self.steps):
                k = step % len(train)
                if k == 0 and step:
                    perm = torch.randperm(len(train), generator=gen)
                i = int(perm[k])
                x = xs[i : i + 1]
                aug = colour_jitter(x, gen)
                with torch.no_grad():
                    t_aug = self._teacher(None, aug, cached=False)
                with training_autocast(self.precision, self.device):
                    s = self.student(torch.cat([x, aug]).contiguous(memory_format=layout)).float()
                    ae_out = self.ae(aug.contiguous(memory_format=layout)).float()
                    loss = hard_feature_loss((targets[i : i + 1] - s[:1, :c]) ** 2, self.mining_quantile)
                    if penalty is not None:
                        j = int(torch.randint(0, len(penalty), (), generator=gen))
                        p_out = self.student(to_float(penalty[j : j + 1]).to(self.device).contiguous(memory_format=layout))
                        loss = loss + p_out[:, :c].float().pow(2).mean()
                loss = loss + (t_aug - ae_out).pow(2).mean() + (ae_out - s[1:, c:]).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                progress.advance(task)
        self.student.eval().to(memory_format=torch.contiguous_format)
        self.ae.eval().to(memory_format=torch.contiguous_format)
        self.training_done = {"steps": self.steps}

        # Quantiles of the two maps on held-out good images (else the training ones).
        ref = images[val_idx] if n_val else train
        st, ae = zip(*(self._grid_maps(ref[i : i + 8]) for i in range(0, len(ref), 8)))
        self.quantiles = torch.tensor([*map_quantiles(torch.cat(st)), *map_quantiles(torch.cat(ae))])

    # --- predict ---------------------------------------------------------------------

    @torch.no_grad()
    def _grid_maps(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(student-teacher, student-autoencoder) maps on the PDN grid, (N, h, w).
        The networks see a channels-last batch: oneDNN's fast layout in either
        precision (float32 too: 157 against 212 ms for PDN-S at 256 px)."""
        x = to_float(images).to(self.device)
        teacher = self._teacher(images, x)
        x = x.contiguous(memory_format=torch.channels_last)
        with inference_autocast(self.predict_precision, self.device):
            student, ae = self.student(x), self.ae(x)
        # The teacher joins the networks' layout: a difference of a channels-last and a
        # contiguous tensor was 7 ms of a 62 ms prediction.
        teacher = teacher.contiguous(memory_format=torch.channels_last)
        return grid_maps(teacher, student.float(), ae.float())

    def predict(self, images: np.ndarray) -> Prediction:
        if self.quantiles is None:
            raise RuntimeError("efficientad: predict() before fit()")
        self._check_images(images)
        q = [float(v) for v in self.quantiles]
        out = []
        for s in range(0, len(images), self.batch_size):
            out.append(combined_map(*self._grid_maps(images[s : s + self.batch_size]), q, self.padding, self.input_size))
        maps = torch.cat(out).cpu()
        return Prediction(scores=maps.flatten(1).amax(1).numpy(), maps=maps.numpy())

    def backbone_forward(self, images: np.ndarray) -> None:
        """The frozen teacher alone (backbone, or the user's PDN), for the cost table."""
        self._check_images(images)
        if self.pdn_teacher is not None:
            with torch.no_grad():
                self.pdn_teacher(to_float(images).to(self.device))
        else:
            self.extractor(images)

    # --- artifacts -------------------------------------------------------------------

    def export_module(self) -> torch.nn.Module:
        from iadbench_efficientad.export import EfficientADGraph

        return EfficientADGraph(self).eval()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.quantiles is None or self.teacher_mean is None or self.teacher_std is None:
            raise RuntimeError("efficientad: nothing fitted to save")
        out = {f"student.{k}": v for k, v in self.student.state_dict().items()}
        out.update({f"ae.{k}": v for k, v in self.ae.state_dict().items()})
        out.update(teacher_mean=self.teacher_mean, teacher_std=self.teacher_std, quantiles=self.quantiles)
        if self.projection is not None:
            out["projection"] = self.projection
        if self.pdn_teacher is not None:  # the model folder is self-contained
            out.update({f"teacher.{k}": v for k, v in self.pdn_teacher.state_dict().items()})
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        missing = {"teacher_mean", "teacher_std", "quantiles"} - set(tensors)
        if missing:
            raise InputError(f"efficientad: saved state lacks {sorted(missing)}")

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        teacher = part("teacher.")
        if teacher and self.pdn_teacher is None:
            self.padding = False
            self.pdn_teacher = PDNS[self.variant](TEACHER_CHANNELS, padding=False).eval().requires_grad_(False)
        # The networks' width is the teacher's, as saved (a projection's 384 by default,
        # the stages' own channels with teacher_channels=None).
        self.channels = int(tensors["teacher_mean"].shape[1])  # (1, C, 1, 1)
        self.student = self._new_student()
        self.ae = AutoEncoder(self.channels, padding=self.padding, input_size=self.input_size[0])
        try:
            self.student.load_state_dict(part("student."))
            self.ae.load_state_dict(part("ae."))
            if teacher:
                self.pdn_teacher.load_state_dict(teacher)
        except RuntimeError as exc:
            raise InputError(f"efficientad: saved networks do not fit: {str(exc).splitlines()[0][:200]}") from None
        self.student.eval()
        self.ae.eval()
        self.teacher_mean, self.teacher_std = tensors["teacher_mean"], tensors["teacher_std"]
        self.quantiles = tensors["quantiles"]
        self.projection = tensors.get("projection")

    def extra_config(self) -> dict[str, Any]:
        return {"info": self.info, "training_done": self.training_done}

    def load_extra_config(self, config: dict[str, Any]) -> None:
        self.info = dict(config.get("info") or {})
        self.training_done = config.get("training_done")
