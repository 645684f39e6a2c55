"""Registers one detector and one dataset through the public API only."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from iadbench.api import (
    DatasetError,
    DatasetSpec,
    Detector,
    DetectorSpec,
    FitContext,
    Prediction,
    Sample,
    Split,
    hookimpl,
)


class MedianDistance(Detector):
    """Distance of each pixel to the median good image. ``fit_sleep`` and ``crash``
    exist so the harness's tests can simulate slow and crashing detectors."""

    name = "example.median_distance"

    def __init__(self, input_size: int = 32, fit_sleep: float = 0.0, crash: str = ""):
        # The signature declares the params: the base records them as self.params.
        self.input_size = (input_size, input_size)
        self.fit_sleep, self.crash = fit_sleep, crash
        self.median: torch.Tensor | None = None

    def fit(self, images: np.ndarray, ctx: FitContext) -> None:
        if self.crash == "abort":
            os.abort()  # a native crash: the cell process dies without a result
        if self.crash == "raise" or (self.crash == "env" and os.environ.get("EXAMPLE_CRASH")):
            raise RuntimeError("example detector asked to fail")
        time.sleep(self.fit_sleep)
        self.median = torch.from_numpy(np.median(images.astype(np.float32), axis=0))

    def predict(self, images: np.ndarray) -> Prediction:
        diff = (torch.from_numpy(images.astype(np.float32)) - self.median).abs().mean(-1)
        return Prediction(diff.flatten(1).amax(1).numpy(), diff.numpy())

    def state_tensors(self):
        return {"median": self.median}

    def load_state_tensors(self, tensors):
        self.median = tensors["median"]


class Blobs:
    """Grey images; defects are bright square blobs with exact masks. Written on first
    use under the given path (a test's temporary folder)."""

    def __init__(self, path: Path | None, n_train: int = 12, n_test: int = 8):
        if path is None:
            raise DatasetError("example.blobs needs a path (--dataset-path example.blobs=DIR)")
        self.root = Path(path)
        self.n_train, self.n_test = n_train, n_test

    def categories(self) -> list[str]:
        return ["dark", "light"]

    def split(self, category: str) -> Split:
        if category not in self.categories():
            raise DatasetError(f"no category '{category}'", self.root)
        folder = self.root / category
        if not (folder / "done").exists():
            self._write(folder, 60 if category == "dark" else 170)
        train = [Sample(p) for p in sorted((folder / "train").glob("*.png"))]
        test = []
        for p in sorted((folder / "test").glob("*.png")):
            mask = folder / "masks" / p.name
            bad = mask.exists()
            test.append(Sample(p, int(bad), "blob" if bad else "good", mask if bad else None))
        return Split("example.blobs", category, train, test)

    def _write(self, folder: Path, level: int) -> None:
        # Written aside and renamed into place: two cells of a parallel run may both find
        # the category missing, and one must never read a file the other is still writing.
        self.root.mkdir(parents=True, exist_ok=True)
        final, folder = folder, Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=self.root))
        rng = np.random.default_rng(level)
        for sub in ("train", "test", "masks"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(self.n_train):
            img = np.clip(level + rng.normal(0, 8, (32, 32)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / "train" / f"{i:03d}.png")
        for i in range(self.n_test):
            img = np.clip(level + rng.normal(0, 8, (32, 32)), 0, 255).astype(np.uint8)
            if i % 2:
                mask = np.zeros((32, 32), np.uint8)
                y, x = rng.integers(4, 24, 2)
                mask[y : y + 6, x : x + 6] = 255
                img[mask > 0] = 255 - level  # far from the background either way
                Image.fromarray(mask).save(folder / "masks" / f"{i:03d}.png")
            Image.fromarray(img).save(folder / "test" / f"{i:03d}.png")
        (folder / "done").touch()
        try:
            folder.rename(final)
        except OSError:  # another process put the same images there first
            shutil.rmtree(folder)


@hookimpl
def register_detectors(register):
    register(
        DetectorSpec(
            name=MedianDistance.name,
            factory=MedianDistance,  # params: the constructor's signature
            description="Example: distance to the median good image",
            version="1",
        )
    )


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="example.blobs", factory=Blobs, params={"n_train": 12, "n_test": 8}, description="Example: bright blobs on grey"))
