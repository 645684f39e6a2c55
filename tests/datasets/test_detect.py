"""Which dataset reads a folder: each plugin's ``detect`` on the trees it reads and
on the others', and how `adbench data check PATH` chooses among the claims."""

from __future__ import annotations

import pytest
from dsbuild import make_good_defect, make_mvtec_category, png
from test_visa_ksdd2 import make_ksdd2, make_visa

from iadbench.cli import main
from iadbench.cli.data import reader_of
from iadbench.plugins import get_registry
from iadbench.types import DatasetSpec

TREES = {
    "mvtec_category": lambda root: make_mvtec_category(root / "bottle"),
    "mvtec_root": lambda root: make_mvtec_category(root / "mvtec_ad" / "bottle").parent,
    "good_defect": lambda root: make_good_defect(root / "mine"),
    "visa": lambda root: make_visa(root / "visa"),
    "ksdd2": lambda root: make_ksdd2(root / "ksdd2"),
    "half_made": lambda root: png(root / "half" / "train" / "001.png").parents[1],
    "empty": lambda root: (root / "nothing").mkdir() or root / "nothing",
}

# tree -> datasets whose detect claims it (reference written from the layouts' definitions)
CLAIMS = {
    "mvtec_category": {"folder", "mvtec"},
    "mvtec_root": {"folder", "mvtec"},
    "good_defect": {"folder"},
    "visa": {"visa"},
    "ksdd2": {"ksdd2"},
    "half_made": set(),
    "empty": set(),
}

# tree -> the dataset data check reads it with: a benchmark that knows the folder by its
# category names before `folder`, and a folder nobody claims goes to `folder`
READER = {"mvtec_category": "mvtec", "mvtec_root": "mvtec", "good_defect": "folder", "visa": "visa",
          "ksdd2": "ksdd2", "half_made": "folder", "empty": "folder"}


@pytest.mark.parametrize("tree", sorted(TREES))
def test_each_plugin_claims_its_own_layout_only(tmp_path, tree):
    path = TREES[tree](tmp_path)
    datasets = get_registry().datasets
    claims = {name for name, spec in datasets.items() if spec.detect is not None and spec.detect(path)}
    assert claims == CLAIMS[tree]
    assert reader_of(path, datasets).name == READER[tree]


def test_benchmarks_are_asked_before_own_folders_and_no_detector_means_no_reader(tmp_path):
    path = make_mvtec_category(tmp_path / "bottle")
    datasets = dict(get_registry().datasets)
    mine = DatasetSpec("mine", factory=dict, detect=lambda p: (p / "train").is_dir())
    assert reader_of(path, {"mine": mine, "mvtec": datasets["mvtec"]}).name == "mvtec"
    assert reader_of(path, {"mvtec": datasets["mvtec"]}).name == "mvtec"
    parts = make_mvtec_category(tmp_path / "parts")  # MVTec-like, but no MVTec AD category
    assert reader_of(parts, {"mine": mine, "mvtec": datasets["mvtec"]}).name == "mine"
    (tmp_path / "empty").mkdir()
    assert reader_of(tmp_path / "empty", {"mvtec": datasets["mvtec"]}) is None  # no claim, no own-folder dataset
    assert reader_of(path, {"factory": datasets["factory"]}) is None


def run_check(args, capsys):
    try:
        main(["data", "check", *args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, " ".join(out.out.split()), out.err


def test_data_check_reads_visa_and_ksdd2_roots_with_their_plugins(tmp_path, capsys, isolated_env):
    code, out, err = run_check([str(make_visa(tmp_path / "visa"))], capsys)
    assert code == 0, err
    assert "ok: visa: 2 categories, 6 train, 6 test (4 defective, 4 masks)" in out
    code, out, err = run_check([str(make_ksdd2(tmp_path / "ksdd2"))], capsys)
    assert code == 0, err
    assert "ok: ksdd2: 1 category, 4 train, 4 test (2 defective, 2 masks)" in out


def test_data_check_on_a_half_made_tree_says_what_is_missing(tmp_path, capsys, isolated_env):
    code, _, err = run_check([str(TREES["half_made"](tmp_path))], capsys)
    assert code == 2 and "no test/ folder" in " ".join(err.split())
