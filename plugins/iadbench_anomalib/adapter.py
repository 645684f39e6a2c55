"""One Detector class that drives any anomalib image model through the iadbench contract.

fit: a minimal Lightning Trainer (on the detector's device, the CPU or one GPU; no
logger, no checkpoints, root in the cell's workdir) runs the model's own training_step/configure_optimizers and its
epoch-end hooks (PaDiM/PatchCore/DFM/DFKDE fit their statistics there) on our images.
predict: the model's torch module in eval mode on the pre-processed images; its
InferenceBatch gives the raw ``pred_score`` and ``anomaly_map``. anomalib's
post-processor (normalisation, thresholds), evaluator and visualizer are never built.
"""

from __future__ import annotations

import importlib
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from iadbench.api import Detector, FitContext, InputError, Prediction
from iadbench.memory import bounded_heap
from iadbench.seeding import seed_everything
from iadbench_anomalib.offline import offline_backbones, pretrained_state_dict, quiet

if TYPE_CHECKING:  # pragma: no cover
    from iadbench_anomalib.catalog import ModelEntry

#: Params the adapter consumes itself; every other param goes to the anomalib model.
ADAPTER_PARAMS = ("input_size", "batch_size", "max_epochs", "max_steps", "backbone_weights", "weights")


class AnomalibDetector(Detector):
    """An anomalib image model behind the iadbench Detector interface."""

    def __init__(self, entry: ModelEntry, **params: Any):
        unknown = sorted(set(params) - set(entry.params))
        if unknown:
            raise InputError(
                f"anomalib.{entry.key}: unknown param(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(entry.params))})"
            )
        merged = {**entry.params, **params}
        blocked = entry.blocked_reason(merged)
        if blocked:
            raise InputError(f"anomalib.{entry.key} is unavailable here: {blocked}")
        super().__init__(**merged)
        self.entry = entry
        self.name = f"anomalib.{entry.key}"
        size = merged["input_size"]
        if not isinstance(size, int) or size < 32 or size % 32:
            raise InputError(f"{self.name}: input_size must be a multiple of 32 (>= 32), got {size!r}")
        self.input_size = (size, size)
        self.module: Any = None  # the anomalib LightningModule
        # {"steps": N, "epochs": E} after a trained model's fit (see training.train)
        self.training_done: dict[str, Any] | None = None
        self._backbones: list[torch.nn.Module] = []

    # --- building -------------------------------------------------------------------

    def _model_kwargs(self, scratch: Path) -> dict[str, Any]:
        kwargs = {k: v for k, v in self.params.items() if k not in ADAPTER_PARAMS}
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        return self.entry.prepare(kwargs, self, scratch)

    def _state_dict_for(self, arch: str) -> dict[str, torch.Tensor]:
        weights = self.params.get("backbone_weights")
        return pretrained_state_dict(arch, weights)

    def _build(self) -> None:
        """Construct the anomalib module (offline: backbones get our weights)."""
        module_name, cls_name = self.entry.target.split(":")
        with quiet():
            cls = getattr(importlib.import_module(module_name), cls_name)
            try:
                pre = _without_crops(cls.configure_pre_processor(image_size=self.input_size))
            except ValueError as exc:  # e.g. an input size the model refuses
                raise InputError(f"{self.name}: {exc}") from None
            # Some constructors want a folder that exists (e.g. DRAEM's texture source);
            # anything they need is read while constructing, so a scratch dir suffices.
            with tempfile.TemporaryDirectory(prefix="iadbench-anomalib-") as scratch, ExitStack() as stack:
                loaded = stack.enter_context(offline_backbones(self._state_dict_for))
                for patch in self.entry.patches(self):
                    stack.enter_context(patch)
                module = cls(
                    **self._model_kwargs(Path(scratch)),
                    pre_processor=pre,
                    post_processor=False,
                    evaluator=False,
                    visualizer=False,
                )
                self._backbones = list(loaded)
        self.module = module

    # --- data -----------------------------------------------------------------------

    def _to_tensor(self, images: np.ndarray) -> torch.Tensor:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise InputError(
                f"{self.name}: expected uint8 images (N,H,W,3), got {images.dtype} {images.shape}"
            )
        if tuple(images.shape[1:3]) != self.input_size:
            raise InputError(f"{self.name}: images are {images.shape[1:3]}, input_size is {self.input_size}")
        # contiguous NCHW: a permuted (channels-last) tensor travels through the convs
        # and breaks models that .view() their features (FRE)
        return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0).contiguous()

    def _preprocess(self, x: torch.Tensor) -> torch.Tensor:
        transform = self.module.pre_processor.transform if self.module.pre_processor else None
        return transform(x) if transform is not None else x

    # --- Detector -------------------------------------------------------------------

    def fit(self, images: np.ndarray, ctx: FitContext) -> None:
        x = self._to_tensor(images)
        need = self.entry.min_images(self.params)
        if len(x) < need:
            raise InputError(f"{self.name}: needs at least {need} training images, got {len(x)}")
        # The module's random initialisation (e.g. STFPM's student) draws from the global
        # generators: seed them here, so a fit is the seed's whatever ran before it (the
        # harness seeds each cell too; a direct fit() call must not depend on that).
        seed_everything(int(ctx.seed))
        self._build()
        with ExitStack() as stack:
            workdir = ctx.workdir
            if workdir is None:  # never the cwd: a throwaway folder
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iadbench-anomalib-")))
            Path(workdir).mkdir(parents=True, exist_ok=True)
            stack.enter_context(quiet())
            if self.entry.bounded_heap:
                stack.enter_context(bounded_heap())
            from iadbench_anomalib.training import train

            train(self, x, Path(workdir), ctx.seed)
        # Lightning hands the module back on the CPU when training ends (its teardown)
        self.module.to(self.device).eval()

    def _require_fitted(self) -> None:
        if self.module is None:
            raise InputError(f"{self.name}: predict() before fit() or load")

    def predict(self, images: np.ndarray) -> Prediction:
        self._require_fitted()
        x = self._to_tensor(images)
        bs = max(1, int(self.params.get("batch_size", 8)))
        scores, maps = [], []
        self.module.eval()
        with quiet(), torch.no_grad():
            for i in range(0, len(x), bs):
                xi = self._preprocess(x[i : i + bs].to(self.device))
                raw = self.entry.raw_forward
                out = raw(self.module.model, xi) if raw else self.module.model(xi)
                s, m = self._raw_outputs(out, len(x[i : i + bs]))
                scores.append(s)
                maps.append(m)
        return Prediction(scores=torch.cat(scores).cpu().numpy(), maps=torch.cat(maps).cpu().numpy())

    def _raw_outputs(self, out: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        score = getattr(out, "pred_score", None)
        amap = getattr(out, "anomaly_map", None)
        if amap is not None:
            amap = amap.detach().float().reshape(n, -1, *amap.shape[-2:])[:, 0]
            if tuple(amap.shape[-2:]) != self.input_size:
                amap = F.interpolate(amap[:, None], size=self.input_size, mode="bilinear", align_corners=False)[:, 0]
        if score is None:
            if amap is None:
                raise RuntimeError(f"{self.name}: the model returned neither a score nor a map")
            score = amap.flatten(1).amax(1)
        score = score.detach().float().reshape(n, -1)[:, 0]
        if amap is None:
            # Image-level model (e.g. GANomaly, DFKDE): no localisation; a flat map
            # at the image score keeps pixel metrics defined but uninformative.
            amap = score[:, None, None].expand(n, *self.input_size).clone()
        return score, amap

    def backbone_forward(self, images: np.ndarray) -> None:
        self._require_fitted()
        if not self._backbones:
            raise NotImplementedError(f"{self.name} has no pretrained backbone")
        x = self._preprocess(self._to_tensor(images).to(self.device))
        with quiet(), torch.no_grad():
            for net in self._backbones:
                net.eval()
                net(x)

    @property
    def has_backbone(self) -> bool:
        return self.entry.backbone

    # --- artifacts ------------------------------------------------------------------

    def state_tensors(self) -> dict[str, torch.Tensor]:
        self._require_fitted()
        return dict(self.module.model.state_dict())

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self._build()
        model = self.module.model
        # Fitted buffers start empty (size 0); give them the saved shapes first.
        current = model.state_dict()
        for key, value in tensors.items():
            if key in current and current[key].shape != value.shape:
                _resize_buffer(model, key, value)
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise InputError(f"{self.name}: saved tensors do not fit this model: {str(exc).splitlines()[0]}") from None
        self.entry.after_load(self)
        self.module.eval()


def _without_crops(pre: Any) -> Any:
    """The model's own pre-processor (resize, normalisation) minus centre crops: the
    harness scores maps against masks of the whole image, so maps must cover it."""
    from torchvision.transforms.v2 import CenterCrop, Compose

    transform = getattr(pre, "transform", None)
    if isinstance(transform, Compose):
        kept = [t for t in transform.transforms if not isinstance(t, CenterCrop)]
        if len(kept) != len(transform.transforms):
            pre.transform = Compose(kept)
            from anomalib.pre_processing.utils.transform import get_exportable_transform

            pre.export_transform = get_exportable_transform(pre.transform)
    elif isinstance(transform, CenterCrop):
        pre.transform = None
    return pre


def _resize_buffer(model: torch.nn.Module, key: str, value: torch.Tensor) -> None:
    owner_name, _, attr = key.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    if attr in owner._buffers:
        owner._buffers[attr] = torch.empty_like(value)
