"""The public API for plugin authors: the types and markers a plugin needs.

Besides this module, these utility modules are public and kept stable for plugins:
``iadbench.images`` (loading and validating images and masks), ``iadbench.layouts``
(MVTec-like and good/defect folder parsing), ``iadbench.backbones`` (offline
pretrained feature extractors), ``iadbench.features`` (the shared feature cache,
map upsampling and smoothing), ``iadbench.progress`` (a training progress bar), ``iadbench.precision`` (mixed-precision training on CPUs with bfloat16 units), ``iadbench.memory`` (a bounded heap for fits that
fragment glibc's) and ``iadbench.cli.group`` (adding to a command group). Anything
else is internal and may change."""

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

__all__ = [
    "GOOD",
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
