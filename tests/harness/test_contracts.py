"""The declared contracts: capabilities (iadbench.capabilities), the backbone a spec
declares for the protocol line, and the conformance kit (iadbench.testing) failing
each check on a detector built to break it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iadbench.capabilities import Exportable, OutOfFold, PretrainedBackbone, SplitRuntime, capabilities_of, implements
from iadbench.detector import Detector
from iadbench.plugins import Registry
from iadbench.report.protocol import protocol_line
from iadbench.testing import ConformanceWarning, check_detector, synthetic_images
from iadbench.types import DetectorSpec, Prediction


class Mean(Detector):
    """Distance to the mean good image: passes every check."""

    name = "t.mean"

    def __init__(self, input_size: int = 16, gain: float = 1.0):
        self.input_size = (input_size, input_size)
        self.gain = gain
        self.mean: torch.Tensor | None = None

    def fit(self, images, ctx):
        self.mean = torch.from_numpy(images.astype(np.float32)).mean(0)

    def predict(self, images):
        maps = (torch.from_numpy(images.astype(np.float32)) - self.mean).abs().mean(-1) * self.gain
        return Prediction(maps.flatten(1).amax(1).numpy(), maps.numpy())

    def state_tensors(self):
        return {"mean": self.mean}

    def load_state_tensors(self, tensors):
        self.mean = tensors["mean"]


class WrongMaps(Mean):
    name = "t.wrong_maps"

    def predict(self, images):
        pred = super().predict(images)
        return Prediction(pred.scores, pred.maps[:, ::2, ::2])


class Forgetful(Mean):
    name = "t.forgetful"

    def load_state_tensors(self, tensors):
        self.mean = tensors["mean"] * 0


class Noisy(Mean):
    name = "t.noisy"

    def fit(self, images, ctx):
        super().fit(images, ctx)
        self.mean = self.mean + float(np.random.default_rng().normal())  # ignores the seed


class Misnamed(Mean):
    name = "t.other_name"


class ShortOutOfFold(Mean):
    name = "t.short_oof"
    out_of_fold = "leave-one-out"

    def fit_out_of_fold(self, images, ctx):
        self.fit(images, ctx)
        return self.predict(images[:-1])


def spec(cls, name=None) -> DetectorSpec:
    return DetectorSpec(name or cls.name, cls)


def test_a_conforming_detector_passes_and_reports_what_it_checked():
    report = check_detector(spec(Mean))
    assert report.params == {"input_size": 16, "gain": 1.0}
    assert any("save/load" in p for p in report.passed) and any("seed" in p for p in report.passed)
    assert "unknown and mistyped params refused at plan time" in report.passed
    assert "out-of-fold: no shortcut declared" in report.skipped and report.warnings == []


@pytest.mark.parametrize(("cls", "message"), [
    (WrongMaps, r"t.wrong_maps: predict: maps have shape \(3, 8, 8\), expected \(3, 16, 16\)"),
    (Forgetful, "t.forgetful: save/load: scores differ after loading"),
    (Noisy, "t.noisy: determinism: two fits with seed 0 differ"),
    (ShortOutOfFold, r"t.short_oof: fit_out_of_fold: scores have shape \(7,\), expected \(8,\)"),
])
def test_each_broken_contract_fails_with_a_clear_message(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_detector(spec(cls))


def test_spec_name_plan_and_image_failures():
    with pytest.raises(AssertionError, match="calls itself 't.other_name'"):
        check_detector(spec(Misnamed, "t.misnamed"))
    with pytest.raises(AssertionError, match=r"t.mean: plan: .*parameter gain must be float, got 'x'"):
        check_detector(spec(Mean), {"gain": "x"})
    with pytest.raises(AssertionError, match=r"need uint8 \(N, 16, 16, 3\)"):
        check_detector(spec(Mean), images=np.zeros((6, 8, 8, 3), np.uint8))


def test_a_defect_scored_low_is_a_warning_not_a_failure():
    with pytest.warns(ConformanceWarning, match="the defective image scored"):
        report = check_detector(spec(Mean), {"gain": -1.0})
    assert report.warnings and report.passed


def test_caller_images_and_size():
    report = check_detector(spec(Mean), size=24, images=synthetic_images(6, (24, 24), seed=3))
    assert report.params["input_size"] == 24


def test_capabilities_count_only_what_a_detector_implements():
    mean, oof = Mean(), ShortOutOfFold()
    assert isinstance(mean, Exportable)  # the base's stub satisfies the bare protocol...
    assert not implements(mean, Exportable) and not mean.exportable  # ...but is no ability
    assert implements(oof, OutOfFold) and capabilities_of(oof) == ["OutOfFold"]
    assert not implements(Mean(), PretrainedBackbone) and not mean.has_backbone

    class Graph(Mean):
        def export_module(self):
            return torch.nn.Identity()

        def export_front(self):
            return torch.nn.Identity()

    assert implements(Graph(), Exportable) and Graph().exportable and not implements(Graph(), SplitRuntime)


def test_protocol_line_reads_the_declared_backbone_param():
    class Encoded(Mean):
        def __init__(self, input_size: int = 16, encoder: str = "resnet18", checkpoint: str | None = None):
            self.input_size = (input_size, input_size)

    registry = Registry(detectors={
        "enc": DetectorSpec("enc", Encoded, backbone_param="encoder", weights_param="checkpoint"),
        "plain": DetectorSpec("plain", Encoded),  # declares no backbone: its params are not guessed at
    })

    def row(name, params):
        return {"detector": name, "detector_name": name, "params": params, "input_size": [16, 16], "settings": {}}

    line = protocol_line([row("enc", {"encoder": "resnet18", "checkpoint": "/w/r18.pth"})], registry)
    assert line.startswith("Protocol: backbone resnet18 with weights from r18.pth;")
    line = protocol_line([row("plain", {"encoder": "resnet18"})], registry)
    assert line.startswith("Protocol: no pretrained backbone;")
    # A record of a detector no plugin registers any more: the harness's own param names.
    line = protocol_line([row("gone", {"backbone": "resnet18", "weights": None})], registry)
    assert line.startswith("Protocol: backbone resnet18 with torchvision ImageNet weights;")
