"""The public API for plugin authors: the types, markers and errors a plugin needs.

A plugin imports from the modules in ``PUBLIC_MODULES`` and from nothing else in
``iadbench``; ``lint-imports`` holds the built-in plugins to that (the contracts are in
pyproject.toml). Public, and kept stable for plugins:

- ``iadbench.api`` (this module): Detector, FitContext, the spec types (and
  ExecutorOptions), Sample (with RegionMask, per-region ground truth), Split, Prediction,
  EvalData (with DefectRegion), GOOD, the errors and
  ``hookimpl``; cheap to import (Detector and FitContext, which need torch, load on
  first use), so a plugin's registration costs no torch
- ``iadbench.images``: loading and validating images and masks
- ``iadbench.layouts``: MVTec-like and good/defect folder parsing
- ``iadbench.backbones``: offline pretrained feature extractors (the package, not its modules)
- ``iadbench.features``: the shared feature cache, map upsampling and smoothing,
  BackboneMixin (the package, not its modules)
- ``iadbench.deploy.graph``: traceable pieces of a detector's export graph (TrunkFeatures, PixelMaps)
- ``iadbench.progress``: a training progress bar
- ``iadbench.precision``: mixed-precision training on CPUs with bfloat16 units and on GPUs
- ``iadbench.devices``: device strings (auto, cpu, cuda, cuda:N), device names, peak GPU memory
- ``iadbench.memory``: a bounded heap for fits that fragment glibc's
- ``iadbench.seeding``: ``seed_everything``, for networks initialised from the global generators
- ``iadbench.metrics`` and the modules of its array functions, ``iadbench.metrics.image``,
  ``iadbench.metrics.pixel``, ``iadbench.metrics.aupro``, ``iadbench.metrics.classification``,
  ``iadbench.metrics.segf1``, ``iadbench.metrics.spro``, ``iadbench.metrics.aupimo``, ``iadbench.metrics.pgn_pbn``
  and ``iadbench.metrics.auroc_resampling`` (fast bootstrap resamples): for metric plugins
- ``iadbench.executors``: what an executor plugin receives and returns, and the local
  process executor to build on
- ``iadbench.testing``: ``check_detector``, the conformance kit for a plugin's own tests
- ``iadbench.cli`` (the package, not its modules): ``console`` to print to and
  ``group`` to add a command to a group, for ``register_commands``

Anything else is internal and may change.

A spec's callables (``DetectorSpec.factory``, ``MetricSpec.fn``, ...) may be given as
``"package.module:attr"`` references, imported on first use: every ``adbench`` command
runs the register hooks, so a plugin that registers by reference keeps ``--help`` and
``list`` from importing torch (the built-in plugins do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iadbench.errors import DatasetError, ImageError, InputError, UndefinedMetric
from iadbench.hookspecs import hookimpl
from iadbench.types import (
    GOOD,
    Dataset,
    DatasetSpec,
    DefectRegion,
    DetectorSpec,
    Download,
    EvalData,
    ExecutorOptions,
    ExecutorSpec,
    MetricSpec,
    Prediction,
    RegionMask,
    Sample,
    Split,
)

if TYPE_CHECKING:  # pragma: no cover
    from iadbench.detector import Detector, FitContext, LabelledDefects

#: Names imported on first use (PEP 562): iadbench.detector imports torch, and a plugin's
#: registration (``from iadbench.api import DetectorSpec, hookimpl``) must not.
_LAZY = {"Detector": "iadbench.detector", "FitContext": "iadbench.detector", "LabelledDefects": "iadbench.detector"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later reads skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# What a plugin may import; pyproject.toml's import contract forbids every other core module.
PUBLIC_MODULES = (
    "iadbench.api",
    "iadbench.images",
    "iadbench.layouts",
    "iadbench.backbones",
    "iadbench.features",
    "iadbench.deploy.graph",
    "iadbench.progress",
    "iadbench.precision",
    "iadbench.devices",
    "iadbench.memory",
    "iadbench.seeding",
    "iadbench.metrics",
    "iadbench.metrics.image",
    "iadbench.metrics.pixel",
    "iadbench.metrics.aupro",
    "iadbench.metrics.classification",
    "iadbench.metrics.auroc_resampling",
    "iadbench.metrics.segf1",
    "iadbench.metrics.spro",
    "iadbench.metrics.aupimo",
    "iadbench.metrics.pgn_pbn",
    "iadbench.executors",
    "iadbench.testing",
    "iadbench.cli",
)

__all__ = [
    "GOOD",
    "PUBLIC_MODULES",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "DefectRegion",
    "Detector",
    "DetectorSpec",
    "Download",
    "EvalData",
    "ExecutorOptions",
    "ExecutorSpec",
    "FitContext",
    "ImageError",
    "InputError",
    "LabelledDefects",
    "MetricSpec",
    "Prediction",
    "RegionMask",
    "Sample",
    "Split",
    "UndefinedMetric",
    "hookimpl",
]
