"""The factory's version and sizes, importable without drawing anything (no SciPy):
what the plugin needs to register the dataset and its ``data factory`` command."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from iadbench.api import DatasetError

#: Bumped when the same seed and sizes would draw other images.
GENERATOR_VERSION = "2"


@dataclass(frozen=True)
class Sizes:
    """The default is sized so that every available detector runs on every category
    within the 15-minute budget of `make run` on 2 cores. The test set (40 images)
    is larger than the minimum because its size sets how finely AUROC can separate
    detectors; it costs predict time in every cell, not fit time."""

    image_size: int = 256
    n_train: int = 32
    n_test_good: int = 16
    n_per_defect: int = 6  # x 4 defect kinds: 24 defective test images

    def validate(self) -> None:
        if not 64 <= self.image_size <= 1024:
            raise DatasetError(f"factory: image_size must lie in 64..1024, got {self.image_size}")
        if self.n_train < 2 or self.n_test_good < 1 or self.n_per_defect < 1:
            raise DatasetError("factory: need n_train >= 2, n_test_good >= 1 and n_per_defect >= 1")

    def tag(self) -> str:
        """A short hash of the sizes: each size gets its own folder, so changing the
        defaults never meets an old cache."""
        return "-" + hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
