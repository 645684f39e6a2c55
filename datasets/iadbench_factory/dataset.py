"""The factory dataset itself: generated into the cache on first use of a category
(iadbench_factory.store), read back as MVTec layout. Imported on first use: drawing
needs SciPy, which listing datasets must not load."""

from __future__ import annotations

import json
from pathlib import Path

from iadbench.api import DatasetError, Split
from iadbench.layouts import parse_mvtec
from iadbench_factory.generate import CATEGORIES, GENERATOR_VERSION
from iadbench_factory.plugin import _SIZES, NAME
from iadbench_factory.sizes import Sizes
from iadbench_factory.store import MANIFEST, default_location, ensure_category, write_dataset


class FactoryDataset:
    def __init__(
        self,
        path: Path | None = None,
        seed: int = 0,
        image_size: int = _SIZES.image_size,
        n_train: int = _SIZES.n_train,
        n_test_good: int = _SIZES.n_test_good,
        n_per_defect: int = _SIZES.n_per_defect,
    ):
        self.seed = int(seed)
        self.sizes = Sizes(int(image_size), int(n_train), int(n_test_good), int(n_per_defect))
        self.sizes.validate()
        self.root = Path(path) if path is not None else default_location(self.seed, self.sizes)

    def categories(self) -> list[str]:
        return list(CATEGORIES)

    def split(self, category: str) -> Split:
        if category not in CATEGORIES:
            raise DatasetError(f"factory has no category '{category}' (known: {', '.join(CATEGORIES)})")
        folder = ensure_category(self.root, category, self.seed, self.sizes)
        try:
            made = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"unreadable factory manifest ({exc})", folder / MANIFEST) from None
        asked = {"generator_version": GENERATOR_VERSION, "seed": self.seed, "sizes": self.sizes.__dict__}
        for key, value in asked.items():
            if made.get(key) != value:
                raise DatasetError(
                    f"this folder was generated with {key}={made.get(key)!r}, not {value!r}; "
                    "use another folder or delete this one",
                    folder,
                )
        split = parse_mvtec(folder, dataset=NAME, category=category, masks_required=True)
        split.notes.update({"generator_version": GENERATOR_VERSION, "seed": self.seed, "data": str(folder)})
        return split


def write_command(
    out: Path,
    seed: int = 0,
    category: list[str] | None = None,
    image_size: int = _SIZES.image_size,
    n_train: int = _SIZES.n_train,
    n_test_good: int = _SIZES.n_test_good,
    n_per_defect: int = _SIZES.n_per_defect,
) -> None:
    import time

    from iadbench.cli import console

    start = time.perf_counter()
    folders = write_dataset(out, seed, Sizes(image_size, n_train, n_test_good, n_per_defect), category)
    n = len(folders) * (n_train + n_test_good + n_per_defect * 4)
    console.print(
        f"wrote {len(folders)} categories ({n} images) to {out} in MVTec layout "
        f"in {time.perf_counter() - start:.1f}s (generator {GENERATOR_VERSION}, seed {seed})"
    )
