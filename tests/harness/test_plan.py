"""Plan expansion: cell keys, parameter checks, unavailable detectors, plan files."""

from __future__ import annotations

import pytest

from iadbench.errors import InputError
from iadbench.plugins import Registry
from iadbench.runner.plan import DatasetEntry, DetectorEntry, Plan, expand, load_plan_file, parse_assignments
from iadbench.types import DatasetSpec, DetectorSpec


@pytest.fixture
def registry():
    reg = Registry()
    reg.detectors["a"] = DetectorSpec("a", factory=dict, params={"k": 1, "size": 64})
    reg.detectors["locked"] = DetectorSpec("locked", factory=dict, params={"weights": None},
                                           available=False, unavailable_reason="needs a weights file")
    reg.datasets["ds"] = DatasetSpec("ds", factory=dict)
    return reg


def cats(entry):
    return ["c1", "c2"]


def test_keys_are_stable_and_follow_what_determines_a_result(registry):
    plan = Plan([DetectorEntry("a")], [DatasetEntry("ds")], seeds=[0, 1])
    cells = expand(plan, registry, cats)
    assert len(cells) == 4 and len({c.key for c in cells}) == 4
    assert [c.key for c in expand(plan, registry, cats)] == [c.key for c in cells]
    assert cells[0].params == {"k": 1, "size": 64}  # defaults resolved into the cell

    changed = expand(Plan([DetectorEntry("a", {"k": 2})], [DatasetEntry("ds")], seeds=[0, 1]), registry, cats)
    assert not {c.key for c in changed} & {c.key for c in cells}
    relabelled = expand(Plan([DetectorEntry("a", label="other")], [DatasetEntry("ds")], seeds=[0, 1]), registry, cats)
    assert [c.key for c in relabelled] == [c.key for c in cells]  # a label is display only
    timed_onnx = expand(Plan([DetectorEntry("a")], [DatasetEntry("ds")], seeds=[0, 1], runtime="onnx"), registry, cats)
    assert [c.key for c in timed_onnx] == [c.key for c in cells]  # latency's runtime changes cost only
    assert {c.runtime for c in timed_onnx} == {"onnx"} and {c.runtime for c in cells} == {"eager"}
    plan.settings.threshold_rule = "sigma:3"
    assert not {c.key for c in expand(plan, registry, cats)} & {c.key for c in cells}


def test_parameter_and_name_errors(registry):
    with pytest.raises(InputError, match=r"unknown parameter\(s\) nope for detector 'a' \(known: k, size\)"):
        expand(Plan([DetectorEntry("a", {"nope": 1})], [DatasetEntry("ds")]), registry, cats)
    with pytest.raises(InputError, match="unknown detector 'b'"):
        expand(Plan([DetectorEntry("b")], [DatasetEntry("ds")]), registry, cats)
    with pytest.raises(InputError, match="listed twice"):
        expand(Plan([DetectorEntry("a"), DetectorEntry("a")], [DatasetEntry("ds")]), registry, cats)
    plan = Plan([DetectorEntry("a")], [DatasetEntry("ds")])
    plan.settings.threshold_rule = "quantil:0.9"
    with pytest.raises(InputError, match="quantil"):
        expand(plan, registry, cats)
    for rule in ("fpr:0", "fpr:1.5", "fpr:abc"):  # a false-alarm target outside (0, 1) fails before any cell
        plan.settings.threshold_rule = rule
        with pytest.raises(InputError, match=rule):
            expand(plan, registry, cats)
    plan.settings.threshold_rule, plan.settings.calibration = "fpr:0.01", "loo"
    with pytest.raises(InputError, match="calibration 'loo' is not one of auto, holdout, kfold"):
        expand(plan, registry, cats)
    with pytest.raises(InputError, match="NAME.KEY=VALUE"):
        parse_assignments(["a=1"], "--set")
    assert parse_assignments(["a.k=[1, 2]", "a.s=text"], "--set") == {"a": {"k": [1, 2], "s": "text"}}


def test_unavailable_detector_needs_explicit_params_and_all_skips_it(registry):
    with pytest.raises(InputError, match="unavailable: needs a weights file"):
        expand(Plan([DetectorEntry("locked")], [DatasetEntry("ds")]), registry, cats)
    cells = expand(Plan([DetectorEntry("locked", {"weights": "/w.pt"})], [DatasetEntry("ds")]), registry, cats)
    assert cells[0].params == {"weights": "/w.pt"}
    every = expand(Plan([], [DatasetEntry("ds")], all_detectors=True), registry, cats)
    assert {c.detector for c in every} == {"a"}


def test_plan_file_resolves_relative_paths(tmp_path, registry):
    plan_file = tmp_path / "p.toml"
    plan_file.write_text(
        '[run]\nseeds = [3]\ndata_root = "data"\nthreshold_rule = "max"\n'
        '[[detector]]\nname = "a"\nparams = { k = 5 }\n'
        '[[dataset]]\nname = "ds"\ncategories = ["c2"]\n'
    )
    plan = load_plan_file(plan_file)
    assert plan.data_root == str(tmp_path / "data") and plan.seeds == [3]
    cells = expand(plan, registry, cats)
    assert [(c.category, c.seed, c.params["k"], c.settings["threshold_rule"]) for c in cells] == [("c2", 3, 5, "max")]
    plan_file.write_text('[run]\nbogus = 1\n')
    with pytest.raises(InputError, match="unknown \\[run\\] keys: bogus"):
        load_plan_file(plan_file)
