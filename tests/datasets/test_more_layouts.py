"""MPDD, BTAD, Real-IAD, KolektorSDD (v1) and DAGM 2007: a miniature of each real layout,
parsed into splits, its faults named, and `adbench data check` reading it as itself."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from dsbuild import make_mvtec_category, mask, png
from PIL import Image

from iadbench.cli import main
from iadbench.cli.data import reader_of
from iadbench.datasets import resolve_dataset
from iadbench.errors import DatasetError
from iadbench.plugins import get_registry

SIZE = (16, 12)


def open_dataset(name, path, **params):
    return resolve_dataset(get_registry(), name, path=path, **params)


# --- miniatures, written from each dataset's published layout ------------------------------


def make_mpdd(root):
    make_mvtec_category(root / "bracket_black", n_train=3, n_good=2, defects={"hole": 2, "scratches": 1})
    make_mvtec_category(root / "tubes", n_train=2, n_good=1, defects={"anomalous": 1})
    return root


def make_btad(root):
    """01: BMP images, PNG masks; 03: BMP images and masks (the real formats differ so)."""
    for cat, img_fmt, mask_ext in (("01", "BMP", ".png"), ("03", "BMP", ".bmp")):
        for i in range(3):
            png(root / cat / "train" / "ok" / f"{i:04d}.bmp", SIZE, value=90 + i, fmt=img_fmt)
        png(root / cat / "test" / "ok" / "0000.bmp", SIZE, fmt=img_fmt)
        for i in range(2):
            png(root / cat / "test" / "ko" / f"{i:04d}.bmp", SIZE, value=200, fmt=img_fmt)
            mask(root / cat / "ground_truth" / "ko" / f"{i:04d}{mask_ext}", SIZE)
    return root


def _realiad_entry(cat, sample, cls, view, defect=None):
    folder = f"OK/S{sample:04d}" if cls == "OK" else f"NG/{defect}/S{sample:04d}"
    stem = f"{cat}_{sample:04d}_{cls}_C{view}_20230922100209"
    return {"category": cat, "anomaly_class": "OK" if cls == "OK" else defect,
            "image_path": f"{folder}/{stem}.jpg", "mask_path": None if cls == "OK" else f"{folder}/{stem}_mask.png"}


def make_realiad(root, cat="audiojack"):
    """2 good training samples, 1 good and 1 defective (AK) test sample, 2 views each."""
    train = [_realiad_entry(cat, s, "OK", v) for s in (1, 2) for v in (1, 2)]
    test = [_realiad_entry(cat, 3, "OK", v) for v in (1, 2)] + [_realiad_entry(cat, 4, "NG", v, "AK") for v in (1, 2)]
    images = root / "realiad_256" / cat
    for e in train + test:
        png(images / e["image_path"], SIZE, value=200 if e["mask_path"] else 100, fmt="JPEG")
        if e["mask_path"]:
            mask(images / e["mask_path"], SIZE)
    meta = {"prefix": "", "normal_class": "OK", "pre_transform": False}
    for folder, data in (("realiad_jsons", {"meta": meta, "train": train, "test": test}),
                         # a FUIAD set: one defective sample among the training images, by design
                         ("realiad_jsons_fuiad_0.1", {"meta": meta, "train": train + test[2:], "test": test[:2] + test[2:]})):
        path = root / "realiad_jsons" / folder / f"{cat}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    return root


# kos folder -> defective parts (by index) among its 3 parts
KSDD_DEFECTS = {"kos01": {1}, "kos02": set(), "kos03": {0}, "kos04": set(), "kos05": {2}, "kos06": set()}


def make_ksdd(root):
    for folder, bad in KSDD_DEFECTS.items():
        for i in range(3):
            png(root / folder / f"Part{i}.jpg", SIZE, value=150, mode="L", fmt="JPEG")
            box = (2, 2, 6, 6) if i in bad else (0, 0, 0, 0)
            mask(root / folder / f"Part{i}_label.bmp", SIZE, box=box)
    return root


def _dagm_part(folder, n_good, n_bad, start):
    lines = ["1"]  # the header line of the real Labels.txt
    for k in range(n_good + n_bad):
        ident = start + k
        name = f"{ident:04d}.PNG"
        png(folder / name, SIZE, value=120, mode="L", fmt="PNG")
        if k < n_good:
            lines.append(f"{ident}\t0\t{name}\t0\t0")
        else:
            mask(folder / "Label" / f"{ident:04d}_label.PNG", SIZE)
            lines.append(f"{ident}\t1\t{name}\t0\t{ident:04d}_label.PNG")
    (folder / "Label").mkdir(exist_ok=True)
    (folder / "Label" / "Labels.txt").write_text("\n".join(lines) + "\n")


def make_dagm(root):
    for cls in ("Class1", "Class10"):
        _dagm_part(root / cls / "Train", n_good=3, n_bad=2, start=1)
        _dagm_part(root / cls / "Test", n_good=2, n_bad=1, start=1)
    return root


# --- layouts ---------------------------------------------------------------------------


def test_mpdd_is_read_like_mvtec_and_known_by_its_category_names(tmp_path):
    ds = open_dataset("mpdd", make_mpdd(tmp_path / "mpdd"))
    assert ds.categories() == ["bracket_black", "tubes"]
    s = ds.split("bracket_black")
    assert (len(s.train), len(s.test), sum(x.is_anomalous for x in s.test)) == (3, 5, 3)
    assert {x.defect_type for x in s.test} == {"good", "hole", "scratches"}
    assert all(x.mask_path.name == f"{x.path.stem}_mask.png" for x in s.test if x.is_anomalous)
    (tmp_path / "mpdd" / "tubes" / "ground_truth" / "anomalous" / "000_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"000\.png.*without its mask"):
        ds.split("tubes")
    with pytest.raises(DatasetError, match="no MPDD category"):
        open_dataset("mpdd", make_mvtec_category(tmp_path / "mvtec" / "bottle").parent)


def test_btad_pairs_masks_by_stem_whatever_their_format(tmp_path):
    root = make_btad(tmp_path / "btad")
    ds = open_dataset("btad", root)
    assert ds.categories() == ["01", "03"]
    for cat, mask_ext in (("01", ".png"), ("03", ".bmp")):
        s = ds.split(cat)
        assert (len(s.train), len(s.test)) == (3, 3)
        bad = [x for x in s.test if x.is_anomalous]
        assert [(x.path.name, x.mask_path.name, x.defect_type) for x in bad] == [
            (f"{i:04d}.bmp", f"{i:04d}{mask_ext}", "ko") for i in range(2)]
        assert not s.train_defective
    (root / "03" / "ground_truth" / "ko" / "0001.bmp").unlink()
    with pytest.raises(DatasetError, match=r"0001\.bmp.*without its mask"):
        ds.split("03")


def test_realiad_honours_the_json_split_views_and_sets(tmp_path):
    root = make_realiad(tmp_path / "realiad")
    s = open_dataset("realiad", root).split("audiojack")
    assert (len(s.train), len(s.test), sum(x.is_anomalous for x in s.test)) == (4, 4, 2)
    bad = [x for x in s.test if x.is_anomalous]
    assert {x.defect_type for x in bad} == {"AK"} and all(x.mask_path.name == f"{x.path.stem}_mask.png" for x in bad)
    assert s.notes["resolution"] == "256" and s.notes["views"] == "all"
    one_view = open_dataset("realiad", root, views="C2").split("audiojack")
    assert (len(one_view.train), len(one_view.test)) == (2, 2)
    assert all("_C2_" in x.path.name for x in one_view.train + one_view.test)
    assert one_view.notes["left_out_other_views"] == 4
    fuiad = open_dataset("realiad", root, json_set="realiad_jsons_fuiad_0.1").split("audiojack")
    assert (len(fuiad.train), fuiad.notes["train_anomalous"]) == (6, 2)  # kept where the JSON puts them


def test_realiad_faults_name_the_file(tmp_path):
    root = make_realiad(tmp_path / "realiad")
    json_path = root / "realiad_jsons" / "realiad_jsons" / "audiojack.json"
    data = json.loads(json_path.read_text())
    data["test"][3]["mask_path"] = data["test"][3]["mask_path"].replace("_mask", "_gone")
    json_path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"_gone\.png: file listed at test\[3\]\.mask_path"):
        open_dataset("realiad", root).split("audiojack")
    json_path.write_text('{"train": [')
    with pytest.raises(DatasetError, match=r"audiojack\.json: malformed JSON"):
        open_dataset("realiad", root).split("audiojack")
    json_path.write_text('{"train": []}')
    with pytest.raises(DatasetError, match=r'audiojack\.json: malformed split file.*"test"'):
        open_dataset("realiad", root).split("audiojack")
    with pytest.raises(DatasetError, match="views must be"):
        open_dataset("realiad", root, views="left")
    with pytest.raises(DatasetError, match="'realiad_jsons_sv' not found"):
        open_dataset("realiad", root, json_set="realiad_jsons_sv")


def _reference_folds(folders, folds=3, seed=0):
    """Fold of each folder by the documented rule: sha256("<seed>/<folder>") order, dealt round-robin."""
    order = sorted(folders, key=lambda n: hashlib.sha256(f"{seed}/{n}".encode()).hexdigest())
    return {name: i % folds for i, name in enumerate(order)}


def test_ksdd_folds_by_folder_with_defective_training_images_apart(tmp_path):
    ds = open_dataset("ksdd", make_ksdd(tmp_path / "ksdd"))
    assert ds.categories() == ["fold1", "fold2", "fold3"]
    fold_of = _reference_folds(KSDD_DEFECTS)
    tested = []
    for k, cat in enumerate(ds.categories()):
        s = ds.split(cat)
        mine = sorted(n for n, f in fold_of.items() if f == k)
        assert sorted({x.path.parent.name for x in s.test}) == mine == s.notes["test_folders"]
        assert {x.path.parent.name for x in s.train + s.train_defective}.isdisjoint(mine)
        n_bad_test = sum(len(KSDD_DEFECTS[n]) for n in mine)
        assert sum(x.is_anomalous for x in s.test) == n_bad_test
        assert len(s.train_defective) == 3 - n_bad_test and all(x.is_anomalous for x in s.train_defective)
        assert not any(x.is_anomalous for x in s.train) and len(s.train) == 3 * (6 - len(mine)) - (3 - n_bad_test)
        assert all(x.mask_path.name == f"{x.path.stem}_label.bmp" for x in s.test + s.train_defective if x.is_anomalous)
        tested += [x.path for x in s.test]
    assert len(tested) == len(set(tested)) == 18  # every image tested exactly once
    with pytest.raises(DatasetError, match="folds must lie between 2 and the number of kos folders"):
        open_dataset("ksdd", tmp_path / "ksdd", folds=7)
    (tmp_path / "ksdd" / "kos04" / "Part2_label.bmp").unlink()
    with pytest.raises(DatasetError, match=r"kos04/Part2\.jpg: image without its mask"):
        open_dataset("ksdd", tmp_path / "ksdd").split("fold1")


def test_dagm_reads_labels_txt_and_flags_its_weak_masks(tmp_path):
    root = make_dagm(tmp_path / "dagm")
    ds = open_dataset("dagm", root)
    assert ds.categories() == ["Class1", "Class10"]
    s = ds.split("Class10")
    assert (len(s.train), len(s.train_defective), len(s.test), sum(x.is_anomalous for x in s.test)) == (3, 2, 3, 1)
    assert [x.mask_path.name for x in s.train_defective] == ["0004_label.PNG", "0005_label.PNG"]
    assert "weak" in s.notes["mask_quality"] and "ellipse" in s.notes["mask_quality"]
    labels = root / "Class1" / "Test" / "Label" / "Labels.txt"
    labels.write_text(labels.read_text().replace("0003_label.PNG", "0099_label.PNG"))
    with pytest.raises(DatasetError, match=r"0099_label\.PNG: mask listed on line 4 of .*Labels\.txt not found"):
        ds.split("Class1")
    labels.write_text("1\n1 yes 0001.PNG 0 0\n")
    with pytest.raises(DatasetError, match=r"Labels\.txt: line 2: expected 5 columns"):
        ds.split("Class1")


# --- which dataset reads which folder ------------------------------------------------------

TREES = {
    "mpdd": make_mpdd,
    "btad": make_btad,
    "realiad": make_realiad,
    "ksdd": make_ksdd,
    "dagm": make_dagm,
    "mvtec": lambda root: make_mvtec_category(root / "bottle").parent,
    "folder": lambda root: make_mvtec_category(root / "parts").parent,
}
# tree -> every dataset whose detect claims it (MVTec-like trees are the folder dataset's too)
CLAIMS = {"mpdd": {"mpdd", "folder"}, "btad": {"btad"}, "realiad": {"realiad"}, "ksdd": {"ksdd"}, "dagm": {"dagm"},
          "mvtec": {"mvtec", "folder"}, "folder": {"folder"}}
SUMMARY = {
    "mpdd": "mpdd: 2 categories, 5 train, 7 test (4 defective, 4 masks)",
    "btad": "btad: 2 categories, 6 train, 6 test (4 defective, 4 masks)",
    "realiad": "realiad: 1 category, 4 train, 4 test (2 defective, 2 masks)",
    "ksdd": "ksdd: 3 categories,",  # train counts depend on the folds (checked above)
    "dagm": "dagm: 2 categories, 6 train, 6 test (2 defective, 2 masks)",
    "mvtec": "mvtec: 1 category, 4 train, 5 test (3 defective, 3 masks)",
    "folder": "folder: 1 category, 4 train, 5 test (3 defective, 3 masks)",
}


@pytest.mark.parametrize("tree", sorted(TREES))
def test_data_check_reads_each_miniature_as_itself(tmp_path, tree, capsys, isolated_env):
    path = TREES[tree](tmp_path / "data")
    datasets = get_registry().datasets
    assert {n for n, spec in datasets.items() if spec.detect is not None and spec.detect(path)} == CLAIMS[tree]
    assert reader_of(path, datasets).name == tree
    try:
        main(["data", "check", str(path)])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    flat = " ".join(out.out.split())
    assert code == 0, out.err
    assert f"read as '{tree}'" in flat and f"ok: {SUMMARY[tree]}" in flat


def test_data_check_decodes_the_labelled_defective_training_images_too(tmp_path, capsys, isolated_env):
    root = make_dagm(tmp_path / "dagm")
    bad = root / "Class1" / "Train" / "0005.PNG"  # a defective training image
    noise = np.random.default_rng(0).integers(0, 256, (SIZE[1], SIZE[0]), dtype=np.uint8)
    Image.fromarray(noise).save(bad, format="PNG")
    bad.write_bytes(bad.read_bytes()[:100])  # header intact, pixel data cut off
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", str(root), "-c", "Class1"])
    out = capsys.readouterr()
    assert exc.value.code == 2 and f"problem: {bad}" in out.err
    assert "train │ defective (labelled) │ 2 │ 2" in " ".join(out.out.split())
