"""The public API for plugin authors: the types, markers and errors a plugin needs.

A plugin imports from the modules in ``PUBLIC_MODULES`` and from nothing else in
``iadbench``; ``lint-imports`` holds the built-in plugins to that (the contracts are in
pyproject.toml). Public, and kept stable for plugins:

- ``iadbench.api`` (this module): Detector, FitContext, the spec types, Sample, Split,
  Prediction, EvalData, GOOD, the errors and ``hookimpl``
- ``iadbench.images``: loading and validating images and masks
- ``iadbench.layouts``: MVTec-like and good/defect folder parsing
- ``iadbench.backbones``: offline pretrained feature extractors (the package, not its modules)
- ``iadbench.features``: the shared feature cache, map upsampling and smoothing,
  BackboneMixin (the package, not its modules)
- ``iadbench.deploy.graph``: traceable pieces of a detector's export graph (TrunkFeatures, PixelMaps)
- ``iadbench.progress``: a training progress bar
- ``iadbench.precision``: mixed-precision training on CPUs with bfloat16 units
- ``iadbench.memory``: a bounded heap for fits that fragment glibc's
- ``iadbench.seeding``: ``seed_everything``, for networks initialised from the global generators
- ``iadbench.metrics`` and the modules of its array functions, ``iadbench.metrics.image``,
  ``iadbench.metrics.pixel``, ``iadbench.metrics.aupro``, ``iadbench.metrics.classification``
  and ``iadbench.metrics.auroc_resampling`` (fast bootstrap resamples): for metric plugins
- ``iadbench.executors``: what an executor plugin receives and returns, and the local
  process executor to build on
- ``iadbench.testing``: ``check_detector``, the conformance kit for a plugin's own tests
- ``iadbench.cli`` (the package, not its modules): ``console`` to print to and
  ``group`` to add a command to a group, for ``register_commands``

Anything else is internal and may change.
"""

from iadbench.detector import Detector, FitContext
from iadbench.errors import DatasetError, ImageError, InputError, UndefinedMetric
from iadbench.hookspecs import hookimpl
from iadbench.types import (
    GOOD,
    Dataset,
    DatasetSpec,
    DetectorSpec,
    EvalData,
    MetricSpec,
    Prediction,
    Sample,
    Split,
)

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
    "iadbench.memory",
    "iadbench.seeding",
    "iadbench.metrics",
    "iadbench.metrics.image",
    "iadbench.metrics.pixel",
    "iadbench.metrics.aupro",
    "iadbench.metrics.classification",
    "iadbench.metrics.auroc_resampling",
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
    "Detector",
    "DetectorSpec",
    "EvalData",
    "FitContext",
    "ImageError",
    "InputError",
    "MetricSpec",
    "Prediction",
    "Sample",
    "Split",
    "UndefinedMetric",
    "hookimpl",
]
