"""The values that flow along the data path: samples, splits, predictions and specs.

Dataset plugin -> Split -> images -> Detector.fit/predict -> Prediction -> metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from iadbench.detector import Detector

GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One image of a split. ``label`` is 0 for good, 1 for defective."""

    path: Path
    label: int = 0
    defect_type: str = GOOD
    mask_path: Path | None = None

    @property
    def is_anomalous(self) -> bool:
        return self.label == 1


@dataclass
class Split:
    """A category's data: good training images and labelled test images.

    ``notes`` carries facts a loader wants recorded with the results, e.g. how many
    defective training images an unsupervised protocol left out.
    """

    dataset: str
    category: str
    train: list[Sample]
    test: list[Sample]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def has_masks(self) -> bool:
        """True when every defective test image has a mask (pixel metrics defined)."""
        bad = [s for s in self.test if s.is_anomalous]
        return bool(bad) and all(s.mask_path is not None for s in bad)


class Dataset(Protocol):
    """What a dataset plugin's factory returns."""

    def categories(self) -> list[str]:
        """Every category this dataset holds, in a stable order."""

    def split(self, category: str) -> Split:
        """Load (and validate) one category. Raises DatasetError on bad data."""


@dataclass
class Prediction:
    """Raw detector outputs: one score per image, one map per image (input size)."""

    scores: np.ndarray  # (N,) float, higher = more anomalous
    maps: np.ndarray  # (N, H, W) float32, higher = more anomalous

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.maps = np.asarray(self.maps, dtype=np.float32)
        if self.maps.ndim != 3 or self.maps.shape[0] != self.scores.shape[0]:
            raise ValueError(
                f"Prediction needs scores (N,) and maps (N,H,W); got {self.scores.shape} "
                f"and {self.maps.shape}"
            )


@dataclass
class EvalData:
    """Everything a metric function may look at, at the detector's input size.

    ``threshold`` was fixed on good training images' calibration scores, never on the
    test set; ``calibration_scores`` are those scores (each image scored by a model
    that did not fit it), for metrics that fix thresholds of their own.
    ``masks`` is None when the dataset has no pixel ground truth.
    """

    labels: np.ndarray  # (N,) int 0/1
    scores: np.ndarray  # (N,) float
    maps: np.ndarray  # (N, H, W) float32
    masks: np.ndarray | None  # (N, H, W) bool
    threshold: float
    defect_types: list[str]
    calibration_scores: np.ndarray | None = None


@dataclass
class DetectorSpec:
    """A detector a plugin offers.

    ``factory(**params)`` builds an unfitted Detector; ``params`` are its defaults and
    every key a user may override. An unavailable detector stays listed, with why;
    it runs only when named with parameters (e.g. a local weights file) that may
    make it available.
    """

    name: str
    factory: Callable[..., Detector]
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    version: str = "0"
    available: bool = True
    unavailable_reason: str | None = None
    tags: tuple[str, ...] = ()
    # Heavy modules the cell processes import; the local executor imports them once
    # in its forkserver so each cell does not pay for them again.
    preload: tuple[str, ...] = ()
    # The training length the method was published with, for detectors trained by
    # gradient steps: {"param": "max_epochs", "value": 100, "unit": "epochs" | "steps",
    # "source": "where the number comes from"}. Each result records it next to the
    # length actually used, so a leaderboard can flag runs far shorter than the paper's.
    published_training: dict[str, Any] | None = None
    plugin: str = ""  # filled in by the registry


@dataclass
class DatasetSpec:
    """A dataset a plugin offers.

    ``factory(path, **params)`` returns a Dataset. ``path`` is the explicit path a user
    gave, else ``<data-root>/<subdir>``, else None (the plugin decides: the synthetic
    factory generates into a cache, a public benchmark raises DatasetError).
    """

    name: str
    factory: Callable[..., Dataset]
    subdir: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    version: str = "0"
    plugin: str = ""


@dataclass
class MetricSpec:
    """A metric the harness computes from EvalData. ``fn`` may raise UndefinedMetric."""

    name: str
    fn: Callable[[EvalData], float]
    higher_is_better: bool = True
    level: str = "image"  # "image" or "pixel"
    description: str = ""
    headline: bool = False  # shown as its own leaderboard table
    plugin: str = ""
