"""Mixed supervision's protocol (--defects-in-train): which labelled defects move into
training, the test set that remains, who sees them, and what the record and the
leaderboard say."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from iadbench.errors import InputError
from iadbench.model.defects import parse_defect_counts, take_defects
from iadbench.types import Sample, Split
from testkit import adbench, make_plugin_site, plugin_env


def _split(n_good=6, n_bad=10, train_defective=0) -> Split:
    test = [Sample(Path(f"/d/good{i:02d}.png")) for i in range(n_good)]
    test += [Sample(Path(f"/d/bad{i:02d}.png"), 1, "scratch", Path(f"/d/bad{i:02d}_mask.png")) for i in range(n_bad)]
    own = [Sample(Path(f"/d/train_bad{i:02d}.png"), 1, "defect") for i in range(train_defective)]
    return Split("ds", "cat", [Sample(Path(f"/d/train{i}.png")) for i in range(8)], test, train_defective=own)


def test_defects_move_from_test_disjoint_nested_and_seeded():
    split = _split()
    scored5, chosen5, info5 = take_defects(split, 5, reserve=7, seed=0)
    scored1, chosen1, info1 = take_defects(split, 1, reserve=7, seed=0)
    scored0, chosen0, _ = take_defects(split, 0, reserve=7, seed=0)
    # one test set for every K of the sweep: the reserve's 7 are never scored
    assert [s.path for s in scored5.test] == [s.path for s in scored1.test] == [s.path for s in scored0.test]
    assert len(scored5.test) == 16 - 7 and sum(s.is_anomalous for s in scored5.test) == 3
    removed = set(info5["test_removed"])
    assert len(removed) == 7 and not removed & {str(s.path) for s in scored5.test}
    assert {str(s.path) for s in chosen5} <= removed and chosen0 == []
    assert chosen5[:1] == chosen1  # nested: K=1 is part of K=5
    assert all(s.is_anomalous for s in chosen5) and info5["masks"] == 5 and info5["source"] == "test"
    # the same seed draws the same images; another seed others; the split is not touched
    assert take_defects(split, 5, 7, seed=0)[1] == chosen5
    assert take_defects(split, 5, 7, seed=1)[1] != chosen5
    assert len(split.test) == 16


def test_a_datasets_own_defects_leave_its_test_set_whole():
    split = _split(train_defective=4)
    scored, chosen, info = take_defects(split, 3, reserve=4, seed=0)
    assert scored.test == split.test and info["test_removed"] == [] and info["source"] == "dataset"
    assert {s.path for s in chosen} <= {s.path for s in split.train_defective} and len(chosen) == 3


@pytest.mark.parametrize(("k", "reserve", "message"), [
    (10, 10, "has 10 defective test images; at most 9 can move"),
    (2, 1, "must be in [0, reserve=1]"),
])
def test_too_many_defects_is_one_line(k, reserve, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        take_defects(_split(), k, reserve, seed=0)


@pytest.mark.parametrize("text", ["-1", "two", "1,,3"])
def test_bad_counts_are_refused(text):
    with pytest.raises(InputError, match="--defects-in-train"):
        parse_defect_counts(text)


assert parse_defect_counts("0, 5,1,5") == [0, 5, 1]


# A detector that learns from labels and writes down what it was given.
LABELLED = '''
import numpy as np, torch
from iadbench.api import Detector, DetectorSpec, Prediction, hookimpl

class Counting(Detector):
    name = "labelled.counting"
    supervision = "mixed"

    def __init__(self, input_size: int = 32):
        self.input_size = (input_size, input_size)
        self.median = None
        self.seen = {"images": 0, "masks": 0}

    def fit(self, images, ctx):
        self.median = torch.from_numpy(np.median(images.astype(np.float32), axis=0))
        if ctx.defects is not None:
            self.seen = {"images": len(ctx.defects), "masks": int(ctx.defects.has_mask.sum()),
                         "mask_pixels": int(ctx.defects.masks.sum())}

    def predict(self, images):
        diff = (torch.from_numpy(images.astype(np.float32)) - self.median).abs().mean(-1)
        return Prediction(diff.flatten(1).amax(1).numpy(), diff.numpy())

    def state_tensors(self):
        return {"median": self.median}

    def load_state_tensors(self, tensors):
        self.median = tensors["median"]

    def extra_config(self):
        return {"seen": self.seen}

@hookimpl
def register_detectors(register):
    register(DetectorSpec(name=Counting.name, factory=Counting, version="1"))
'''

PLAN = """
[run]
seeds = [0]
keep_models = "all"
defects_in_train = [0, 1, 3]
[[detector]]
name = "example.median_distance"
[[detector]]
name = "labelled.counting"
[[dataset]]
name = "example.blobs"
categories = ["dark"]
path = "{blobs}"
params = {{ n_test = 16 }}
"""


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]


def _scores(rec: dict) -> dict[str, float]:
    with (Path(rec["artifact"]).parent / "scores.csv").open() as f:
        return {row["path"]: float(row["score"]) for row in csv.DictReader(f)}


@pytest.mark.slow
def test_a_sweep_runs_as_one_grid_on_one_test_set(example_site, tmp_path):
    site = make_plugin_site(tmp_path, "labelled", LABELLED)
    env = plugin_env(example_site, site, allow="example,labelled,metrics", IADBENCH_CACHE=str(tmp_path / "cache"))
    blobs = tmp_path / "blobs"
    (tmp_path / "plan.toml").write_text(PLAN.format(blobs=blobs))

    sweep = adbench("run", "--plan", str(tmp_path / "plan.toml"), "--run-dir", str(tmp_path / "sweep"),
                    env=env, cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    recs = _records(tmp_path / "sweep")
    # the unsupervised detector runs once, the learner once per K
    assert sorted((r["detector"], r["supervision"]["k"]) for r in recs) == [
        ("example.median_distance", 0), ("labelled.counting", 0), ("labelled.counting", 1), ("labelled.counting", 3)]
    removed = {tuple(r["supervision"]["test_removed"]) for r in recs}
    assert len(removed) == 1 and len(next(iter(removed))) == 3  # one reserve for every row
    for rec in recs:
        assert rec["status"] == "ok" and rec["schema_version"] == 3
        assert rec["counts"]["test"] == 13 and rec["counts"]["test_anomalous"] == 5
        assert not set(rec["supervision"]["test_removed"]) & set(_scores(rec))  # no moved image is scored
        config = json.loads((Path(rec["artifact"]) / "config.json").read_text())
        sup = rec["supervision"]
        if rec["detector"] == "labelled.counting":
            assert sup["learns"] is True and len(sup["images"]) == sup["k"] == sup["masks"]
            assert set(sup["images"]) <= set(sup["test_removed"])
            seen = config["extra"]["seen"]
            assert seen["images"] == seen["masks"] == sup["k"]
            assert (seen.get("mask_pixels", 0) > 0) == (sup["k"] > 0)  # the blobs' masks arrived
        else:
            assert sup["learns"] is False and sup["images"] == []
    by_k = {r["supervision"]["k"]: r["supervision"]["images"] for r in recs if r["detector"] == "labelled.counting"}
    assert by_k[1] == by_k[3][:1]

    # The unsupervised detector scores exactly as in a plain run, image for image.
    plain = adbench("run", "-d", "example.median_distance", "--dataset", "example.blobs", "-c", "dark",
                    "--dataset-path", f"example.blobs={blobs}", "--run-dir", str(tmp_path / "plain"),
                    "--keep-models", "all", env=env, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    (plain_rec,) = _records(tmp_path / "plain")
    assert plain_rec["supervision"] is None
    swept = _scores(next(r for r in recs if r["detector"] == "example.median_distance"))
    plain_scores = _scores(plain_rec)  # the same 16 images on disk: the plain run scores all of them
    assert plain_rec["counts"]["test"] == 16 and len(swept) == 13
    assert all(plain_scores[path] == score for path, score in swept.items())
    # more defects than a category has: refused before a run folder exists
    too_many = adbench("run", "-d", "example.median_distance", "--dataset", "example.blobs", "--dataset-path",
                       f"example.blobs={blobs}", "--defects-in-train", "8", "--run-dir", str(tmp_path / "no"),
                       env=env, cwd=tmp_path)
    assert too_many.returncode == 2, too_many.stderr
    assert "example.blobs:dark has 8 defective test images; at most 7 can move" in too_many.stderr
    assert len(too_many.stderr.strip().splitlines()) == 1 and not (tmp_path / "no").exists()

    board = (tmp_path / "sweep" / "leaderboard.md").read_text()
    assert "## What labelled defects buy" in board
    section = board.split("## What labelled defects buy")[1]
    assert "| K=0 " in section and "| K=3 " in section and "labelled.counting" in section
    assert "labelled.counting K=3" in board  # each K is its own row in the metric tables
    page = (tmp_path / "sweep" / "report.html").read_text()
    assert "id='defects-sweep'" in page and list((tmp_path / "sweep").glob("report_files/sweep-*.png"))
