"""bench.hardware, the device check, on the CPU: the same grid twice through `adbench run`
compared image by image, a perturbed score caught, and a GPU this machine lacks refused
before anything runs. (On a GPU it compares the CPU with cuda: that run is the device
session's, not the suite's.)"""

from __future__ import annotations

import csv
import json

import pytest

from bench import hardware


def _read_rows(cell_csv) -> list[dict]:
    with open(cell_csv, newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(cell_csv, rows: list[dict]) -> None:
    with open(cell_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.mark.slow  # two `adbench run`s of PaDiM at 64 px and a refused third (~15 s)
def test_same_grid_twice_agrees_and_a_changed_score_is_caught(tmp_path, capfd):
    out = tmp_path / "hw"
    # published training on a CPU is refused by adbench run (exit 2) after the comparison is written
    with pytest.raises(SystemExit) as exit_:
        hardware.main(["--device", "cpu", "--out", str(out), "-d", "padim", "--set", "padim.input_size=64",
                       "--published", "factory:bottle"])
    assert exit_.value.code == 2
    out_, err = capfd.readouterr()  # the runs' own output too (subprocesses)
    assert "same records" in out_ and "error: --training published on the CPU" in err
    report = json.loads((out / "comparison.json").read_text())
    (row,) = report["rows"]
    assert row["detector"] == "padim" and row["held"] and row["ok"] and row["score_rel_diff"] == 0.0
    assert row["device"]["metrics"]["image_auroc"] == row["reference"]["metrics"]["image_auroc"]
    assert row["device"]["cost"]["latency_ms_p50"] > 0

    # a score 2e-4 of the scale off is beyond the bound; the difference is measured
    ref, dev = out / "reference", out / "device"
    (ref_cell,), (dev_cell,) = hardware.ok_cells(ref).values(), hardware.ok_cells(dev).values()
    scores = dev / "cells" / dev_cell["key"] / "scores.csv"
    before = hardware.image_scores(dev_cell)
    scale = max(abs(v) for v in before.values())
    rows = _read_rows(scores)
    first = float(rows[0]["score"])
    rows[0]["score"] = repr(first * (1 + 2e-4 * scale / abs(first)))
    _write_rows(scores, rows)
    (row,) = hardware.compare(ref, dev)
    assert row["score_rel_diff"] == pytest.approx(2e-4, rel=1e-3) and not row["ok"]
    # a trained detector's difference is reported, not held
    for line in (dev / "records.jsonl", ref / "records.jsonl"):
        text = line.read_text().replace('"detector": "padim"', '"detector": "feature_ae"')
        line.write_text(text.replace('"detector_name": "padim"', '"detector_name": "feature_ae"'))
    (row,) = hardware.compare(ref, dev)
    assert not row["held"] and row["ok"] and row["score_rel_diff"] > hardware.SCORE_RTOL
    # a cell scored on other images cannot be compared
    _write_rows(scores, _read_rows(scores)[1:])
    assert hardware.score_difference(hardware.image_scores(ref_cell), hardware.image_scores(dev_cell)) == float("inf")


def test_a_gpu_this_machine_lacks_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("iadbench.devices.gpu_count", lambda: 0)
    with pytest.raises(SystemExit) as exit_:
        hardware.main(["--device", "cuda", "--out", str(tmp_path / "hw")])
    assert exit_.value.code == 2
    assert "--device cuda: this machine has no GPU" in capsys.readouterr().err
    assert not (tmp_path / "hw").exists()  # nothing ran, nothing written


def test_out_holding_files_is_refused(tmp_path, capsys):
    (tmp_path / "old.txt").write_text("kept")
    with pytest.raises(SystemExit) as exit_:
        hardware.main(["--device", "cpu", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "already holds files" in capsys.readouterr().err
    assert (tmp_path / "old.txt").read_text() == "kept"


def test_a_reference_run_without_ok_cells_fails(tmp_path, capsys, monkeypatch):
    """Nothing compared is not "same records": exit 1."""
    def fake_run(out, name, device, args, extra=None):
        run_dir = out / name
        run_dir.mkdir(parents=True)
        (run_dir / "records.jsonl").write_text(json.dumps({"detector": "padim", "dataset": "factory", "category": "bottle",
                                                           "seed": 0, "status": "failed", "key": "k"}) + "\n")
        return run_dir

    monkeypatch.setattr(hardware, "run_grid", fake_run)
    assert hardware.main(["--device", "cpu", "--out", str(tmp_path / "hw")]) == 1
    text = capsys.readouterr().out
    assert "FAIL: the reference run has no ok cell" in text and "same records" not in text
    assert json.loads((tmp_path / "hw" / "comparison.json").read_text())["rows"] == []
