"""The public API for plugin authors: import from here and nothing else of iadbench's
internals, so the core can change without breaking plugins."""

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
