"""A user's own factory images, in either of two layouts (see iadbench.layouts):

- MVTec-like: train/good, test/good, test/<defect>, optional ground_truth/<defect>/;
- good/defect: good/ plus one or more defect folders (scratch/, dent/ or defect/), with
  optional masks in ground_truth/<defect>/ (or masks/<defect>/) named <stem>_mask.png
  or <stem>.png. Having no split of its own, it holds out ``test_fraction`` of the good
  images for test by a seeded, deterministic rule (``seed``).

The path is one such folder (its name is the category) or a folder of them. Masks are
optional, but once a dataset has a mask folder every defect image needs its mask.
"""

from __future__ import annotations

from pathlib import Path

from iadbench.api import DatasetError, DatasetSpec, Split, hookimpl
from iadbench.layouts import GOOD_DEFECT, MVTEC, find_categories, holds_layout, parse_good_defect, parse_mvtec

NAME = "folder"


class FolderDataset:
    def __init__(self, path: Path | None, test_fraction: float = 0.2, seed: int = 0, name: str = NAME):
        if path is None:
            raise DatasetError(
                "the folder dataset needs a path: a folder with train/ and test/ (MVTec-like) "
                "or good/ plus defect folders"
            )
        self.root = Path(path)
        self.name = name
        self.test_fraction = float(test_fraction)
        self.seed = int(seed)
        self._found = find_categories(self.root, (MVTEC, GOOD_DEFECT))
        if not self._found:
            raise DatasetError(
                "no dataset found: expected train/ + test/ (MVTec-like) or good/ + defect "
                "folders, here or in its sub-folders",
                self.root,
            )

    def categories(self) -> list[str]:
        return list(self._found)

    def layout(self, category: str) -> str:
        return self._found[category][1]

    def split(self, category: str) -> Split:
        if category not in self._found:
            raise DatasetError(
                f"no category '{category}' (found: {', '.join(self.categories())})", self.root
            )
        folder, layout = self._found[category]
        if layout == MVTEC:
            return parse_mvtec(
                folder, dataset=self.name, category=category, masks_required=False, require_test_good=False
            )
        return parse_good_defect(
            folder, dataset=self.name, category=category, test_fraction=self.test_fraction, seed=self.seed
        )


def holds_folder(path: Path) -> bool:
    """An MVTec-like or good/defect category, or a folder of them."""
    return holds_layout(path, (MVTEC, GOOD_DEFECT))


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name=NAME,
            factory=FolderDataset,
            subdir=None,
            params={"test_fraction": 0.2, "seed": 0},
            description="Your own images: an MVTec-like tree or good/ + defect folders (masks optional)",
            version="1",
            detect=holds_folder,
        )
    )
