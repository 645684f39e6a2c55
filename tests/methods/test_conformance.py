"""Every built-in detector passes the conformance kit (iadbench.testing) at small
params; anomalib's adapter through one representative model where it is installed."""

from __future__ import annotations

import warnings

import pytest

from iadbench.plugins import get_registry
from iadbench.testing import check_detector

#: Small params: a few seconds each. Export (ONNX tracing, seconds per graph) runs once,
#: on PatchCore: its split runtime covers the front graph and predict_from_front too.
BUILT_IN = {
    "pixel_gaussian": {"input_size": 32},
    "padim": {"input_size": 64},
    "patchcore": {"input_size": 64},
    "feature_ae": {"input_size": 64, "epochs": 2, "batch": 4},
    "conv_ae": {"input_size": 32, "epochs": 2, "batch": 4},
    "efficientad": {"input_size": 64, "steps": 3},
    "mixed": {"input_size": 64, "steps": 3},  # the kit gives no labelled defects: the K = 0 path
}
EXPORTED = {"patchcore"}


def registry():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a broken plugin elsewhere is not this test's business
        return get_registry()


def test_every_built_in_detector_is_covered():
    ours = {name for name, spec in registry().detectors.items() if not name.startswith("anomalib.")}
    assert ours == set(BUILT_IN)


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_built_in_detector_conforms(name):
    report = check_detector(name, BUILT_IN[name], export=name in EXPORTED, registry=registry())
    assert len(report.passed) >= 5
    if name in EXPORTED:
        assert "the ONNX graph scores as eager predict" in report.passed or "export: onnxruntime not installed" in report.skipped


def test_anomalib_adapter_conforms():
    from iadbench_anomalib.plugin import missing_reason

    if missing_reason():
        pytest.skip(missing_reason())
    report = check_detector("anomalib.padim", {"input_size": 64, "batch_size": 4}, registry=registry())
    assert report.params["backbone"] == "tf_efficientnet_lite0"
