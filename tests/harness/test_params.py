"""Declared detector params: the factory's signature is the truth (iadbench.params),
the Detector base records its constructor's arguments, --set values are checked and
coerced against the annotations at plan time."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from iadbench.artifacts import load_detector
from iadbench.detector import Detector
from iadbench.errors import InputError, PluginError
from iadbench.plugins import Registry, load_registry
from iadbench.runner.plan import DatasetEntry, DetectorEntry, Plan, expand
from iadbench.types import DatasetSpec, DetectorSpec, Prediction


class Flat(Detector):
    """Typed params, no super().__init__ call: the base records them."""

    name = "t.flat"

    def __init__(self, input_size: int = 16, sigma: float = 2.0, layers: Sequence[str] | None = None,
                 mode: str = "fast", smooth: bool = False):
        self.input_size = (input_size, input_size)
        self.level = None

    def fit(self, images, ctx):
        self.level = torch.tensor(float(images.mean()))

    def predict(self, images):
        maps = np.abs(images.astype(np.float32).mean(-1) - float(self.level))
        return Prediction(maps.reshape(len(maps), -1).max(1), maps)

    def state_tensors(self):
        return {"level": self.level}

    def load_state_tensors(self, tensors):
        self.level = tensors["level"]


class Legacy(Flat):
    """The style before: resolved values passed on explicitly still win."""

    name = "t.legacy"

    def __init__(self, input_size: int = 16, layers: Sequence[str] | None = None):
        super().__init__(input_size=input_size)
        Detector.__init__(self, input_size=input_size, layers=list(layers or ["a", "b"]))


class Resolving(Flat):
    name = "t.resolving"

    def __init__(self, input_size: int = 16, layers: Sequence[str] | None = None, **extra):
        super().__init__(input_size=input_size)
        self.params.update(layers=list(layers or ["a"]))


def registry_with(*specs: DetectorSpec) -> Registry:
    return Registry(detectors={s.name: s for s in specs}, datasets={"ds": DatasetSpec("ds", factory=dict)})


def cells(registry: Registry, name: str, params: dict) -> list:
    return expand(Plan([DetectorEntry(name, params)], [DatasetEntry("ds")]), registry, lambda e: ["c"])


def test_omitted_params_are_the_signature_defaults():
    spec = DetectorSpec("t.flat", Flat)
    assert spec.params == {"input_size": 16, "sigma": 2.0, "layers": None, "mode": "fast", "smooth": False}
    assert isinstance(spec.params["sigma"], float)
    variant = DetectorSpec("t.flat", functools.partial(Flat, sigma=4.0))  # a variant's defaults travel with it
    assert variant.params["sigma"] == 4.0


@pytest.mark.parametrize(("params", "message"), [
    ({"sigma": 3.0}, r"param 'sigma' defaults to 3\.0 in the spec but to 2\.0 in Flat's signature"),
    ({"smooth": 0}, r"param 'smooth' defaults to 0 in the spec but to False"),
    ({"nope": 1}, r"param 'nope' is not a parameter of Flat"),
])
def test_a_spec_that_disagrees_with_its_signature_is_refused(params, message):
    with pytest.raises(PluginError, match=message):
        DetectorSpec("t.flat", Flat, params=params)


def test_spec_checks_required_params_kwargs_factories_and_declarations():
    def needs_path(path: str, size: int = 8):
        return None

    with pytest.raises(PluginError, match="parameter.s. path of .*needs_path have no default"):
        DetectorSpec("t.path", needs_path)
    assert DetectorSpec("t.path", needs_path, params={"path": "", "size": 8}).params["path"] == ""
    # A **kwargs factory declares nothing itself: its spec's params are the truth.
    assert DetectorSpec("t.kw", lambda **p: None, params={"anything": 1}).params == {"anything": 1}
    assert DetectorSpec("t.flat", Flat, params={"input_size": 16.0}).params == {"input_size": 16.0}  # 16 == 16.0
    with pytest.raises(PluginError, match="backbone_param 'backbone' is not one of its params"):
        DetectorSpec("t.flat", Flat, backbone_param="backbone")
    assert DetectorSpec("t.flat", Flat, memory_mb=512).memory_mb == 512
    with pytest.raises(PluginError, match="memory_mb must be a positive integer"):
        DetectorSpec("t.flat", Flat, memory_mb="lots")


def test_a_plugin_registering_a_bad_spec_is_broken_with_a_one_line_reason():
    class BadPlugin:
        @staticmethod
        def register_detectors(register):
            register(DetectorSpec("t.flat", Flat, params={"sigma": 9.0}))

    from iadbench.hookspecs import hookimpl

    BadPlugin.register_detectors = hookimpl(BadPlugin.register_detectors)
    with pytest.warns(UserWarning, match="broken"):
        registry = load_registry(extra_plugins={"bad": BadPlugin})
    info = registry.plugins["bad"]
    assert info.status == "broken" and "t.flat" not in registry.detectors
    assert "param 'sigma' defaults to 9.0" in info.error and "\n" not in info.error


def test_the_base_records_constructor_arguments():
    assert Flat().params == {"input_size": 16, "sigma": 2.0, "layers": None, "mode": "fast", "smooth": False}
    assert Flat(8, sigma=1.5).params["input_size"] == 8 and Flat(8, sigma=1.5).params["sigma"] == 1.5
    assert Legacy(layers=None).params == {"input_size": 16, "layers": ["a", "b"]}  # explicit params win
    assert Resolving(extra_knob=3).params == {"input_size": 16, "layers": ["a"], "extra_knob": 3}
    assert Detector.training_done is None and Flat().training_done is None
    with pytest.raises(TypeError):
        Flat(nope=1)


def test_saved_params_round_trip_and_old_model_folders_still_load(tmp_path):
    spec = DetectorSpec("t.flat", Flat)
    registry = registry_with(spec)
    images = np.full((3, 16, 16, 3), 100, np.uint8)
    det = Flat(input_size=16, sigma=np.float64(1.5), layers=("x",))  # numpy scalars and tuples save as JSON
    det.fit(images, None)
    det.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["params"] == {"input_size": 16, "sigma": 1.5, "layers": ["x"], "mode": "fast", "smooth": False}
    back = load_detector(tmp_path / "m", registry)
    assert back.params == config["params"]
    np.testing.assert_array_equal(back.predict(images).scores, det.predict(images).scores)
    # A folder written before the base recorded params holds whatever the detector passed on.
    config["params"] = {"input_size": 16, "sigma": 2.0}
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    assert load_detector(tmp_path / "m", registry).params["sigma"] == 2.0


def test_plan_coerces_set_values_to_the_declared_types():
    registry = registry_with(DetectorSpec("t.flat", Flat))
    params = cells(registry, "t.flat", {"sigma": 3, "input_size": 32.0, "layers": ["l1"], "smooth": True})[0].params
    assert params == {"input_size": 32, "sigma": 3.0, "layers": ["l1"], "mode": "fast", "smooth": True}
    assert isinstance(params["sigma"], float) and isinstance(params["input_size"], int)
    # 3 and 3.0 are one setup: the same cell key
    assert cells(registry, "t.flat", {"sigma": 3})[0].key == cells(registry, "t.flat", {"sigma": 3.0})[0].key


@pytest.mark.parametrize(("params", "message"), [
    ({"sigma": "wide"}, "detector 't.flat': parameter sigma must be float, got 'wide'"),
    ({"input_size": 2.5}, "parameter input_size must be int, got 2.5"),
    ({"smooth": 1}, "parameter smooth must be bool, got 1"),
    ({"layers": "l1"}, "parameter layers must be list of str or null, got 'l1'"),
    ({"layers": [1]}, "parameter layers must be list of str or null"),
    ({"mode": 7}, "parameter mode must be str, got 7"),
    ({"nope": 1}, r"unknown parameter\(s\) nope for detector 't.flat' \(known: input_size, layers, mode, sigma, smooth\)"),
])
def test_a_bad_set_value_is_a_plan_error(params, message):
    with pytest.raises(InputError, match=message):
        cells(registry_with(DetectorSpec("t.flat", Flat)), "t.flat", params)


def test_kwargs_factories_promote_ints_where_the_default_is_a_float():
    registry = registry_with(DetectorSpec("t.kw", lambda **p: None, params={"ratio": 0.5, "name": "x"}))
    assert cells(registry, "t.kw", {"ratio": 1, "name": 3})[0].params == {"ratio": 1.0, "name": 3}


def test_cli_set_with_a_bad_type_exits_2_with_one_line(tmp_path, capsys):
    from testkit import cli

    rc = cli("run", "--detector", "pixel_gaussian", "--set", "pixel_gaussian.blur_sigma=wide",
             "--run-dir", str(tmp_path / "run"))
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert "parameter blur_sigma must be float, got 'wide'" in err and len(err.splitlines()) == 1
