"""The Detector interface every detector plugin implements, and its artifact format.

A detector learns from good images only and returns raw outputs; the harness computes
every metric. A fitted detector saves as ``config.json`` + ``model.safetensors`` (never
pickle) and loads back through the registry by name.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from iadbench.errors import InputError
from iadbench.types import Prediction

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ARTIFACT_FORMAT = 1


@dataclass
class FitContext:
    """What the harness tells a detector about the cell it runs in.

    ``workdir`` is the only place a detector may write (checkpoints, logs); it lives in
    the cell's run folder. Global RNGs are already seeded with ``seed``.
    """

    seed: int = 0
    workdir: Path | None = None
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class Detector(ABC):
    """Base class of detectors.

    Images arrive as uint8 RGB arrays of shape (N, H, W, 3) already resized to
    ``input_size``; maps must come back at that size.
    """

    #: Registered name; set by the plugin (used to load artifacts back).
    name: str = ""
    #: (height, width) the harness resizes images to.
    input_size: tuple[int, int] = (256, 256)
    #: Arithmetic of ``predict``: "fp32", or "bf16" where a detector runs part of it in
    #: bfloat16 (efficientad). Export checks switch it with
    #: ``iadbench.precision.float32_predictions``; ``--runtime auto`` keeps "bf16" eager.
    predict_precision: str = "fp32"
    #: How ``fit_out_of_fold`` scores each training image without refitting, in words
    #: for the record ("leave-one-out": the exact model fitted without that image;
    #: "self-excluded bank": scored against the memory bank less that image's rows).
    #: None: the detector has no such shortcut and the harness calibrates its
    #: threshold on good images held out from fit instead.
    out_of_fold: str | None = None
    #: True where refitting is cheap enough (seconds on a small training set) for the
    #: harness to calibrate a small training set by k-fold refits instead of holding
    #: out the few images a tail fit would then lack (``runner.cell.choose_calibration``).
    calibration_refits: bool = False

    def __init__(self, **params: Any):
        self.params = dict(params)

    @abstractmethod
    def fit(self, images: np.ndarray, ctx: FitContext) -> None:
        """Learn from good images only."""

    def fit_out_of_fold(self, images: np.ndarray, ctx: FitContext) -> Prediction:
        """Optional (set ``out_of_fold`` when implemented): fit on all ``images`` exactly
        as ``fit`` does, and return for every image the prediction that a model fitted
        on the others gives it (scores (N,), maps (N, H, W)). The harness fixes the
        threshold on these out-of-fold scores, so they must be as close as the method
        allows to how the final model scores good images it has never seen."""
        raise NotImplementedError(f"detector '{self.name}' has no out-of-fold shortcut")

    @abstractmethod
    def predict(self, images: np.ndarray) -> Prediction:
        """Score images: raw image scores and per-pixel anomaly maps."""

    def backbone_forward(self, images: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Run the pretrained backbone alone (no cache), for the cost table.

        Detectors without a backbone leave this as is and the harness records None.
        """
        raise NotImplementedError

    @property
    def has_backbone(self) -> bool:
        return type(self).backbone_forward is not Detector.backbone_forward

    def export_module(self) -> torch.nn.Module:
        """Optional: the fitted inference as one traceable module, uint8 (N, H, W, 3) at
        ``input_size`` -> (score (N,), map (N, H, W)), for ONNX export (iadbench.deploy).
        Detectors that cannot export leave this as is; the reason is shown to the user."""
        raise NotImplementedError(f"detector '{self.name}' has no export graph (it runs in eager PyTorch only)")

    @property
    def exportable(self) -> bool:
        return type(self).export_module is not Detector.export_module

    def export_front(self) -> torch.nn.Module:
        """Optional, for detectors whose scoring needs more than a graph holds (e.g. an
        approximate nearest-neighbour index): the traceable front, uint8 (N, H, W, 3) ->
        one float tensor, which the onnx runtime runs in onnxruntime before handing its
        output to ``predict_from_front``. Used instead of ``export_module`` when
        ``split_runtime`` is true."""
        raise NotImplementedError(f"detector '{self.name}' has no front graph")

    def predict_from_front(self, front: np.ndarray) -> Prediction:
        """The rest of ``predict`` from the front graph's output (see ``export_front``)."""
        raise NotImplementedError(f"detector '{self.name}' has no front graph")

    @property
    def split_runtime(self) -> bool:
        """True when the onnx runtime should run ``export_front`` in onnxruntime and the
        rest in Python rather than the whole ``export_module`` graph."""
        return False

    # --- artifacts -----------------------------------------------------------------

    @abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything fitted, as named tensors (saved with safetensors)."""

    @abstractmethod
    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what state_tensors() returned."""

    def extra_config(self) -> dict[str, Any]:
        """JSON-able fitted values that are not tensors (saved in config.json)."""
        return {}

    def load_extra_config(self, config: dict[str, Any]) -> None:  # noqa: B027
        """Restore what extra_config() returned."""

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_tensors().items()}
        save_file(tensors, directory / WEIGHTS_FILE)
        config = {
            "format": ARTIFACT_FORMAT,
            "detector": self.name,
            "params": self.params,
            "input_size": list(self.input_size),
            "extra": self.extra_config(),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        return directory


def read_artifact(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a saved detector's config and tensors, with one-line errors."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    weights_path = directory / WEIGHTS_FILE
    if not config_path.is_file():
        raise InputError(f"not a saved detector (no {CONFIG_FILE})", directory)
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable detector config: {exc}", config_path) from exc
    if config.get("format") != ARTIFACT_FORMAT or "detector" not in config:
        raise InputError("unsupported artifact format", config_path)
    if not weights_path.is_file():
        raise InputError("missing weights file", weights_path)
    try:
        tensors = load_file(weights_path)
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise InputError(f"corrupt weights file: {exc}", weights_path) from exc
    return config, tensors
