"""MVTec AD: 15 categories, each train/good, test/<defect>, ground_truth/<defect>/*_mask.png.

The path is the MVTec AD root (the folder holding bottle/, cable/, ...) or one category
folder. Categories are whatever category folders are there, so a partial download
works; a defect image without its mask is an error.
"""

from __future__ import annotations

from pathlib import Path

from iadbench.api import DatasetError, DatasetSpec, Download, Split, hookimpl
from iadbench.layouts import MVTEC, find_categories, holds_named_categories, parse_mvtec

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
    """An MVTec AD category, or a folder of MVTec AD categories only (by their names): a
    user's own MVTec-like tree is the folder dataset's."""
    return holds_named_categories(path, CATEGORIES)


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
            # URL and SHA-256 as anomalib 2.7 records them (anomalib.data.datamodules.image.mvtecad)
            downloads=(
                Download(
                    url="https://www.mydrive.ch/shares/150996/b52ecdcbf521176e9db9c731f2304b27/"
                    "download/420938113-1629960298/mvtec_anomaly_detection.tar.xz",
                    sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
                    licence="CC BY-NC-SA 4.0 (non-commercial use)",
                    note="MVTec's terms: https://www.mvtec.com/company/research/datasets/mvtec-ad; if the link "
                    "stops working, get the archive there (a short form) and put it in DIR",
                ),
            ),
        )
    )
