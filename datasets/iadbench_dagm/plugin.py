"""DAGM 2007: 10 synthetic texture classes, Class1 ... Class10, each with Train/ and
Test/ folders of PNG images and a Label/ folder holding Labels.txt and the masks.

Labels.txt has a header line, then one line per image: id, defect flag (0 or 1), image
file, 0, mask file (0 for a good image), e.g. ``12 1 0012.PNG 0 0012_label.PNG``. The
split is DAGM's own: good Train images train, defective Train images go to
``Split.train_defective`` (mixed supervision only), Test images are scored. The masks
are weak: an ellipse drawn around each defect, not its outline, so pixel metrics are
coarse; Split.notes["mask_quality"] says so in every record. The categories are the
classes present.
"""

from __future__ import annotations

import re
from pathlib import Path

from iadbench.api import DatasetError, DatasetSpec, Download, Sample, Split, hookimpl
from iadbench.layouts import abspath, holds_category, is_image_file, probe_all, subfolders, visible_entries, warn_one_class

NAME = "dagm"
CLASS = re.compile(r"Class(\d+)")
PARTS = ("Train", "Test")
DEFECT = "defect"  # DAGM names no defect types
MASK_QUALITY = "weak: ellipses drawn around each defect, not its outline"


def _is_class(folder: Path) -> bool:
    return bool(CLASS.fullmatch(folder.name)) and any((folder / p).is_dir() for p in PARTS)


def _labels(folder: Path) -> list[tuple[int, int, str, str]]:
    """(line number, flag, image file, mask file) for each image line of Label/Labels.txt."""
    path = folder / "Label" / "Labels.txt"
    if not path.is_file():
        raise DatasetError("labels file not found (DAGM keeps Label/Labels.txt in Train/ and Test/)", path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not a text file ({exc.reason})", path) from None
    rows = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        well_formed = len(fields) == 5 and fields[1] in ("0", "1")
        if not fields or (number == 1 and not well_formed):  # blank line, or the header ("1" in the release)
            continue
        if not well_formed:
            raise DatasetError(
                f"line {number}: expected 5 columns 'id flag image 0 mask' with flag 0 or 1, got '{line.strip()}'", path
            )
        rows.append((number, int(fields[1]), fields[2], fields[4]))
    if not rows:
        raise DatasetError("labels file lists no images", path)
    return rows


def _read_part(folder: Path) -> tuple[list[Sample], list[Sample], int]:
    """(good, defective, images not in Labels.txt) of one Train/ or Test/ folder."""
    from iadbench.images import check_mask_size

    labels_file = folder / "Label" / "Labels.txt"
    good, bad, listed = [], [], set()
    for number, flag, image_name, mask_name in _labels(folder):
        image = folder / image_name
        if not image.is_file():
            raise DatasetError(f"image listed on line {number} of {labels_file} not found", image)
        listed.add(image_name)
        if flag == 0:
            good.append(Sample(path=image))
            continue
        if mask_name == "0":
            raise DatasetError(f"line {number}: defective image without a mask file", labels_file)
        mask = folder / "Label" / mask_name
        if not mask.is_file():
            raise DatasetError(f"mask listed on line {number} of {labels_file} not found", mask)
        check_mask_size(image, mask)
        bad.append(Sample(path=image, label=1, defect_type=DEFECT, mask_path=mask))
    unlisted = [p for p in visible_entries(folder) if p.is_file() and is_image_file(p) and p.name not in listed]
    return good, bad, len(unlisted)


class DAGM:
    def __init__(self, path: Path | None):
        if path is None:
            raise DatasetError(
                "dagm: no data folder; pass --data-root DIR (holding dagm/) or an explicit path, "
                "or set IADBENCH_DATA_ROOT"
            )
        self.root = abspath(path)
        if not self.root.is_dir():
            raise DatasetError("DAGM folder not found", self.root)
        if _is_class(self.root):
            self._found = {self.root.name: self.root}
        else:
            self._found = {f.name: f for f in subfolders(self.root) if _is_class(f)}
        if not self._found:
            raise DatasetError("no DAGM class here (expected Class1 ... Class10 with Train/ and Test/)", self.root)

    def categories(self) -> list[str]:
        return sorted(self._found, key=lambda n: int(CLASS.fullmatch(n).group(1)))

    def split(self, category: str) -> Split:
        if category not in self._found:
            raise DatasetError(f"no category '{category}' (found: {', '.join(self.categories())})", self.root)
        root = self._found[category]
        for part in PARTS:
            if not (root / part).is_dir():
                raise DatasetError(f"no {part}/ folder (a DAGM class holds Train/ and Test/, each with Label/Labels.txt)", root)
        train, train_defective, unlisted_train = _read_part(root / "Train")
        test_good, test_bad, unlisted_test = _read_part(root / "Test")
        if not train:
            raise DatasetError("empty train split: Labels.txt lists no good training image", root / "Train")
        probe_all(s.path for s in train + train_defective + test_good + test_bad)
        notes: dict = {"mask_quality": MASK_QUALITY, "train_defective": len(train_defective)}
        if unlisted_train + unlisted_test:
            notes["warnings"] = [f"{unlisted_train + unlisted_test} image(s) not listed in Labels.txt left out"]
        return warn_one_class(
            Split(dataset=NAME, category=category, train=train, test=test_good + test_bad, notes=notes,
                  train_defective=train_defective)
        )


def holds_dagm(path: Path) -> bool:
    """A DAGM class folder (ClassN with Train/ or Test/), or a folder holding one."""
    return holds_category(path, _is_class)


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name=NAME,
            factory=DAGM,
            subdir="dagm",
            description="DAGM 2007 (Class1-Class10; Train/Test with Label/Labels.txt; weak ellipse masks)",
            version="1",
            detect=holds_dagm,
            # no direct link or checksum on record: data get says how to fetch it
            downloads=(
                Download(
                    url="https://hci.iwr.uni-heidelberg.de/content/weakly-supervised-learning-industrial-optical-inspection",
                    note="download Class1 ... Class10 from the DAGM 2007 competition page and extract them into "
                    "DIR/dagm, so that it holds Class1/Train, Class1/Test, ...; no checksum is published",
                    manual=True,
                ),
            ),
        )
    )
