"""VisA (Visual Anomaly): 12 categories described by a split CSV.

The path is the VisA root. Its split file ``split_csv/1cls.csv`` has the columns
object,split,label,image,mask; split is train/test, label normal/anomaly, and image
and mask paths are relative to the root (mask empty for normal images). VisA masks
hold small instance ids rather than 0/255; iadbench.images binarises any non-zero
value. Anomalous training rows (none in the official split) are left out and counted
in Split.notes.
"""

from __future__ import annotations

import csv
from pathlib import Path

from iadbench.api import DatasetError, DatasetSpec, Download, Sample, Split, hookimpl
from iadbench.layouts import abspath

NAME = "visa"
CATEGORIES = (
    "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
    "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum",
)  # fmt: skip
COLUMNS = ("object", "split", "label", "image", "mask")
LABELS = {"normal": 0, "anomaly": 1}
DEFECT = "anomaly"  # the 1cls split names no defect types


class VisA:
    def __init__(self, path: Path | None, split_csv: str = "split_csv/1cls.csv"):
        if path is None:
            raise DatasetError(
                "visa: no data folder; pass --data-root DIR (holding visa/) or an explicit path, "
                "or set IADBENCH_DATA_ROOT"
            )
        self.root = abspath(path)
        if not self.root.is_dir():
            raise DatasetError("VisA folder not found", self.root)
        self.csv_path = self.root / split_csv
        self._rows = self._read_csv()

    def _read_csv(self) -> dict[str, list[tuple[int, dict[str, str]]]]:
        if not self.csv_path.is_file():
            raise DatasetError("VisA split file not found (expected split_csv/1cls.csv under the VisA root)", self.csv_path)
        try:
            with self.csv_path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                header = [h.strip() for h in (reader.fieldnames or [])]
                missing = [c for c in COLUMNS if c not in header]
                if missing:
                    raise DatasetError(
                        f"missing column(s) {', '.join(missing)} (need {','.join(COLUMNS)})", self.csv_path
                    )
                rows: dict[str, list[tuple[int, dict[str, str]]]] = {}
                for row in reader:
                    row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                    line = reader.line_num
                    if not row["object"]:
                        raise DatasetError(f"line {line}: empty object name", self.csv_path)
                    rows.setdefault(row["object"], []).append((line, row))
        except UnicodeDecodeError as exc:
            raise DatasetError(f"not a text CSV file ({exc.reason})", self.csv_path) from None
        except csv.Error as exc:
            raise DatasetError(f"malformed CSV ({exc})", self.csv_path) from None
        if not rows:
            raise DatasetError("split file has no rows", self.csv_path)
        return rows

    def categories(self) -> list[str]:
        known = [c for c in CATEGORIES if c in self._rows]
        return known + sorted(c for c in self._rows if c not in CATEGORIES)

    def _file(self, rel: str, line: int, what: str) -> Path:
        path = abspath(self.root / rel)
        if not path.is_file():
            raise DatasetError(f"{what} listed on line {line} of {self.csv_path.name} not found", path)
        return path

    def split(self, category: str) -> Split:
        from iadbench.images import check_mask_size, image_size

        if category not in self._rows:
            raise DatasetError(f"no category '{category}' in the split file (found: {', '.join(self.categories())})", self.csv_path)
        train: list[Sample] = []
        test: list[Sample] = []
        train_defective: list[Sample] = []  # offered for mixed supervision only
        left_out = 0
        for line, row in self._rows[category]:
            split, label_text = row["split"].lower(), row["label"].lower()
            if split not in ("train", "test"):
                raise DatasetError(f"line {line}: unknown split '{row['split']}' (expected train or test)", self.csv_path)
            if label_text not in LABELS:
                raise DatasetError(f"line {line}: unknown label '{row['label']}' (expected normal or anomaly)", self.csv_path)
            label = LABELS[label_text]
            if not row["image"]:
                raise DatasetError(f"line {line}: empty image path", self.csv_path)
            image = self._file(row["image"], line, "image")
            image_size(image)
            if split == "train" and label == 1:
                left_out += 1  # unsupervised: train on good images only
                mask = self._file(row["mask"], line, "mask") if row["mask"] else None
                train_defective.append(Sample(path=image, label=1, defect_type=DEFECT, mask_path=mask))
                continue
            if label == 0:
                (train if split == "train" else test).append(Sample(path=image))
                continue
            if not row["mask"]:
                raise DatasetError(f"defect image without its mask (line {line} of {self.csv_path.name} has no mask)", image)
            mask = self._file(row["mask"], line, "mask")
            check_mask_size(image, mask)
            test.append(Sample(path=image, label=1, defect_type=DEFECT, mask_path=mask))
        if not train:
            raise DatasetError(f"empty train split: no normal training images of '{category}'", self.csv_path)
        if not test:
            raise DatasetError(f"empty test split: no test images of '{category}'", self.csv_path)
        notes: dict = {"split_csv": str(self.csv_path)}
        if left_out:
            notes["left_out_defective_train"] = left_out
        return Split(dataset=NAME, category=category, train=train, test=test, notes=notes,
                     train_defective=train_defective)


def holds_visa(path: Path) -> bool:
    """A VisA root: it has the split_csv/ folder."""
    return (path / "split_csv").is_dir()


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name=NAME,
            factory=VisA,
            subdir="visa",
            params={"split_csv": "split_csv/1cls.csv"},
            description="VisA (12 categories; split_csv/1cls.csv with normal/anomaly labels and masks)",
            version="1",
            detect=holds_visa,
            # URL and SHA-256 as anomalib 2.7 records them (anomalib.data.datamodules.image.visa)
            downloads=(
                Download(
                    url="https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar",
                    sha256="2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362",
                    licence="CC BY-NC-SA 4.0 (non-commercial use)",
                    note="the licence as anomalib records it; the archive's own licence file rules",
                ),
            ),
        )
    )
