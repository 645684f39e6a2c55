"""`adbench run` with no detector named runs DEFAULT_DETECTORS (those installed and
available), `--all` every available detector but the opt-in ones; both say what they
left out. keep_models is a plan setting outside the cell keys."""

from __future__ import annotations

import pytest

from iadbench.cli.run import build_plan
from iadbench.errors import InputError
from iadbench.plugins import Registry
from iadbench.runner import plan as plan_mod
from iadbench.runner.plan import DatasetEntry, DetectorEntry, Plan, expand, left_out, load_plan_file
from iadbench.types import DatasetSpec, DetectorSpec


@pytest.fixture
def registry(monkeypatch):
    reg = Registry()
    for name in ("fast", "also_fast", "slow_extra", "crawl"):
        reg.detectors[name] = DetectorSpec(name, factory=dict, params={"k": 1},
                                           tags=("opt-in",) if name == "crawl" else ())
    reg.detectors["locked"] = DetectorSpec("locked", factory=dict, available=False, unavailable_reason="no weights")
    reg.datasets["ds"] = DatasetSpec("ds", factory=dict)
    # "missing" is a default whose plugin is not installed; "locked" one that is unavailable
    monkeypatch.setattr(plan_mod, "DEFAULT_DETECTORS", ("fast", "missing", "locked", "also_fast"))
    return reg


def cats(entry):
    return ["c1", "c2"]


def test_no_detector_named_runs_the_available_defaults_in_their_order(registry):
    plan = Plan([], [DatasetEntry("ds")])
    assert plan.default_grid
    cells = expand(plan, registry, cats)
    assert [c.detector for c in cells[:2]] == ["fast", "also_fast"] and len(cells) == 4
    assert left_out(plan, registry, cells) == [("crawl", "opt-in (slow): -d crawl"), ("slow_extra", "not in the default set")]


def test_all_runs_every_available_detector_but_opt_in(registry):
    plan = Plan([], [DatasetEntry("ds")], all_detectors=True)
    cells = expand(plan, registry, cats)
    assert {c.detector for c in cells} == {"fast", "also_fast", "slow_extra"}
    assert left_out(plan, registry, cells) == [("crawl", "opt-in (slow): -d crawl")]


def test_named_detectors_leave_nothing_out(registry):
    plan = Plan([DetectorEntry("slow_extra")], [DatasetEntry("ds")])
    assert not plan.default_grid
    cells = expand(plan, registry, cats)
    assert {c.detector for c in cells} == {"slow_extra"} and left_out(plan, registry, cells) == []


def test_no_available_default_is_a_clear_error(registry, monkeypatch):
    monkeypatch.setattr(plan_mod, "DEFAULT_DETECTORS", ("missing", "locked"))
    with pytest.raises(InputError, match="no available detector"):
        expand(Plan([], [DatasetEntry("ds")]), registry, cats)


def test_the_shipped_defaults_are_registered_detectors():
    """Every name in DEFAULT_DETECTORS is one the built-in plugins register (a typo would
    silently shrink `make run`)."""
    from iadbench.plugins import load_registry

    known = load_registry().detectors
    assert plan_mod.DEFAULT_DETECTORS and set(plan_mod.DEFAULT_DETECTORS) <= set(known)
    assert not any("opt-in" in known[n].tags for n in plan_mod.DEFAULT_DETECTORS)


def test_keep_models_is_a_plan_setting_outside_the_keys(registry, tmp_path):
    base = expand(Plan([DetectorEntry("fast")], [DatasetEntry("ds")]), registry, cats)
    none = expand(Plan([DetectorEntry("fast")], [DatasetEntry("ds")], keep_models="none"), registry, cats)
    assert [c.key for c in base] == [c.key for c in none]
    assert Plan([], []).keep_models == "best"
    assert Plan.from_json({"detectors": [], "datasets": []}).keep_models == "all"  # runs from before kept all
    plan_file = tmp_path / "p.toml"
    plan_file.write_text('[run]\nkeep_models = "none"\n[[detector]]\nname = "fast"\n')
    assert load_plan_file(plan_file).keep_models == "none"
    plan_file.write_text('[run]\nkeep_models = "most"\n')
    with pytest.raises(InputError, match="keep_models 'most' is not one of all, best, none"):
        load_plan_file(plan_file)


def test_set_on_the_default_set_asks_for_the_detector_by_name():
    with pytest.raises(InputError, match=r"not named with --detector: padim \(add -d NAME\)"):
        build_plan([], [], [], [], False, None, [], ["padim.epsilon=0.1"], None, None)


def test_the_run_footer_names_what_was_left_out_and_the_models_kept(registry):
    from rich.console import Console

    from iadbench.cli.runs import print_run_footer
    from iadbench.results.housekeeping import Pruned
    from iadbench.runner.runner import RunOutcome

    plan = Plan([], [DatasetEntry("ds")])
    cells = expand(plan, registry, cats)
    console = Console(width=200, record=True)
    outcome = RunOutcome(run_dir=None, cells=cells, skipped=0, models=Pruned("best", ["k1"], ["k2", "k3"], 300 << 20))
    print_run_footer(plan, registry, outcome, console)
    text = console.export_text()
    assert "left out: 1 available detector(s) not in the default set (add -d NAME, or --all for every one): slow_extra" in text
    assert "left out: crawl (opt-in, slow: runs only when named, -d NAME)" in text
    assert "not available here: locked (no weights)" in text  # with why, e.g. an extra to install
    assert "models: kept 1, removed 2 (300 MB) (--keep-models best" in text
    console = Console(width=200, record=True)
    outcome.models = Pruned("all", ["k1", "k2", "k3"])
    print_run_footer(Plan([DetectorEntry("fast")], [DatasetEntry("ds")]), registry, outcome, console)
    assert console.export_text().strip() == ""  # named detectors, every model kept: nothing to add
