"""The synthetic factory: the embedded default dataset, generated with no download.

Five categories -- three textures (fabric, metal, wood) and two objects (nut, bottle,
seen from above) -- each with good training images and a test split of good images
and four defect kinds with exact masks (see iadbench_factory.generate). Generated on
first use into the cache (see iadbench_factory.store), deterministic for a seed.
``adbench data factory --out DIR`` writes it in MVTec layout for other tools.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from iadbench.api import DatasetError, DatasetSpec, Split, hookimpl
from iadbench.layouts import parse_mvtec
from iadbench_factory.generate import CATEGORIES, GENERATOR_VERSION
from iadbench_factory.store import MANIFEST, Sizes, default_location, ensure_category, write_dataset

NAME = "factory"
_SIZES = Sizes()
DEFAULTS = {"seed": 0, **asdict(_SIZES)}


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


def _factory_command(
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


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name=NAME,
            factory=FactoryDataset,
            subdir=None,
            params=dict(DEFAULTS),
            description="Synthetic factory images (fabric, metal, wood, nut, bottle), generated offline; the default",
            version=GENERATOR_VERSION,
        )
    )


@hookimpl
def register_commands(app):
    import typer

    from iadbench.cli import group

    def factory(
        out: Path = typer.Option(..., "--out", help="Folder to write (must be new or empty)."),
        seed: int = typer.Option(0, help="Generator seed; the same seed gives the same bytes."),
        category: list[str] | None = typer.Option(None, "--category", "-c", help="Only these categories."),
        image_size: int = typer.Option(_SIZES.image_size, help="Image side in pixels."),
        n_train: int = typer.Option(_SIZES.n_train, help="Good training images per category."),
        n_test_good: int = typer.Option(_SIZES.n_test_good, help="Good test images per category."),
        n_per_defect: int = typer.Option(_SIZES.n_per_defect, help="Test images per defect kind."),
    ) -> None:
        """Write the synthetic factory dataset in MVTec AD layout."""
        _factory_command(out, seed, category, image_size, n_train, n_test_good, n_per_defect)

    group(app, "data").command("factory")(factory)
