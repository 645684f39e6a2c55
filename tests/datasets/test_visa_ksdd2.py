"""VisA (split CSV) and KSDD2 (_GT masks) on trees made in the test."""

from __future__ import annotations

import numpy as np
import pytest
from dsbuild import mask, png
from PIL import Image

from iadbench.errors import DatasetError
from iadbench_ksdd2.plugin import KSDD2
from iadbench_visa.plugin import VisA

HEADER = "object,split,label,image,mask\n"


def make_visa(root, extra_rows=""):
    rows = []
    for obj in ("candle", "pcb1"):
        for i in range(3):
            png(root / obj / "Data" / "Images" / "Normal" / f"{i:04d}.JPG", fmt="JPEG")
            rows.append(f"{obj},train,normal,{obj}/Data/Images/Normal/{i:04d}.JPG,")
        png(root / obj / "Data" / "Images" / "Normal" / "0100.JPG", fmt="JPEG")
        rows.append(f"{obj},test,normal,{obj}/Data/Images/Normal/0100.JPG,")
        for i in range(2):
            png(root / obj / "Data" / "Images" / "Anomaly" / f"{i:03d}.JPG", fmt="JPEG")
            # VisA masks hold small ids, not 255
            mask(root / obj / "Data" / "Masks" / "Anomaly" / f"{i:03d}.png", value=1)
            rows.append(f"{obj},test,anomaly,{obj}/Data/Images/Anomaly/{i:03d}.JPG,{obj}/Data/Masks/Anomaly/{i:03d}.png")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text(HEADER + "\n".join(rows) + "\n" + extra_rows)
    return root


def test_visa_reads_the_1cls_split(tmp_path):
    ds = VisA(make_visa(tmp_path))
    assert ds.categories() == ["candle", "pcb1"]
    split = ds.split("pcb1")
    assert len(split.train) == 3 and len(split.test) == 3
    bad = [s for s in split.test if s.label == 1]
    assert len(bad) == 2 and all(s.mask_path and s.mask_path.is_absolute() for s in bad)
    assert "left_out_defective_train" not in split.notes


def test_visa_leaves_out_anomalous_training_rows(tmp_path):
    root = make_visa(tmp_path)
    csv = root / "split_csv" / "1cls.csv"
    csv.write_text(csv.read_text() + "candle,train,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png\n")
    split = VisA(root).split("candle")
    assert split.notes["left_out_defective_train"] == 1 and len(split.train) == 3
    # offered for mixed supervision, with its mask, never among the good training images
    (offered,) = split.train_defective
    assert offered.label == 1 and offered.mask_path is not None and offered.path not in {s.path for s in split.train}


@pytest.mark.parametrize(
    "row, message",
    [
        ("candle,test,weird,candle/Data/Images/Normal/0100.JPG,", "line 14: unknown label 'weird'"),
        ("candle,val,normal,candle/Data/Images/Normal/0100.JPG,", "unknown split 'val'"),
        ("candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,", "defect image without its mask"),
        ("candle,test,normal,candle/Data/Images/Normal/missing.JPG,", "not found"),
    ],
)
def test_visa_bad_rows(tmp_path, row, message):
    root = make_visa(tmp_path, extra_rows=row + "\n")
    with pytest.raises(DatasetError, match=message):
        VisA(root).split("candle")


def test_visa_missing_csv_or_columns(tmp_path):
    with pytest.raises(DatasetError, match="split file not found"):
        VisA(tmp_path)
    (tmp_path / "split_csv").mkdir()
    (tmp_path / "split_csv" / "1cls.csv").write_text("object,split,image\n")
    with pytest.raises(DatasetError, match="missing column"):
        VisA(tmp_path)
    with pytest.raises(DatasetError, match="no data folder"):
        VisA(None)


def make_ksdd2(root, train_bad=2):
    for part, n_good, n_bad in (("train", 4, train_bad), ("test", 2, 2)):
        for i in range(n_good + n_bad):
            png(root / part / f"{10000 + i}.png", size=(23, 64))
            mask(root / part / f"{10000 + i}_GT.png", size=(23, 64), value=255 if i >= n_good else 0)
    return root


def test_ksdd2_labels_from_gt_and_notes_left_out_training_defects(tmp_path):
    ds = KSDD2(make_ksdd2(tmp_path))
    assert ds.categories() == ["ksdd2"]
    split = ds.split("ksdd2")
    assert len(split.train) == 4 and all(s.label == 0 for s in split.train)
    assert split.notes["left_out_defective_train"] == 2
    assert len(split.train_defective) == 2 and all(s.label == 1 and s.mask_path for s in split.train_defective)
    assert [s.label for s in split.test] == [0, 0, 1, 1]
    assert all(s.mask_path.name.endswith("_GT.png") for s in split.test if s.label)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda r: (r / "test" / "10001_GT.png").unlink(), "image without its mask"),
        (lambda r: (r / "test" / "10001.png").unlink(), "mask without its image"),
        (lambda r: mask(r / "test" / "10001_GT.png", size=(22, 64)), "mask is 22x64"),
        (lambda r: (r / "train" / "list.csv").write_text("x"), "not an image file"),
    ],
)
def test_ksdd2_bad_input(tmp_path, breakage, message):
    root = make_ksdd2(tmp_path)
    breakage(root)
    with pytest.raises(DatasetError, match=message):
        KSDD2(root).split("ksdd2")


def test_ksdd2_all_defective_training_is_an_empty_train_split(tmp_path):
    root = tmp_path
    png(root / "train" / "1.png")
    Image.fromarray(np.full((24, 32), 255, np.uint8)).save(root / "train" / "1_GT.png")
    png(root / "test" / "2.png")
    mask(root / "test" / "2_GT.png", value=0)
    with pytest.raises(DatasetError, match="empty train split"):
        KSDD2(root).split("ksdd2")
