"""The Detector interface every detector plugin implements, and its artifact format.

A detector learns from good images only and returns raw outputs; the harness computes
every metric. A fitted detector saves as ``config.json`` + ``model.safetensors`` (never
pickle) and loads back through the registry by name.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from iadbench.capabilities import STUB_MARK
from iadbench.errors import InputError
from iadbench.types import Prediction

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ARTIFACT_FORMAT = 1



def optional(method):
    """Marks a placeholder of the base class: a detector that does not override it lacks
    that ability (iadbench.capabilities reads the mark)."""
    setattr(method, STUB_MARK, True)
    return method


@dataclass
class LabelledDefects:
    """Labelled defective training images for a mixed-supervision fit, at the detector's
    input size: ``images`` uint8 (K, H, W, 3), ``masks`` bool (K, H, W) where
    ``has_mask`` (K,) is true; an image without a mask is labelled defective as a whole
    (its mask row is all False and means "unknown", not "good")."""

    images: np.ndarray
    masks: np.ndarray
    has_mask: np.ndarray

    def __len__(self) -> int:
        return int(len(self.images))


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
    #: The torch device the detector was moved to (``Detector.to``) before fit.
    device: str = "cpu"
    #: Labelled defective images, given only to a detector whose ``supervision`` is
    #: "mixed" (None or empty: learn from the good images alone).
    defects: LabelledDefects | None = None


class Detector(ABC):
    """Base class of detectors.

    Images arrive as uint8 RGB arrays of shape (N, H, W, 3) already resized to
    ``input_size``; maps must come back at that size.

    The constructor's signature declares the detector's parameters (names, defaults,
    type annotations; iadbench.params). The base records the arguments each instance
    was built with, defaults applied, as ``self.params`` (saved in config.json, from
    which ``factory(**params)`` rebuilds it): a subclass need not pass them on to
    ``super().__init__``. A constructor that resolves a default (say ``layers=None`` to
    the backbone's stages) may ``self.params.update(layers=layers)``, so a saved model
    keeps the value it was fitted with should the default change. Optional abilities
    are the protocols of iadbench.capabilities.
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
    #: out the few images a tail fit would then lack (``iadbench.model.fit.choose_calibration``).
    calibration_refits: bool = False
    #: Set by ``fit`` of detectors trained by gradient steps: what training did,
    #: {"steps": N, "epochs": E} (either may be missing). The record puts it beside the
    #: spec's ``published_training`` length; None: one-pass detectors, or not fitted.
    training_done: dict[str, Any] | None = None
    #: Relative difference two fits with one seed may show in their scores (the
    #: conformance kit, iadbench.testing): 0 for bit-identical refits; raise it where
    #: e.g. a threaded reduction is not reproducible to the last bit.
    determinism_rtol: float = 1e-5
    #: "unsupervised": fit learns from good images only (the harness never hands it a
    #: defect); "mixed": fit also reads ``ctx.defects`` where a run moved labelled
    #: defects into training (``--defects-in-train``), and must work without them.
    supervision: str = "unsupervised"
    #: Where fit and predict compute, a torch device string ("cpu", "cuda:0"); set by
    #: ``to``. Images still arrive and outputs still leave as numpy arrays on the CPU.
    device: str = "cpu"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_records_params", False):
            cls.__init__ = _recording(init)  # type: ignore[method-assign]

    def __init__(self, **params: Any):
        # Explicit params (the style before the base recorded them) still win; a bare
        # ``super().__init__()`` keeps what the subclass's constructor call recorded.
        if params or "params" not in self.__dict__:
            self.params = dict(params)

    @abstractmethod
    def fit(self, images: np.ndarray, ctx: FitContext) -> None:
        """Learn from good images only."""

    @optional
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

    @optional
    def update(self, images: np.ndarray, ctx: FitContext) -> Prediction:
        """Optional (iadbench.capabilities.Updatable; ``adbench update``): fold more good
        ``images`` into the fitted model without refitting from scratch, and return each
        new image's out-of-fold prediction under the updated model, as
        ``fit_out_of_fold`` would give it (the threshold is re-calibrated on them). Raise
        InputError where this model cannot be updated (say why). Detectors without it are
        updated by a refit on the union of their training images and the new ones.
        ``update_method`` says how, in words for the model's lineage."""
        raise NotImplementedError(f"detector '{self.name}' cannot be updated in place")

    @optional
    def backbone_forward(self, images: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Run the pretrained backbone alone (no cache), for the cost table.

        Detectors without a backbone leave this as is and the harness records None.
        """
        raise NotImplementedError

    def to(self, device: str) -> Detector:
        """Compute on ``device`` from now on (a torch device string), fitted or not: the
        harness calls it before ``fit`` and after loading a saved model. The base moves
        every ``torch.nn.Module`` and tensor attribute and sets ``self.device``; a
        detector that creates tensors in fit or predict creates them on ``self.device``,
        and one that keeps part of its state on the CPU on purpose overrides this."""
        import torch

        for name, value in list(vars(self).items()):
            if isinstance(value, (torch.nn.Module, torch.Tensor)):
                setattr(self, name, value.to(device))
        self.device = str(device)
        return self

    @property
    def has_backbone(self) -> bool:
        from iadbench.capabilities import overrides

        return overrides(self, "backbone_forward")

    @optional
    def export_module(self) -> torch.nn.Module:
        """Optional: the fitted inference as one traceable module, uint8 (N, H, W, 3) at
        ``input_size`` -> (score (N,), map (N, H, W)), for ONNX export (iadbench.deploy).
        Detectors that cannot export leave this as is; the reason is shown to the user."""
        raise NotImplementedError(f"detector '{self.name}' has no export graph (it runs in eager PyTorch only)")

    @property
    def exportable(self) -> bool:
        from iadbench.capabilities import Exportable, implements

        return implements(self, Exportable)

    @optional
    def export_front(self) -> torch.nn.Module:
        """Optional, for detectors whose scoring needs more than a graph holds (e.g. an
        approximate nearest-neighbour index): the traceable front, uint8 (N, H, W, 3) ->
        one float tensor, which the onnx runtime runs in onnxruntime before handing its
        output to ``predict_from_front``. Used instead of ``export_module`` when
        ``split_runtime`` is true."""
        raise NotImplementedError(f"detector '{self.name}' has no front graph")

    @optional
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
        # safetensors writes 0600; a model folder is shared (a container's user, colleagues)
        os.chmod(directory / WEIGHTS_FILE, 0o644)
        config = {
            "format": ARTIFACT_FORMAT,
            "detector": self.name,
            "params": self.params,
            "input_size": list(self.input_size),
            "extra": self.extra_config(),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, default=_plain))
        return directory


def _plain(value: Any) -> Any:
    """JSON for what a caller may pass a constructor directly: numpy scalars, paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable (a detector param must be)")


def _recording(init: Any) -> Any:
    """``init`` that first records the arguments of the call as ``self.params``, with
    defaults applied and ``**kwargs`` spread, unless an outer constructor of the same
    instance (a subclass's) recorded its own already."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def recording_init(self: Detector, *args: Any, **kwargs: Any) -> None:
        if "params" not in self.__dict__:
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError:
                pass  # the constructor itself raises the clear error just below
            else:
                bound.apply_defaults()
                params: dict[str, Any] = {}
                for i, (name, value) in enumerate(bound.arguments.items()):
                    kind = signature.parameters[name].kind
                    if i == 0 or kind is inspect.Parameter.VAR_POSITIONAL:
                        continue  # self; extra positionals name no param
                    if kind is inspect.Parameter.VAR_KEYWORD:
                        params.update(value)
                    else:
                        params[name] = value
                self.params = params
        init(self, *args, **kwargs)

    recording_init._records_params = True  # type: ignore[attr-defined]
    return recording_init


def read_artifact(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a saved detector's config and tensors (on the CPU, where ``save`` put
    them; ``Detector.to`` moves them), with one-line errors."""
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
        tensors = load_file(weights_path, device="cpu")
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise InputError(f"corrupt weights file: {exc}", weights_path) from exc
    return config, tensors
