"""MPDD (Metal Parts Defect Detection): 6 categories in the MVTec AD layout,
<cat>/train/good, <cat>/test/<defect>, <cat>/ground_truth/<defect>/<id>_mask.png.

The path is the MPDD root (the folder holding bracket_black/, connector/, ...) or one
category folder. Being MVTec-like, an MPDD folder is known by its category names, so
that an MVTec AD folder or a user's own tree is not read as MPDD.
"""

from __future__ import annotations

from pathlib import Path

from iadbench.api import DatasetError, DatasetSpec, Download, Split, hookimpl
from iadbench.layouts import MVTEC, find_categories, holds_named_categories, parse_mvtec

NAME = "mpdd"
CATEGORIES = ("bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes")


class MPDD:
    def __init__(self, path: Path | None):
        if path is None:
            raise DatasetError(
                "mpdd: no data folder; pass --data-root DIR (holding mpdd/) or an explicit path, "
                "or set IADBENCH_DATA_ROOT"
            )
        self.root = Path(path)
        found = find_categories(self.root, (MVTEC,))
        self._found = {name: folder for name, (folder, _) in found.items() if name in CATEGORIES}
        if not self._found:
            raise DatasetError(
                f"no MPDD category here (expected one of {', '.join(CATEGORIES)} "
                "with train/good and test/)",
                self.root,
            )

    def categories(self) -> list[str]:
        return [c for c in CATEGORIES if c in self._found]

    def split(self, category: str) -> Split:
        if category not in self._found:
            raise DatasetError(f"no category '{category}' (found: {', '.join(self.categories())})", self.root)
        return parse_mvtec(self._found[category], dataset=NAME, category=category, masks_required=True)


def holds_mpdd(path: Path) -> bool:
    """An MPDD category, or a folder of MPDD categories only (by their names)."""
    return holds_named_categories(path, CATEGORIES)


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name=NAME,
            factory=MPDD,
            subdir="mpdd",
            description="MPDD (6 metal-part categories; MVTec AD layout with ground_truth masks)",
            version="1",
            detect=holds_mpdd,
            # the source and licence as anomalib 2.7 records them (anomalib.data.datamodules.image.mpdd)
            downloads=(
                Download(
                    url="https://vutbr-my.sharepoint.com/:f:/g/personal/xjezek16_vutbr_cz/"
                    "EhHS_ufVigxDo3MC6Lweau0BVMuoCmhMZj6ddamiQ7-FnA?e=oHKCxI",
                    licence="CC BY-NC-SA 4.0 (non-commercial use)",
                    note="a OneDrive folder: download its files and extract them into DIR/mpdd, so that it "
                    "holds bracket_black/, bracket_brown/, ... tubes/",
                    manual=True,
                ),
            ),
        )
    )
