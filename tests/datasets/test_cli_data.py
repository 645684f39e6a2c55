"""`adbench data check` and `adbench data factory`, run in-process through main()."""

from __future__ import annotations

import pytest
from dsbuild import make_good_defect, make_mvtec_category

from iadbench.cli import main


def run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_mvtec_like_folder(tmp_path, capsys, isolated_env):
    make_mvtec_category(tmp_path / "parts", defects={"scratch": 2, "dent": 1})
    code, out, err = run(["data", "check", str(tmp_path / "parts")], capsys)
    assert code == 0, err
    assert "4 train, 5 test (3 defective, 3 masks)" in " ".join(out.split())
    assert "scratch" in out and "32x24 (9)" in out


def test_check_good_defect_folder_reports_the_holdout(tmp_path, capsys, isolated_env):
    make_good_defect(tmp_path / "mine", n_good=10)
    code, out, err = run(["data", "check", str(tmp_path / "mine"), "--test-fraction", "0.3"], capsys)
    assert code == 0, err
    assert "7 train, 7 test (4 defective, 0 masks)" in " ".join(out.split())
    assert "holdout" in out


def test_check_by_name_with_data_root(tmp_path, capsys, isolated_env):
    make_mvtec_category(tmp_path / "mvtec_ad" / "bottle")
    code, out, err = run(["data", "check", "mvtec", "--data-root", str(tmp_path), "-c", "bottle"], capsys)
    assert code == 0, err
    assert "mvtec / bottle" in out


def test_structural_problem_is_one_line_and_exit_2(tmp_path, capsys, isolated_env):
    root = make_mvtec_category(tmp_path / "parts")
    (root / "ground_truth" / "scratch" / "001_mask.png").unlink()
    code, out, err = run(["data", "check", str(root)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "001.png" in lines[0] and "without its mask" in lines[0]


def test_undecodable_image_is_listed_and_exit_2(tmp_path, capsys, isolated_env):
    root = make_mvtec_category(tmp_path / "parts")
    bad = root / "test" / "good" / "001.png"
    bad.write_bytes(bad.read_bytes()[:60])  # header intact, data cut off
    code, out, err = run(["data", "check", str(root)], capsys)
    assert code == 2
    assert f"problem: {bad}" in err and "1 problem(s) found" in " ".join(err.split())


def test_missing_folder_and_unknown_name(tmp_path, capsys, isolated_env):
    code, _, err = run(["data", "check", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "folder not found" in err
    code, _, err = run(["data", "check", "no_such_dataset"], capsys)
    assert code == 2 and "unknown dataset" in err


def test_factory_command_then_check(tmp_path, capsys, isolated_env):
    out_dir = tmp_path / "fac"
    args = ["data", "factory", "--out", str(out_dir), "-c", "nut", "--image-size", "128",
            "--n-train", "3", "--n-test-good", "2", "--n-per-defect", "1"]
    code, out, err = run(args, capsys)
    assert code == 0, err
    assert (out_dir / "nut" / "ground_truth" / "missing" / "000_mask.png").is_file()
    code, out, err = run(["data", "check", str(out_dir)], capsys)
    assert code == 0, err
    assert "3 train, 6 test (4 defective, 4 masks)" in " ".join(out.split())
    code, _, err = run(args, capsys)
    assert code == 2 and "not empty" in err


@pytest.mark.real_data
def test_check_real_bottle(mvtec_root, capsys, isolated_env):
    code, out, err = run(["data", "check", str(mvtec_root / "bottle")], capsys)
    assert code == 0, err
    flat = " ".join(out.split())
    assert "209 train, 83 test (63 defective, 63 masks)" in flat
    assert "broken_small │ 22" in flat and "900x900 (292)" in flat
