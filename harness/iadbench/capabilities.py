"""What a detector can do beyond fit and predict, each ability a small protocol.

A detector has an ability when it implements the protocol's methods itself: the
``Detector`` base only stubs them (each raising NotImplementedError), so
``isinstance(detector, Exportable)`` alone is true of every detector; ``implements``
asks the real question. Data members count when set to something other than None.

``Detector.exportable`` and ``Detector.has_backbone`` delegate here; callers may use
either. ``Detector.split_runtime`` stays a property: a detector decides per instance
(PatchCore: only with an approximate search).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

    from iadbench.types import DetectorSpec, Prediction


@runtime_checkable
class Exportable(Protocol):
    """The fitted inference as one traceable module for ONNX (iadbench.deploy)."""

    def export_module(self) -> torch.nn.Module: ...


@runtime_checkable
class SplitRuntime(Protocol):
    """A traceable front graph whose output the rest of ``predict`` finishes in Python
    (scoring a graph cannot hold, e.g. an approximate nearest-neighbour index)."""

    def export_front(self) -> torch.nn.Module: ...

    def predict_from_front(self, front: np.ndarray) -> Prediction: ...


@runtime_checkable
class PretrainedBackbone(Protocol):
    """A pretrained backbone from iadbench.backbones: ``extractor`` over ``layers``, and
    ``backbone_forward`` (the backbone alone, for the cost table)."""

    extractor: Any
    layers: list[str]

    def backbone_forward(self, images: np.ndarray) -> None: ...


@runtime_checkable
class OutOfFold(Protocol):
    """Scores every training image as a model fitted without it would, in one fit;
    ``out_of_fold`` says how, in words for the record."""

    out_of_fold: str

    def fit_out_of_fold(self, images: np.ndarray, ctx: Any) -> Prediction: ...


@runtime_checkable
class Updatable(Protocol):
    """Folds more good images into the fitted model without refitting from scratch, and
    returns their out-of-fold predictions under the updated model (how
    ``fit_out_of_fold`` scores training images); ``adbench update`` calibrates on them."""

    def update(self, images: np.ndarray, ctx: Any) -> Prediction: ...


@runtime_checkable
class Trainable(Protocol):
    """Trained by gradient steps: ``fit`` sets ``training_done`` ({"steps": N,
    "epochs": E}), and the spec's ``published_training`` names the paper's length
    (``trainable(spec)``)."""

    training_done: dict[str, Any] | None


CAPABILITIES: tuple[type, ...] = (Exportable, SplitRuntime, PretrainedBackbone, OutOfFold, Updatable)


#: Set on the Detector base's placeholder methods (``iadbench.detector.optional``): a
#: detector has an ability when its class resolves the method to something else. Read as
#: a mark, so that this module needs nothing from iadbench.detector (which asks it).
STUB_MARK = "__iadbench_stub__"


def overrides(detector: Any, method: str) -> bool:
    """True where ``detector``'s class defines ``method`` other than the Detector stub."""
    own = inspect.getattr_static(type(detector), method, None)
    return own is not None and not getattr(own, STUB_MARK, False)


def _members(capability: type) -> tuple[list[str], list[str]]:
    methods = [n for n, v in vars(capability).items() if inspect.isfunction(v) and not n.startswith("_")]
    data = [n for n in vars(capability).get("__annotations__", {}) if not n.startswith("_")]
    return methods, data


def implements(detector: Any, capability: type) -> bool:
    """True where ``detector`` really provides ``capability``: its methods overridden,
    its data members present and not None (read statically: a lazy property such as
    ``extractor`` is not built to answer)."""
    methods, data = _members(capability)
    if not all(overrides(detector, m) for m in methods):
        return False
    missing = object()
    for name in data:
        value = inspect.getattr_static(detector, name, missing)
        if value is missing or value is None:
            return False
    return True


def trainable(spec: DetectorSpec) -> bool:
    """True where the spec declares a published training length (Trainable)."""
    return spec.published_training is not None


def capabilities_of(detector: Any) -> list[str]:
    """The names of the abilities ``detector`` implements, for reports."""
    return [c.__name__ for c in CAPABILITIES if implements(detector, c)]
