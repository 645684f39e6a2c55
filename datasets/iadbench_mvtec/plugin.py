"""MVTec AD: 15 categories, each train/good, test/<defect>, ground_truth/<defect>/*_mask.png.

The path is the MVTec AD root (the folder holding bottle/, cable/, ...) or one category
folder. Categories are whatever category folders are there, so a partial download
works; a defect image without its mask is an error.
"""

from __future__ import annotations

from pathlib import Path

from iadbench.api import DatasetError, DatasetSpec, Split, hookimpl
from iadbench.layouts import MVTEC, find_categories, holds_layout, parse_mvtec

NAME = "mvtec"
CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip


class MVTecAD:
    def __init__(self, path: Path | None):
        if path is None:
            raise DatasetError(
                "mvtec: no data folder; pass --data-root DIR (holding mvtec_ad/) or an explicit path, "
                "or set IADBENCH_DATA_ROOT"
            )
        self.root = Path(path)
        self._found = find_categories(self.root, (MVTEC,))
        if not self._found:
            raise DatasetError(
                "no MVTec AD category here (expected <category>/train/good and <category>/test)",
                self.root,
            )

    def categories(self) -> list[str]:
        known = [c for c in CATEGORIES if c in self._found]
        return known + sorted(c for c in self._found if c not in CATEGORIES)

    def split(self, category: str) -> Split:
        if category not in self._found:
            raise DatasetError(
                f"no category '{category}' (found: {', '.join(self.categories())})", self.root
            )
        folder, _ = self._found[category]
        split = parse_mvtec(folder, dataset=NAME, category=category, masks_required=True)
        if category not in CATEGORIES:
            split.notes.setdefault("warnings", []).append(f"'{category}' is not an MVTec AD category")
        return split


def holds_mvtec(path: Path) -> bool:
    """An MVTec-like category, or a folder of them."""
    return holds_layout(path, (MVTEC,))


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name=NAME,
            factory=MVTecAD,
            subdir="mvtec_ad",
            description="MVTec AD (15 categories; train/good, test/<defect>, ground_truth masks)",
            version="1",
            detect=holds_mvtec,
        )
    )
