"""compute_metrics and the registered metrics plugin."""

import math
import warnings

import numpy as np
import pytest

from iadbench.errors import UndefinedMetric
from iadbench.metrics import compute_metrics
from iadbench.plugins import load_registry
from iadbench.types import EvalData, MetricSpec

NAMES = {
    "image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "aupro",
    "precision", "recall", "f1", "accuracy", "fpr", "pg5", "pb5",
}
# Pixel metrics of one dataset's protocol, undefined on the cells below (no pixel
# threshold, no regions); their own tests are tests/metrics/test_spro_segf1.py.
PROTOCOL_METRICS = {"auspro", "seg_f1"}
# AUPIMO needs 100,000 good pixels, far more than these cells' (tests/metrics/test_aupimo.py).
PROTOCOL_METRICS |= {"aupimo"}


@pytest.fixture(scope="module")
def registry():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # other built-in plugins may not exist yet
        return load_registry()


def make_data(labels, with_masks=True, threshold=0.5, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    masks = np.zeros((labels.size, 16, 16), bool)
    for i in np.flatnonzero(labels):
        masks[i, 4:9, 5:10] = True
    maps = (rng.random(masks.shape) * 0.6 + masks * 0.5).astype(np.float32)
    scores = maps.reshape(labels.size, -1).max(axis=1) - 0.3 + rng.random(labels.size) * 0.1
    return EvalData(
        labels=labels,
        scores=scores,
        maps=maps,
        masks=masks if with_masks else None,
        threshold=threshold,
        defect_types=["bad" if y else "good" for y in labels],
    )


def test_plugin_registers_the_eleven_metrics(registry):
    metrics = {n: s for n, s in registry.metrics.items() if s.plugin == "metrics"}
    assert set(metrics) - PROTOCOL_METRICS == NAMES and PROTOCOL_METRICS <= set(metrics)
    assert {n for n, s in metrics.items() if s.headline} == {"image_auroc", "pixel_auroc", "aupro", "f1"}
    assert {n for n, s in metrics.items() if s.level == "pixel"} - PROTOCOL_METRICS == {"pixel_auroc", "pixel_ap", "aupro"}
    assert all(s.higher_is_better == (n != "fpr") and s.description for n, s in metrics.items())
    assert "oracle" in metrics["image_f1_max"].description
    assert "test set" in metrics["image_f1_max"].description
    assert "0.3" in metrics["aupro"].description
    for name in ("precision", "recall", "f1", "accuracy", "fpr"):
        assert "calibration scores" in metrics[name].description and "never the test set" in metrics[name].description


def test_all_metrics_defined_on_a_normal_cell(registry):
    specs = {n: registry.metrics[n] for n in NAMES}
    values, reasons = compute_metrics(make_data([0, 0, 0, 1, 1, 1]), specs)
    assert set(values) == NAMES and reasons == {}
    assert all(0.0 <= v <= 1.0 for v in values.values())
    assert values["image_auroc"] == 1.0 and values["aupro"] > 0.9


def test_undefined_metrics_become_nan_with_reasons(registry):
    specs = {n: registry.metrics[n] for n in NAMES}
    values, reasons = compute_metrics(make_data([0, 0, 0], with_masks=False), specs)
    assert set(reasons) == NAMES - {"accuracy", "fpr"}  # both defined on good images alone
    assert all(math.isnan(values[n]) for n in reasons)
    assert reasons["image_auroc"] == "no defective test image"
    assert "no masks" in reasons["aupro"]
    assert values["accuracy"] == values["accuracy"]  # defined on good images alone


def test_failing_metric_does_not_lose_the_others():
    def boom(data):
        raise RuntimeError("boom")

    def undefined(data):
        raise UndefinedMetric("not today")

    specs = {
        "boom": MetricSpec("boom", boom),
        "inf": MetricSpec("inf", lambda data: math.inf),
        "undefined": MetricSpec("undefined", undefined),
        "count": MetricSpec("count", lambda data: len(data.labels)),
    }
    values, reasons = compute_metrics(make_data([0, 1]), specs)
    assert reasons == {
        "boom": "error: RuntimeError: boom",
        "inf": "metric returned inf",
        "undefined": "not today",
    }
    assert values["count"] == 2.0
    assert all(math.isnan(values[n]) for n in reasons)


def test_shape_mismatch_is_recorded_as_error(registry):
    data = make_data([0, 1])
    data.masks = data.masks[:, :8]
    values, reasons = compute_metrics(data, {"pixel_auroc": registry.metrics["pixel_auroc"]})
    assert math.isnan(values["pixel_auroc"])
    assert reasons["pixel_auroc"].startswith("error: ValueError")


def test_threshold_note_becomes_the_reason_of_threshold_metrics_only():
    def needs(data):
        if math.isnan(data.threshold):
            raise UndefinedMetric("threshold is NaN")
        return 1.0

    def undefined(data):
        raise UndefinedMetric("no masks")

    specs = {
        "at_threshold": MetricSpec("at_threshold", needs, needs_threshold=True),
        "ranking": MetricSpec("ranking", undefined),
        "count": MetricSpec("count", lambda data: len(data.labels), needs_threshold=True),
    }
    data = make_data([0, 1], threshold=math.nan)
    values, reasons = compute_metrics(data, specs, threshold_note="3 calibration images are too few")
    assert reasons == {"at_threshold": "no threshold: 3 calibration images are too few", "ranking": "no masks"}
    assert values["count"] == 2.0  # a value stays a value
    assert compute_metrics(data, specs)[1]["at_threshold"] == "threshold is NaN"
