"""``--training published``: trained detectors at their published length (explicit
params win, an epochs length lifts a step cap), and the CPU refusal with an estimate
scaled from recorded fits, or saying there is none to scale from."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from iadbench.errors import InputError
from iadbench.plugins import get_registry
from iadbench.results.record import build_record
from iadbench.results.store import RunStore
from iadbench.runner.plan import DatasetEntry, DetectorEntry, Plan, expand
from iadbench.runner.training import estimate_published, published_params, refuse_on_cpu
from testkit import cli

PAPER_STEPS = 70_000  # EfficientAD, Batzner et al. (the spec's published_training)


def _cells(training: str, **params):
    plan = Plan(detectors=[DetectorEntry("efficientad", params), DetectorEntry("pixel_gaussian")],
                datasets=[DatasetEntry("factory", ["bottle"])], device="cpu", training=training)
    return expand(plan, get_registry())


def test_published_sets_the_trained_detectors_length_and_leaves_the_rest():
    default, published = _cells("default"), _cells("published")
    by_name = {c.detector: c for c in published}
    assert by_name["efficientad"].params["steps"] == PAPER_STEPS
    assert {c.detector: c.params["steps"] for c in default if c.detector == "efficientad"} != {"efficientad": PAPER_STEPS}
    gaussian = [c for c in default if c.detector == "pixel_gaussian"]
    assert by_name["pixel_gaussian"].key == gaussian[0].key  # one-pass: untouched
    assert {c.key for c in default} != {c.key for c in published}
    # an explicit length wins over the published one
    (explicit, _) = _cells("published", steps=5)
    assert explicit.params["steps"] == 5


def test_an_epochs_length_lifts_a_step_cap_unless_the_user_set_one():
    spec = SimpleNamespace(published_training={"param": "max_epochs", "value": 100, "unit": "epochs"},
                           params={"max_epochs": 1, "max_steps": 20})
    assert published_params(spec, {}) == {"max_epochs": 100, "max_steps": None}
    assert published_params(spec, {"max_steps": 50}) == {"max_epochs": 100}
    assert published_params(SimpleNamespace(published_training=None, params={}), {}) == {}


def _recorded_run(results: Path, fit_s: float, used: int) -> None:
    store = RunStore(results / "earlier")
    store.create({"run_id": "earlier", "plan": {}, "cells": []})
    identity = {"key": "k1", "detector": "efficientad", "detector_name": "efficientad", "dataset": "factory",
                "category": "bottle", "seed": 0}
    store.append(build_record(identity, {"status": "ok", "cost": {"fit_s": fit_s},
                                         "training": {"unit": "steps", "used": used, "published": PAPER_STEPS}}))


def test_the_cpu_refusal_scales_recorded_fits_to_the_published_length(tmp_path):
    cells = [c for c in _cells("published") if c.detector == "efficientad"]
    registry = get_registry()
    with pytest.raises(InputError) as err:
        refuse_on_cpu(cells, registry, tmp_path)
    message = str(err.value)
    assert "unknown" in message and "no recorded fit of efficientad" in message and "--force" in message
    _recorded_run(tmp_path, fit_s=400.0, used=1000)
    (estimate,) = estimate_published(cells, registry, tmp_path)
    assert estimate.seconds == pytest.approx(400.0 / 1000 * PAPER_STEPS)  # 0.4 s a step, 70,000 steps
    with pytest.raises(InputError) as err:
        refuse_on_cpu(cells, registry, tmp_path)
    message = str(err.value)
    assert "about 7.8 h of fitting" in message and "\n" not in message


def test_adbench_run_published_on_the_cpu_exits_2_before_the_run_folder(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "r"
    code = cli("run", "-d", "efficientad", "--category", "bottle", "--device", "cpu", "--training", "published",
               "--run-dir", str(run_dir))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--training published on the CPU" in err and len(err.splitlines()) == 1
    assert not run_dir.exists()
    assert cli("run", "-d", "efficientad", "--training", "longest", "--run-dir", str(run_dir)) == 2
    assert "'longest' is not one of default, published" in capsys.readouterr().err
