"""Running an anomalib model's own training loop on in-memory images.

Imported only when a detector fits (lightning and anomalib take seconds to import).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from anomalib.data import ImageBatch
from lightning.pytorch import LightningDataModule, Trainer
from torch.utils.data import DataLoader, Dataset

if TYPE_CHECKING:  # pragma: no cover
    from iadbench_anomalib.adapter import AnomalibDetector


class _Images(Dataset):
    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def _collate(items: list[torch.Tensor]) -> ImageBatch:
    image = torch.stack(items)
    return ImageBatch(image=image, gt_label=torch.zeros(len(items), dtype=torch.bool))


class _GoodImages(LightningDataModule):
    """Good images only, as anomalib's datamodules hand them to a model.

    Some models look at ``trainer.datamodule`` (CFA initialises its centroid from the
    train loader, EfficientAD checks the batch size), so this is a real datamodule.
    """

    def __init__(self, x: torch.Tensor, batch_size: int, seed: int):
        super().__init__()
        self.x = x
        self.train_batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        # num_workers=0: the cell is its own process; no worker processes.
        return DataLoader(
            _Images(self.x), batch_size=self.train_batch_size, shuffle=True, generator=gen,
            num_workers=0, collate_fn=_collate,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Images(self.x), batch_size=self.train_batch_size, num_workers=0, collate_fn=_collate)


def _accelerator(device: str) -> dict:
    """Lightning's accelerator and devices for a torch device string: ``cuda:N`` is
    GPU N alone. Training stays float32 on a GPU too: anomalib's models were checked
    against their references in float32, not under autocast."""
    kind, _, index = str(device).partition(":")
    if kind == "cuda":
        return {"accelerator": "cuda", "devices": [int(index or 0)]}
    return {"accelerator": "cpu", "devices": 1}


def train(det: AnomalibDetector, x: torch.Tensor, workdir: Path, seed: int) -> None:
    module = det.module
    args = dict(module.trainer_arguments)
    for key in ("devices", "accelerator", "callbacks", "logger", "default_root_dir"):
        args.pop(key, None)
    if det.entry.trained:
        # Our params decide the training length; the model's own defaults are for GPUs.
        args["max_epochs"] = int(det.params["max_epochs"])
        args["max_steps"] = int(det.params.get("max_steps") or -1)
    else:
        args.setdefault("max_epochs", 1)
    if getattr(module, "automatic_optimization", True) is False:
        args.pop("gradient_clip_val", None)  # lightning refuses clipping with manual optimisation
    # Validation only where the model computes something it needs there.
    if not det.entry.needs_validation:
        args["limit_val_batches"] = 0
    args["num_sanity_val_steps"] = 0
    trainer = Trainer(
        **_accelerator(det.device),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(workdir),
        **args,
    )
    batch_size = det.entry.train_batch_size or int(det.params.get("batch_size", 8))
    trainer.fit(module, datamodule=_GoodImages(x, batch_size, seed))
    # What actually ran (max_epochs and max_steps both cap it, whichever ends first):
    # the cell records it beside the method's published length.
    batches = int(trainer.fit_loop.epoch_loop.batch_progress.total.completed)
    per_epoch = trainer.num_training_batches
    det.training_done = {
        "steps": batches,
        "epochs": round(batches / per_epoch, 2) if per_epoch and per_epoch != float("inf") else None,
    }
