"""The synthetic factory: the embedded default dataset, generated with no download.

Five categories -- three textures (fabric, metal, wood) and two objects (nut, bottle,
seen from above) -- each with good training images and a test split of good images
and four defect kinds with exact masks (see iadbench_factory.generate). Generated on
first use into the cache (see iadbench_factory.store), deterministic for a seed.
``adbench data factory --out DIR`` writes it in MVTec layout for other tools.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from iadbench.api import DatasetSpec, hookimpl
from iadbench_factory.sizes import GENERATOR_VERSION, Sizes

NAME = "factory"
_SIZES = Sizes()
DEFAULTS = {"seed": 0, **asdict(_SIZES)}


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name=NAME,
            factory="iadbench_factory.dataset:FactoryDataset",  # imported on first use
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
        from iadbench_factory.dataset import write_command

        write_command(out, seed, category, image_size, n_train, n_test_good, n_per_defect)

    group(app, "data").command("factory")(factory)
