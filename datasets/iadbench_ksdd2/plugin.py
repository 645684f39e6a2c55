"""KolektorSDD2: train/ and test/ folders of images, each with a ``<stem>_GT.png`` mask
(train/10000.png + train/10000_GT.png).

An image is defective when its GT mask has any positive pixel. The unsupervised
protocol trains on the good training images only; how many defective training images
it left out is recorded in Split.notes["left_out_defective_train"]. They are offered as
``Split.train_defective`` for mixed supervision (``--defects-in-train K`` takes K of
them; the test set stays whole). All images form one category, ``ksdd2``.
"""

from __future__ import annotations

import re
from pathlib import Path

from iadbench.api import DatasetError, DatasetSpec, Download, Sample, Split, hookimpl
from iadbench.layouts import abspath, list_images

NAME = "ksdd2"
CATEGORY = "ksdd2"
GT_SUFFIX = "_GT"
DEFECT = "defect"  # KSDD2 names no defect types


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


class KSDD2:
    def __init__(self, path: Path | None):
        if path is None:
            raise DatasetError(
                "ksdd2: no data folder; pass --data-root DIR (holding ksdd2/) or an explicit path, "
                "or set IADBENCH_DATA_ROOT"
            )
        self.root = abspath(path)
        if not self.root.is_dir():
            raise DatasetError("KSDD2 folder not found", self.root)
        for part in ("train", "test"):
            if not (self.root / part).is_dir():
                raise DatasetError(f"no {part}/ folder (KSDD2 holds train/ and test/ with <id>_GT.png masks)", self.root)
        self._cache: Split | None = None

    def categories(self) -> list[str]:
        return [CATEGORY]

    def _part(self, part: str) -> tuple[list[Sample], list[Sample]]:
        """(good, defective) samples of train/ or test/."""
        from iadbench.images import check_mask_size, decode_mask

        folder = self.root / part
        files = list_images(folder)
        masks = {p.stem[: -len(GT_SUFFIX)]: p for p in files if p.stem.endswith(GT_SUFFIX)}
        images = [p for p in files if not p.stem.endswith(GT_SUFFIX)]
        if not images:
            raise DatasetError(f"empty {part} split: only masks, no images", folder)
        good, bad = [], []
        for img in images:
            mask = masks.pop(img.stem, None)
            if mask is None:
                raise DatasetError(f"image without its mask (expected {img.stem}{GT_SUFFIX}.png)", img)
            check_mask_size(img, mask)
            # The label lives in the mask: any positive pixel makes the image defective.
            if decode_mask(mask).any():
                bad.append(Sample(path=img, label=1, defect_type=DEFECT, mask_path=mask))
            else:
                good.append(Sample(path=img))
        if masks:
            orphan = next(iter(masks.values()))
            raise DatasetError(f"mask without its image (no {orphan.stem[: -len(GT_SUFFIX)]}.png)", orphan)
        return good, bad

    def split(self, category: str) -> Split:
        if category != CATEGORY:
            raise DatasetError(f"no category '{category}' (KSDD2 has one: {CATEGORY})", self.root)
        if self._cache is None:
            train_good, train_bad = self._part("train")
            test_good, test_bad = self._part("test")
            if not train_good:
                raise DatasetError("empty train split: every training image is defective", self.root / "train")
            # Good test images keep no mask path: their GT mask is empty.
            self._cache = Split(
                dataset=NAME,
                category=CATEGORY,
                train=train_good,
                test=sorted(test_good + test_bad, key=lambda s: _natural(s.path)),
                notes={"left_out_defective_train": len(train_bad), "protocol": "unsupervised (good training images only)"},
                train_defective=sorted(train_bad, key=lambda s: _natural(s.path)),
            )
        s = self._cache
        return Split(dataset=s.dataset, category=s.category, train=list(s.train), test=list(s.test), notes=dict(s.notes),
                     train_defective=list(s.train_defective))


def holds_ksdd2(path: Path) -> bool:
    """A KSDD2 root: train/ and test/ of images with <id>_GT masks beside them (and no
    train/good/, which would make it MVTec-like)."""
    train, test = path / "train", path / "test"
    if not (train.is_dir() and test.is_dir()) or (train / "good").is_dir():
        return False
    return any(p.stem.endswith(GT_SUFFIX) for p in train.iterdir())


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name=NAME,
            factory=KSDD2,
            subdir="ksdd2",
            description="KolektorSDD2 (train/test with <id>_GT.png masks; unsupervised: good training images only)",
            version="1",
            detect=holds_ksdd2,
            downloads=(
                Download(
                    url="https://www.vicos.si/resources/kolektorsdd2/",
                    filename="KolektorSDD2.zip",
                    licence="CC BY-NC-SA 4.0 (non-commercial use)",
                    note="download KolektorSDD2.zip from the ViCoS page and put it in DIR; "
                    "no checksum is published, so it is used unverified",
                    manual=True,
                ),
            ),
        )
    )
