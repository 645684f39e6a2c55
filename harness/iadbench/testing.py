"""The conformance kit: does a detector keep the Detector contract?

Public for plugin authors, and kept stable. In a plugin's own test suite::

    from iadbench.testing import check_detector
    from my_plugin.plugin import SPEC            # a DetectorSpec, or a registered name

    def test_my_detector_conforms():
        check_detector(SPEC, {"input_size": 64})  # small params keep it to seconds

It fits the detector on a few seeded synthetic images and raises AssertionError naming
the first check that fails:

- spec: ``DetectorSpec.params`` agree with the factory's signature (iadbench.params),
  the params you pass are accepted at plan time, an unknown key and a value of the
  wrong type are refused there (as ``adbench run --set`` would refuse them);
- the built detector's ``name`` is the spec's (saved models load back by it);
- fit, then predict: a ``Prediction`` with scores (N,) and maps (N, H, W) at
  ``input_size``, float64 / float32, every value finite;
- a trained detector with a published length (``published_training``) reports
  ``training_done`` in its unit;
- save and load back (config.json + safetensors, through the registry's factory)
  predicts the same;
- two fits with one seed score alike, within ``Detector.determinism_rtol``;
- where the detector has an out-of-fold shortcut (iadbench.capabilities.OutOfFold):
  ``fit_out_of_fold`` returns one score per training image and leaves the model
  ``fit`` would;
- where it exports and onnxruntime is installed: the ONNX graph scores as eager
  (``export=False`` skips it: tracing takes seconds).

A defective image scoring no higher than the good ones is a warning only (one fit on
a few synthetic images proves little about a method). The report lists what passed,
what was skipped and the warnings.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.capabilities import OutOfFold, capabilities_of, implements
from iadbench.detector import Detector, FitContext
from iadbench.errors import InputError, PluginError
from iadbench.params import TypeMismatch, check_spec, coerce_value, spec_params
from iadbench.seeding import seed_everything
from iadbench.types import DatasetSpec, DetectorSpec, Prediction

#: Good training images the kit fits on, and good test images it scores.
N_TRAIN, N_TEST = 8, 3
#: A key no detector declares (the plan must refuse it).
NO_SUCH_PARAM = "conformance_no_such_param"


class ConformanceWarning(UserWarning):
    """Something suspicious that does not break the contract."""


@dataclass
class ConformanceReport:
    detector: str
    params: dict[str, Any]
    capabilities: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "check: why"
    warnings: list[str] = field(default_factory=list)


def synthetic_images(n: int, size: tuple[int, int], seed: int = 0, defect: bool = False) -> np.ndarray:
    """Aligned textured discs with soft edges on a dark background, each a little
    shifted and noisy (seeded); ``defect`` paints a white bar across each disc.
    uint8 (n, H, W, 3)."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    radius, edge = min(h, w) * 0.35, max(1.0, min(h, w) / 32)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        r = np.hypot(yy - h / 2 + rng.normal(0, 0.3), xx - w / 2 + rng.normal(0, 0.3))
        disc = 1 / (1 + np.exp((r - radius) / edge))  # soft edge: a small shift changes little
        img = 20 + (100 + 40 * np.sin(r / 2.0)) * disc
        img = np.repeat(img[..., None], 3, axis=2) + rng.normal(0, 3, (h, w, 3))
        if defect:
            img[h // 3 : h // 3 + max(2, h // 6), w // 3 : w // 3 + max(2, w // 4)] = 255
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def _fail(name: str, check: str, message: str) -> AssertionError:
    return AssertionError(f"{name}: {check}: {message}")


def _mini_registry(spec: DetectorSpec):
    from iadbench.plugins import Registry

    return Registry(detectors={spec.name: spec}, datasets={"conformance": DatasetSpec("conformance", factory=dict)})


def _plan_params(spec: DetectorSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The params as ``adbench run`` resolves them (a one-cell plan); InputError if refused."""
    from iadbench.runner.plan import DatasetEntry, DetectorEntry, Plan, expand

    plan = Plan([DetectorEntry(spec.name, dict(params))], [DatasetEntry("conformance")])
    cells = expand(plan, _mini_registry(spec), lambda entry: ["c"])
    return cells[0].params


def _wrong_type(spec: DetectorSpec) -> tuple[str, Any] | None:
    """A (param, value) whose declared type refuses the value, if any param declares one."""
    for name, param in spec_params(spec).items():
        if param.annotation is None:
            continue
        for bad in ({"not": "a value"}, ["not", "a", "value"], "not-a-value"):
            try:
                coerce_value(param, bad)
            except TypeMismatch:
                return name, bad
    return None


def _check_prediction(name: str, check: str, pred: Any, n: int, size: tuple[int, int]) -> Prediction:
    if not isinstance(pred, Prediction):
        raise _fail(name, check, f"returned {type(pred).__name__}, not a Prediction")
    if pred.scores.shape != (n,):
        raise _fail(name, check, f"scores have shape {pred.scores.shape}, expected ({n},)")
    if pred.maps.shape != (n, *size):
        raise _fail(name, check, f"maps have shape {pred.maps.shape}, expected ({n}, {size[0]}, {size[1]}) (input_size)")
    if pred.scores.dtype != np.float64 or pred.maps.dtype != np.float32:
        raise _fail(name, check, f"dtypes are {pred.scores.dtype} / {pred.maps.dtype}, expected float64 / float32")
    if not np.isfinite(pred.scores).all() or not np.isfinite(pred.maps).all():
        raise _fail(name, check, "scores or maps hold NaN or infinite values")
    return pred


def _close(a: np.ndarray, b: np.ndarray, rtol: float) -> float | None:
    """None where ``a`` and ``b`` agree within ``rtol`` of their scale, else the difference."""
    scale = max(float(np.abs(a).max(initial=0.0)), 1e-12)
    diff = float(np.abs(a - b).max(initial=0.0)) / scale
    return None if diff <= rtol else diff


def _fit(name: str, det: Detector, images: np.ndarray, seed: int, workdir: Path, oof: bool = False) -> Prediction | None:
    seed_everything(seed)  # as the harness does before each cell
    ctx = FitContext(seed=seed, workdir=workdir, threads=1)
    check = "fit_out_of_fold" if oof else "fit"
    try:
        return det.fit_out_of_fold(images, ctx) if oof else det.fit(images, ctx)
    except Exception as exc:
        raise _fail(name, check, f"raised {type(exc).__name__}: {exc}") from exc


def _predict(name: str, det: Detector, images: np.ndarray, check: str) -> Prediction:
    try:
        pred = det.predict(images)
    except Exception as exc:
        raise _fail(name, check, f"predict raised {type(exc).__name__}: {exc}") from exc
    return _check_prediction(name, check, pred, len(images), tuple(det.input_size))


def check_detector(
    spec_or_name: DetectorSpec | str,
    params: dict[str, Any] | None = None,
    *,
    images: np.ndarray | None = None,
    size: int | None = None,
    seed: int = 0,
    export: bool = True,
    registry: Any = None,
    workdir: str | Path | None = None,
) -> ConformanceReport:
    """Run the conformance checks on one detector; AssertionError on the first failure.

    ``spec_or_name``: a DetectorSpec, or a name in ``registry`` (default: the installed
    plugins'). ``params``: overrides of its defaults, small ones to keep it fast.
    ``size``: sets ``input_size`` where the detector declares one. ``images``: good
    uint8 images (N, H, W, 3) at the detector's input size, N >= 5, instead of the
    synthetic ones (the last two are scored, with a defective copy of the last).
    ``workdir``: where fits, saved models and exports go (default: a temporary folder).
    """
    if isinstance(spec_or_name, DetectorSpec):
        spec = spec_or_name
    else:
        if registry is None:
            from iadbench.plugins import get_registry

            registry = get_registry()
        spec = registry.detector(spec_or_name)
    name = spec.name
    params = dict(params or {})
    if size is not None and "input_size" in spec.params:
        params.setdefault("input_size", int(size))
    report = ConformanceReport(detector=name, params={})

    # --- the spec and the plan ------------------------------------------------------
    try:
        check_spec(spec)
    except PluginError as exc:
        raise _fail(name, "spec", str(exc)) from None
    try:
        resolved = _plan_params(spec, params)
    except InputError as exc:
        raise _fail(name, "plan", f"the params given are refused at plan time: {exc}") from None
    report.params = resolved
    report.passed.append("spec params agree with the factory's signature")
    try:
        _plan_params(spec, {**params, NO_SUCH_PARAM: 1})
    except InputError:
        pass
    else:
        raise _fail(name, "plan", f"an unknown param ({NO_SUCH_PARAM}) was accepted at plan time")
    wrong = _wrong_type(spec)
    if wrong is not None:
        key, value = wrong
        try:
            _plan_params(spec, {**params, key: value})
        except InputError:
            report.passed.append("unknown and mistyped params refused at plan time")
        else:
            raise _fail(name, "plan", f"{key}={value!r} (not its declared type) was accepted at plan time")
    else:
        report.passed.append("unknown params refused at plan time")
        report.skipped.append("mistyped param: no param declares a type")

    # --- build, fit, predict --------------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="iadbench-conformance-") as scratch:
        root = Path(workdir) if workdir is not None else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        det = spec.factory(**resolved)
        if det.name != name:
            raise _fail(name, "name", f"the detector calls itself '{det.name}': saved models load back by the spec's name")
        try:
            json.dumps(det.params)
        except TypeError as exc:
            raise _fail(name, "params", f"self.params is not JSON ({exc}); config.json could not hold it") from None
        report.capabilities = capabilities_of(det)
        shape = tuple(det.input_size)
        train, test = _images(name, images, shape, seed)

        _fit(name, det, train, seed, root / "fit")
        pred = _predict(name, det, test, "predict")
        report.passed.append("fit, then predict: scores (N,), maps (N, H, W) at input_size, finite")
        _check_training(name, spec, det, report)
        good, bad = pred.scores[:-1], pred.scores[-1]
        if not bad > good.max():
            message = f"the defective image scored {bad:.4g}, the good ones up to {good.max():.4g}"
            report.warnings.append(message)
            warnings.warn(f"{name}: {message}", ConformanceWarning, stacklevel=2)

        # --- artifacts: save, load through the factory, same predictions ------------
        from iadbench.artifacts import load_detector

        det.save(root / "model")
        try:
            loaded = load_detector(root / "model", _mini_registry(spec))
        except Exception as exc:
            raise _fail(name, "load", f"a saved model does not load back: {type(exc).__name__}: {exc}") from exc
        again = _predict(name, loaded, test, "predict after load")
        for what, a, b in (("scores", pred.scores, again.scores), ("maps", pred.maps, again.maps)):
            diff = _close(a, b, 1e-6)
            if diff is not None:
                raise _fail(name, "save/load", f"{what} differ after loading by {diff:.2e} of their scale")
        report.passed.append("save/load gives the same predictions")

        # --- seeded determinism -----------------------------------------------------
        twin = spec.factory(**resolved)
        _fit(name, twin, train, seed, root / "fit-again")
        diff = _close(pred.scores, _predict(name, twin, test, "predict").scores, det.determinism_rtol)
        if diff is not None:
            raise _fail(name, "determinism", f"two fits with seed {seed} differ by {diff:.2e} of the score scale "
                                             f"(Detector.determinism_rtol is {det.determinism_rtol:g})")
        report.passed.append("two fits with one seed give the same scores")

        # --- optional abilities -----------------------------------------------------
        if implements(det, OutOfFold):
            oof_det = spec.factory(**resolved)
            oof = _fit(name, oof_det, train, seed, root / "fit-oof", oof=True)
            _check_prediction(name, "fit_out_of_fold", oof, len(train), shape)
            diff = _close(pred.scores, _predict(name, oof_det, test, "predict after fit_out_of_fold").scores,
                          det.determinism_rtol)
            if diff is not None:
                raise _fail(name, "fit_out_of_fold", f"the model it leaves scores {diff:.2e} away from fit's")
            report.passed.append(f"out-of-fold shortcut ({det.out_of_fold}) scores every training image")
        else:
            report.skipped.append("out-of-fold: no shortcut declared")
        _check_export(name, det, export, report)
    return report


def _images(name: str, images: np.ndarray | None, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test): test is two good images and a defective one, last."""
    if images is None:
        train = synthetic_images(N_TRAIN, shape, seed)
        good = synthetic_images(N_TEST - 1, shape, seed + 1)
        bad = synthetic_images(1, shape, seed + 2, defect=True)
        return train, np.concatenate([good, bad])
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or tuple(images.shape[1:3]) != shape:
        raise _fail(name, "images", f"need uint8 (N, {shape[0]}, {shape[1]}, 3) at the input size, got "
                                    f"{images.dtype} {images.shape}")
    if len(images) < 5:
        raise _fail(name, "images", f"need at least 5 images, got {len(images)}")
    bad = images[-1:].copy()
    h, w = shape
    bad[:, h // 3 : h // 3 + max(2, h // 6), w // 3 : w // 3 + max(2, w // 4)] = 255
    return images[:-2], np.concatenate([images[-2:], bad])


def _check_training(name: str, spec: DetectorSpec, det: Detector, report: ConformanceReport) -> None:
    published = spec.published_training
    if not published:
        report.skipped.append("training length: no published_training declared")
        return
    if published.get("param") not in spec.params:
        raise _fail(name, "published_training", f"param {published.get('param')!r} is not one of its params")
    done = det.training_done
    if not isinstance(done, dict) or published.get("unit") not in done:
        raise _fail(name, "training_done", f"after fit it is {done!r}: expected a dict holding {published.get('unit')!r}")
    report.passed.append(f"training_done reports {published['unit']}")


def _check_export(name: str, det: Detector, export: bool, report: ConformanceReport) -> None:
    if not (det.exportable or det.split_runtime):
        report.skipped.append("export: no export graph")
        return
    if not export:
        report.skipped.append("export: export=False")
        return
    from iadbench.deploy.opening import open_runtime
    from iadbench.deploy.runtime import onnxruntime_available

    if not onnxruntime_available():
        report.skipped.append("export: onnxruntime not installed")
        return
    try:
        open_runtime(det, "onnx", threads=1)  # exports in memory, refuses scores off eager
    except Exception as exc:
        raise _fail(name, "export", f"{type(exc).__name__}: {exc}") from exc
    report.passed.append("the ONNX graph scores as eager predict")
