"""KolektorSDD (v1): 50 folders kos01 ... kos50, each holding about 8 images of one
commutator's surface, PartN.jpg, with PartN_label.bmp beside each (any non-zero pixel
is defect; 52 of the 399 images are defective).

KSDD has no official train/test split. Following Tabernik et al. (2019), it is
cross-validated in 3 folds by kos folder, so images of one physical part never sit on
both sides: the folders are ordered by sha256("<seed>/<folder>") and dealt round-robin
into ``folds`` folds. Each fold is a category (fold1, fold2, fold3): its test split is
every image of its folders; training gets the good images of the other folders, and
their defective images go to ``Split.train_defective`` (for mixed supervision only).
The fold lists of the paper's own code are not reproduced; Split.notes records the
folders of each test fold.
"""

from __future__ import annotations

import re
from pathlib import Path

from iadbench.api import DatasetError, DatasetSpec, Download, Sample, Split, hookimpl
from iadbench.layouts import abspath, holdout_order, list_images, subfolders, warn_one_class

NAME = "ksdd"
FOLDER = re.compile(r"kos\d+")
LABEL_SUFFIX = "_label"
DEFECT = "defect"  # KSDD names no defect types


def _fold_folders(root: Path) -> list[Path]:
    return [f for f in subfolders(root) if FOLDER.fullmatch(f.name)]


class KSDD:
    def __init__(self, path: Path | None, folds: int = 3, seed: int = 0):
        if path is None:
            raise DatasetError(
                "ksdd: no data folder; pass --data-root DIR (holding ksdd/) or an explicit path, "
                "or set IADBENCH_DATA_ROOT"
            )
        self.root = abspath(path)
        if not self.root.is_dir():
            raise DatasetError("KolektorSDD folder not found", self.root)
        self.folds, self.seed = int(folds), int(seed)
        self._parts = {f.name: f for f in _fold_folders(self.root)}
        if not self._parts:
            raise DatasetError("no kos01 ... kos50 folders here (KolektorSDD holds kosNN/PartN.jpg + PartN_label.bmp)", self.root)
        if not 2 <= self.folds <= len(self._parts):
            raise DatasetError(f"folds must lie between 2 and the number of kos folders ({len(self._parts)}), got {folds}", self.root)
        order = holdout_order(self._parts, self.seed)
        self._fold_of = {name: i % self.folds for i, name in enumerate(order)}
        self._samples: dict[str, list[Sample]] | None = None

    def categories(self) -> list[str]:
        return [f"fold{k + 1}" for k in range(self.folds)]

    def _read_folder(self, folder: Path) -> list[Sample]:
        from iadbench.images import check_mask_size, decode_mask

        files = list_images(folder)
        masks = {p.stem[: -len(LABEL_SUFFIX)]: p for p in files if p.stem.endswith(LABEL_SUFFIX)}
        images = [p for p in files if not p.stem.endswith(LABEL_SUFFIX)]
        samples = []
        for img in images:
            mask = masks.pop(img.stem, None)
            if mask is None:
                raise DatasetError(f"image without its mask (expected {img.stem}{LABEL_SUFFIX}.bmp)", img)
            check_mask_size(img, mask)
            # The label lives in the mask: any non-zero pixel makes the image defective.
            if decode_mask(mask).any():
                samples.append(Sample(path=img, label=1, defect_type=DEFECT, mask_path=mask))
            else:
                samples.append(Sample(path=img))
        if masks:
            orphan = next(iter(masks.values()))
            raise DatasetError(f"mask without its image (no {orphan.stem[: -len(LABEL_SUFFIX)]}.jpg)", orphan)
        if not images:
            raise DatasetError("no images, only masks", folder)
        return samples

    def split(self, category: str) -> Split:
        if category not in self.categories():
            raise DatasetError(f"no category '{category}' (KSDD has {', '.join(self.categories())})", self.root)
        if self._samples is None:
            self._samples = {name: self._read_folder(folder) for name, folder in self._parts.items()}
        fold = int(category.removeprefix("fold")) - 1
        test_folders = [n for n in self._parts if self._fold_of[n] == fold]
        train, train_defective, test = [], [], []
        for name, samples in self._samples.items():
            if name in test_folders:
                test += samples
                continue
            for s in samples:
                (train_defective if s.is_anomalous else train).append(s)
        notes = {
            "protocol": f"{self.folds}-fold cross-validation by kos folder (Tabernik et al. 2019); folders "
            f"dealt round-robin in sha256(seed/folder) order; good images of the other folds train",
            "seed": self.seed,
            "test_folders": test_folders,
            "train_defective": len(train_defective),
        }
        if not train:
            raise DatasetError(f"empty train split: no good images outside {category}", self.root)
        return warn_one_class(
            Split(dataset=NAME, category=category, train=train, test=test, notes=notes, train_defective=train_defective)
        )


def holds_ksdd(path: Path) -> bool:
    """A KolektorSDD root: kosNN folders holding PartN_label masks."""
    if not path.is_dir():
        return False
    try:
        folders = [f for f in path.iterdir() if f.is_dir() and FOLDER.fullmatch(f.name)]
        return any(p.stem.endswith(LABEL_SUFFIX) for f in folders[:3] for p in f.iterdir())
    except OSError:
        return False


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name=NAME,
            factory=KSDD,
            subdir="ksdd",
            params={"folds": 3, "seed": 0},
            description="KolektorSDD v1 (kosNN/PartN.jpg + PartN_label.bmp; 3-fold cross-validation by folder, fold1-fold3)",
            version="1",
            detect=holds_ksdd,
            # URL and SHA-256 as anomalib 2.7 records them (anomalib.data.datamodules.image.kolektor)
            downloads=(
                Download(
                    url="https://go.vicos.si/kolektorsdd",
                    filename="KolektorSDD.zip",
                    sha256="65dc621693418585de9c4467d1340ea7958a6181816f0dc2883a1e8b61f9d4dc",
                    licence="CC BY-NC-SA 4.0 (non-commercial use)",
                ),
            ),
        )
    )
