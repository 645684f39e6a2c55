"""--setting unified: one model per dataset, fitted on every category's good images,
evaluated per category, one record each."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from iadbench.errors import InputError
from iadbench.plugins import get_registry
from iadbench.runner.plan import DatasetEntry, DetectorEntry, Plan, expand
from testkit import adbench, plugin_env


def test_a_unified_plan_has_one_cell_per_dataset_and_a_record_key_per_category():
    registry = get_registry()
    cats = ["bottle", "metal"]
    unified = expand(Plan([DetectorEntry("padim")], [DatasetEntry("factory", cats)], setting="unified"),
                     registry, lambda _: cats)
    single = expand(Plan([DetectorEntry("padim")], [DatasetEntry("factory", cats)]), registry, lambda _: cats)
    (cell,) = unified
    assert cell.categories == cats and len(set(cell.record_keys)) == 2
    assert not set(cell.record_keys) & {c.key for c in single} and cell.key not in {c.key for c in single}
    assert [c.record_keys for c in single] == [[c.key] for c in single]
    with pytest.raises(InputError, match="two or more categories"):
        expand(Plan([DetectorEntry("padim")], [DatasetEntry("factory", ["bottle"])], setting="unified"),
               registry, lambda _: cats)
    with pytest.raises(InputError, match="not supported"):
        expand(Plan([DetectorEntry("padim")], [DatasetEntry("factory", cats)], setting="unified",
                    defects_in_train=[0, 2]), registry, lambda _: cats)


@pytest.mark.slow
def test_a_unified_run_fits_once_on_every_category_and_scores_each(example_site, tmp_path):
    env = plugin_env(example_site, allow="example,metrics", IADBENCH_CACHE=str(tmp_path / "cache"))
    grid = ["-d", "example.median_distance", "--dataset", "example.blobs",
            "--dataset-path", f"example.blobs={tmp_path / 'blobs'}"]
    out = adbench("run", *grid, "--setting", "unified", "--keep-models", "all", "--run-dir", str(tmp_path / "u"),
                  env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    recs = [json.loads(line) for line in (tmp_path / "u" / "records.jsonl").read_text().splitlines()]
    assert sorted(r["category"] for r in recs) == ["dark", "light"]
    assert len({r["key"] for r in recs}) == 2 and len({r["cell_key"] for r in recs}) == 1
    assert all(r["setting"] == "unified" and r["status"] == "ok" for r in recs)
    assert {r["artifact"] for r in recs} == {recs[0]["artifact"]}  # one model for both
    # it was fitted on the good images of both categories (less the held-out ones) ...
    assert recs[0]["counts"]["train"] + recs[0]["counts"]["holdout"] == 24
    cell_dir = tmp_path / "u" / "cells" / recs[0]["cell_key"]
    with (cell_dir / "categories" / "dark" / "calibration.csv").open() as f:
        held = {row["path"] for row in csv.DictReader(f)}
    fit_paths = sorted(p for c in ("dark", "light") for p in (tmp_path / "blobs" / c / "train").glob("*.png")
                       if str(p) not in held)
    assert len(fit_paths) == recs[0]["counts"]["train"]
    median = np.median(np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) for p in fit_paths]), axis=0)
    model = load_file(str(Path(recs[0]["artifact"]) / "model.safetensors"))
    np.testing.assert_allclose(model["median"], median)  # ... and is their median, as a reference computes it
    # ... and scored each category on its own test set, files in its own folder
    for rec in recs:
        with (cell_dir / "categories" / rec["category"] / "scores.csv").open() as f:
            paths = [row["path"] for row in csv.DictReader(f)]
        assert len(paths) == rec["counts"]["test"] == 8 and all(f"/{rec['category']}/" in p for p in paths)
    board = (tmp_path / "u" / "leaderboard.md").read_text()
    assert "example.median_distance (unified)" in board and "setting `unified`" in board

    again = adbench("run", "--resume", "--run-dir", str(tmp_path / "u"), env=env, cwd=tmp_path)
    assert again.returncode == 0 and "2 of 1" not in again.stdout and "1 of 1 cells already done" in again.stdout
