"""BTAD (BeanTech Anomaly Detection): 3 categories, 01, 02 and 03, each with
<cat>/train/ok, <cat>/test/ok, <cat>/test/ko and <cat>/ground_truth/ko.

A mask has its image's stem (ground_truth/ko/0003.png for test/ko/0003.bmp); formats
differ per category (01: BMP images with PNG masks, 02: PNG, 03: BMP images and
masks), so images and masks are paired by stem whatever their format. The path is the
BTAD root or one category folder.
"""

from __future__ import annotations

from pathlib import Path

from iadbench.api import DatasetError, DatasetSpec, Download, Sample, Split, hookimpl
from iadbench.layouts import abspath, list_images, pair_masks, probe_all, subfolders, warn_one_class

NAME = "btad"
CATEGORIES = ("01", "02", "03")
GOOD_DIR, BAD_DIR = "ok", "ko"
DEFECT = "ko"  # BTAD names no defect types


def _is_category(folder: Path) -> bool:
    return (folder / "train" / GOOD_DIR).is_dir()


class BTAD:
    def __init__(self, path: Path | None):
        if path is None:
            raise DatasetError(
                "btad: no data folder; pass --data-root DIR (holding btad/) or an explicit path, "
                "or set IADBENCH_DATA_ROOT"
            )
        self.root = abspath(path)
        if not self.root.is_dir():
            raise DatasetError("BTAD folder not found", self.root)
        if _is_category(self.root):
            self._found = {self.root.name: self.root}
        else:
            self._found = {f.name: f for f in subfolders(self.root) if _is_category(f)}
        if not self._found:
            raise DatasetError("no BTAD category here (expected <category>/train/ok and <category>/test/)", self.root)

    def categories(self) -> list[str]:
        known = [c for c in CATEGORIES if c in self._found]
        return known + sorted(c for c in self._found if c not in CATEGORIES)

    def split(self, category: str) -> Split:
        if category not in self._found:
            raise DatasetError(f"no category '{category}' (found: {', '.join(self.categories())})", self.root)
        root = self._found[category]
        train = [Sample(path=p) for p in list_images(root / "train" / GOOD_DIR)]
        test_dir = root / "test"
        if not test_dir.is_dir():
            raise DatasetError("no test/ folder (a BTAD category holds train/ok, test/ok, test/ko, ground_truth/ko)", root)
        test = [Sample(path=p) for p in list_images(test_dir / GOOD_DIR)]
        bad_images = list_images(test_dir / BAD_DIR)
        test += pair_masks(bad_images, root / "ground_truth" / BAD_DIR, DEFECT)
        probe_all(s.path for s in train + test)
        notes: dict = {}
        if category not in CATEGORIES:
            notes["warnings"] = [f"'{category}' is not a BTAD category"]
        return warn_one_class(Split(dataset=NAME, category=category, train=train, test=test, notes=notes))


def holds_btad(path: Path) -> bool:
    """A BTAD category (train/ok/), or a folder holding one."""
    if not path.is_dir():
        return False
    if _is_category(path):
        return True
    try:
        return any(_is_category(f) for f in path.iterdir() if f.is_dir())
    except OSError:
        return False


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name=NAME,
            factory=BTAD,
            subdir="btad",
            description="BTAD (3 categories; train/ok, test/{ok,ko}, ground_truth/ko masks, BMP or PNG)",
            version="1",
            detect=holds_btad,
            # URL and SHA-256 as anomalib 2.7 records them (anomalib.data.datamodules.image.btech)
            downloads=(
                Download(
                    url="https://avires.dimi.uniud.it/papers/btad/btad.zip",
                    sha256="461c9387e515bfed41ecaae07c50cf6b10def647b36c9e31d239ab2736b10d2a",
                    licence="CC BY-NC-SA 4.0 (non-commercial use)",
                    strip="BTech_Dataset_transformed",  # the zip's one top folder
                ),
            ),
        )
    )
