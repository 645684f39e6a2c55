"""MVTec AD and the folder plugin on trees made in the test, and on the real bottle."""

from __future__ import annotations

from pathlib import Path

import pytest
from dsbuild import make_good_defect, make_mvtec_category, mask, png

from iadbench.errors import DatasetError
from iadbench.layouts import holdout_order
from iadbench_folder.plugin import FolderDataset
from iadbench_mvtec.plugin import MVTecAD


def test_mvtec_discovers_categories_and_keeps_defect_types(tmp_path):
    make_mvtec_category(tmp_path / "bottle")
    make_mvtec_category(tmp_path / "zipper", defects={"broken_teeth": 3})
    (tmp_path / "readme.txt").write_text("not a category")
    ds = MVTecAD(tmp_path)
    assert ds.categories() == ["bottle", "zipper"]
    split = ds.split("bottle")
    assert (len(split.train), len(split.test)) == (4, 5)
    assert all(s.label == 0 and s.defect_type == "good" for s in split.train)
    kinds = sorted({s.defect_type for s in split.test if s.label == 1})
    assert kinds == ["dent", "scratch"]
    for s in split.test:
        assert s.path.is_absolute()
        assert (s.mask_path is not None) == (s.label == 1)
        if s.mask_path:
            assert s.mask_path.name == f"{s.path.stem}_mask.png" and s.mask_path.parent.name == s.defect_type
    assert split.has_masks
    with pytest.raises(DatasetError, match="no category 'cable'"):
        ds.split("cable")


def test_mvtec_single_category_folder(tmp_path):
    make_mvtec_category(tmp_path / "screw")
    assert MVTecAD(tmp_path / "screw").categories() == ["screw"]


def test_litter_and_hidden_files_are_skipped(tmp_path):
    root = make_mvtec_category(tmp_path / "c")
    for junk in (".DS_Store", "Thumbs.db", "._000.png", "desktop.ini"):
        (root / "train" / "good" / junk).write_bytes(b"junk")
    (root / "test" / ".hidden").mkdir()
    (root / "__MACOSX").mkdir()
    assert len(MVTecAD(root).split("c").train) == 4


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda r: (r / "ground_truth" / "dent" / "000_mask.png").unlink(), "defect image without its mask"),
        (lambda r: __import__("shutil").rmtree(r / "ground_truth"), "defect image without its mask"),
        (lambda r: mask(r / "ground_truth" / "dent" / "007_mask.png"), "mask without its image"),
        (lambda r: mask(r / "ground_truth" / "dent" / "000_mask.png", size=(31, 24)), "mask is 31x24"),
        (lambda r: (r / "train" / "good" / "notes.txt").write_text("x"), "not an image file"),
        (lambda r: [p.unlink() for p in (r / "train" / "good").iterdir()], "empty train split"),
        (lambda r: __import__("shutil").rmtree(r / "train"), "no train/ folder"),
        (lambda r: [p.unlink() for p in (r / "test" / "dent").iterdir()], "empty folder"),
        (lambda r: (r / "test" / "scratch" / "000.png").write_bytes(b""), "empty file"),
        (lambda r: (r / "test" / "scratch" / "001.png").write_text("text"), "not an image"),
    ],
)
def test_mvtec_bad_input_is_one_line_naming_the_file(tmp_path, breakage, message):
    root = make_mvtec_category(tmp_path / "cat")
    breakage(root)
    with pytest.raises(DatasetError) as err:
        MVTecAD(tmp_path).split("cat")
    text = str(err.value)
    assert message in text and "\n" not in text and str(root) in text


def test_folder_accepts_mvtec_tree_without_masks_and_notes_left_out_train(tmp_path):
    root = make_mvtec_category(tmp_path / "parts", masks=False)
    png(root / "train" / "defect" / "x.png")
    split = FolderDataset(root).split("parts")
    assert len(split.train) == 4 and not split.has_masks
    assert split.notes["left_out_train"] == {"defect": 1}


def test_folder_masks_are_all_or_nothing(tmp_path):
    root = make_mvtec_category(tmp_path / "parts", masks=False)
    mask(root / "ground_truth" / "scratch" / "000_mask.png")
    with pytest.raises(DatasetError, match="defect image without its mask"):
        FolderDataset(root).split("parts")


def test_good_defect_holdout_is_seeded_and_deterministic(tmp_path):
    root = make_good_defect(tmp_path / "widgets", n_good=20, masks=True)
    a = FolderDataset(root, test_fraction=0.25, seed=3).split("widgets")
    b = FolderDataset(root, test_fraction=0.25, seed=3).split("widgets")
    c = FolderDataset(root, test_fraction=0.25, seed=4).split("widgets")
    held = lambda s: {x.path.name for x in s.test if x.label == 0}  # noqa: E731
    assert len(held(a)) == 5 and len(a.train) == 15
    assert held(a) == held(b) and held(a) != held(c)
    assert held(a) == set(holdout_order([f"img{i}.png" for i in range(20)], 3)[:5])
    assert not held(a) & {x.path.name for x in a.train}
    assert sorted({x.defect_type for x in a.test if x.label}) == ["dent", "scratch"]
    assert a.has_masks and a.notes["holdout"]["good_test"] == 5
    # Adding images moves few of the held-out ones: the rule ranks names, not positions.
    for i in range(20, 24):
        png(root / "good" / f"img{i}.png")
    d = FolderDataset(root, test_fraction=0.25, seed=3).split("widgets")
    assert len(held(a) & held(d)) >= 4


def test_good_defect_single_defect_folder_and_parent_of_categories(tmp_path):
    make_good_defect(tmp_path / "a", n_good=3, defects={"defect": 1})
    make_good_defect(tmp_path / "b", n_good=3, defects={"bad": 2})
    ds = FolderDataset(tmp_path)
    assert ds.categories() == ["a", "b"]
    split = ds.split("a")
    assert len(split.train) == 2 and [s.defect_type for s in split.test if s.label] == ["defect"]


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda r: make_good_defect(r, n_good=1), "need at least 2 good images"),
        (lambda r: make_good_defect(r, defects={}) and None, "no defect folder"),
        (lambda r: (make_good_defect(r), (r / "dent" / "d0.jpg").unlink(), (r / "dent" / "d1.jpg").unlink()), "empty folder"),
    ],
)
def test_good_defect_bad_input(tmp_path, build, message):
    root = tmp_path / "x"
    if "no defect" in message:
        for i in range(3):
            png(root / "good" / f"{i}.png")
    else:
        build(root)
    with pytest.raises(DatasetError, match=message):
        FolderDataset(root).split("x")


def test_folder_needs_a_recognisable_folder(tmp_path):
    with pytest.raises(DatasetError, match="needs a path"):
        FolderDataset(None)
    (tmp_path / "random").mkdir()
    with pytest.raises(DatasetError, match="no dataset found"):
        FolderDataset(tmp_path / "random")
    with pytest.raises(DatasetError, match="folder not found"):
        FolderDataset(tmp_path / "missing")


@pytest.mark.real_data
def test_real_mvtec_bottle(mvtec_root: Path):
    ds = MVTecAD(mvtec_root)
    assert "bottle" in ds.categories()
    split = ds.split("bottle")
    assert len(split.train) == 209 and len(split.test) == 83
    assert sum(s.mask_path is not None for s in split.test) == 63
    counts = {}
    for s in split.test:
        counts[s.defect_type] = counts.get(s.defect_type, 0) + 1
    assert counts == {"good": 20, "broken_large": 20, "broken_small": 22, "contamination": 21}
