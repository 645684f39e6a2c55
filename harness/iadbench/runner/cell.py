"""One grid cell, run in its own process: load the split, fit on good images, score
the test set, compute every metric in the harness, measure cost, save the artifact.

Invoked as ``python -m iadbench.runner.cell CELL.json RESULT.json``; the parent
(executor) turns the result file, or its absence, into a record.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.jsonio import json_default
from iadbench.runner.cost import (
    dir_size_mb,
    peak_rss_mb,
    per_image_latency_ms,
    percentile,
    stopwatch,
)
from iadbench.runner.plan import Cell
from iadbench.seeding import seed_everything

# Inherited by every cell process (the forkserver starts from this environment).
CELL_ENV = {"PYTHONWARNINGS": "ignore"}

# Imported once by the forkserver, so forked cells start without paying for them.
PRELOAD = [
    "numpy", "torch", "PIL.Image", "scipy.ndimage", "sklearn.metrics", "timm",
    "iadbench.runner.cell", "iadbench.metrics", "iadbench.images", "iadbench.plugins",
    "iadbench.backbones", "iadbench.features",
]


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, holdout) of the good training images; the holdout fixes the
    threshold and is never fitted on. Too few images: no holdout."""
    k = int(round(n * fraction))
    if fraction <= 0 or n < 5:
        k = 0
    k = min(max(k, 1 if fraction > 0 and n >= 5 else 0), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[k:]), np.sort(order[:k])


def _predict_batched(detector, images: np.ndarray, batch: int):
    from iadbench.types import Prediction

    scores, maps = [], []
    for i in range(0, len(images), batch):
        p = detector.predict(images[i : i + batch])
        scores.append(p.scores)
        maps.append(p.maps)
    if not scores:
        h, w = detector.input_size
        return Prediction(np.zeros(0), np.zeros((0, h, w), np.float32))
    return Prediction(np.concatenate(scores), np.concatenate(maps))


@dataclass
class FitResult:
    """A detector fitted the way every cell fits one, with what its calibration fixed."""

    detector: Any
    size: tuple[int, int]
    fit_idx: np.ndarray
    hold_idx: np.ndarray
    calibration: str  # how the calibration scores were made: the detector's out_of_fold, or "holdout"
    calibration_scores: np.ndarray  # good training images, each scored by a model that did not fit it
    calibration_map_maxima: np.ndarray  # the largest value of each of their maps
    threshold_estimate: Any  # iadbench.calibration.tail.Estimate, None when no threshold could be fixed
    threshold: float
    threshold_note: str | None
    pixel_threshold: float | None
    display_range: tuple[float, float]
    fit_s: float
    fit_cache_hits: int

    @property
    def calibration_idx(self) -> np.ndarray:
        """The good training images the calibration scores belong to, in their order."""
        return self.hold_idx if self.calibration == "holdout" else self.fit_idx

    def calibration_info(self) -> dict[str, Any]:
        """What the record and the model folder say about the calibration."""
        return {
            "method": self.calibration,
            "images": int(len(self.calibration_scores)),
            "estimate": self.threshold_estimate.to_dict() if self.threshold_estimate is not None else None,
        }


CALIBRATIONS = ("auto", "holdout", "kfold")
#: Folds of the k-fold calibration (each refit sees 80% of the good images).
KFOLD = 5


def choose_calibration(requested: str, detector, n_train: int, holdout_fraction: float) -> str:
    """How the good training images get their calibration scores: "out-of-fold" (the
    detector's exact shortcut: one fit on every image), "kfold" (one fit on every
    image plus KFOLD refits, each scoring the fifth it did not see) or "holdout" (a
    seeded ``holdout_fraction`` kept out of the one fit).

    "auto" takes the shortcut where there is one; else k-fold where the detector says
    its refits are cheap (``Detector.calibration_refits``) and a holdout would hold too
    few images for a tail fit (fewer than MIN_TAIL_SCORES); else the holdout."""
    from iadbench.calibration.tail import MIN_TAIL_SCORES

    if requested == "holdout" or n_train < KFOLD:
        return "holdout"
    if requested == "kfold":
        return "kfold"
    if detector.out_of_fold is not None:
        return "out-of-fold"
    if detector.calibration_refits and round(n_train * holdout_fraction) < MIN_TAIL_SCORES:
        return "kfold"
    return "holdout"


def _kfold_scores(spec, params, images: np.ndarray, seed: int, workdir: Path, threads: int, batch: int):
    """Each image scored by the refit that left its fold out (folds seeded by ``seed``);
    refit j is seeded with seed + 1 + j, so the final model's own fit is untouched."""
    from iadbench.detector import FitContext
    from iadbench.types import Prediction

    folds = np.random.default_rng(seed).permutation(len(images)) % KFOLD
    scores = np.empty(len(images))
    maps = np.empty((len(images), *images.shape[1:3]), np.float32)
    for j in range(KFOLD):
        seed_everything(seed + 1 + j)
        refit = spec.factory(**params)
        refit.fit(images[folds != j], FitContext(seed=seed + 1 + j, workdir=workdir / f"fold{j}", threads=threads))
        held = _predict_batched(refit, images[folds == j], batch)
        scores[folds == j], maps[folds == j] = held.scores, held.maps
    return Prediction(scores, maps)


def fit_on_split(spec, params: dict[str, Any], split, *, seed: int, holdout_fraction: float,
                 threshold_rule: str, threads: int, workdir: Path, predict_batch: int,
                 calibration: str = "auto") -> FitResult:
    """Fit and calibrate (see ``choose_calibration``): the calibration scores fix the
    image threshold, their maps' maxima the pixel threshold (the same rule), and their
    maps the display range of heatmaps. Global RNGs must already be seeded. Shared by a
    grid cell and ``adbench fit`` so both give the same model."""
    from iadbench.calibration.rules import calibrate
    from iadbench.detector import FitContext
    from iadbench.errors import InputError
    from iadbench.features import STATS as FEATURE_CACHE_STATS
    from iadbench.images import load_images
    from iadbench.model import display_range_from_maps

    if not split.train:
        raise InputError(f"{split.dataset}:{split.category} has no good training images")
    if calibration not in CALIBRATIONS:
        raise InputError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}")
    detector = spec.factory(**params)
    if not detector.name:
        detector.name = spec.name
    size = tuple(detector.input_size)
    how = choose_calibration(calibration, detector, len(split.train), holdout_fraction)
    if how == "holdout":
        fit_idx, hold_idx = split_holdout(len(split.train), holdout_fraction, seed)
    else:
        fit_idx, hold_idx = np.arange(len(split.train)), np.zeros(0, dtype=np.int64)
    train_images = load_images([split.train[i] for i in fit_idx], size)
    holdout_images = load_images([split.train[i] for i in hold_idx], size)

    workdir.mkdir(parents=True, exist_ok=True)
    ctx = FitContext(seed=seed, workdir=workdir, threads=threads)
    hits_before = FEATURE_CACHE_STATS["hits"]
    with stopwatch() as fit_time:  # calibration scoring is part of the fit's cost
        if how == "out-of-fold":
            held = detector.fit_out_of_fold(train_images, ctx)
        else:
            detector.fit(train_images, ctx)
            if how == "kfold":
                held = _kfold_scores(spec, params, train_images, seed, workdir, threads, predict_batch)
    fit_cache_hits = FEATURE_CACHE_STATS["hits"] - hits_before
    if how == "holdout":
        held = _predict_batched(detector, holdout_images, predict_batch)
    else:
        # warm the model up on a few images, as the holdout pass does (the caller times what follows)
        _predict_batched(detector, train_images[:predict_batch], predict_batch)

    estimate, threshold, threshold_note = None, float("nan"), None
    try:
        estimate = calibrate(held.scores, threshold_rule)
        threshold = estimate.value
        threshold_note = estimate.note
    except Exception as exc:  # noqa: BLE001 - recorded, threshold metrics become NaN
        threshold_note = str(exc)
    map_maxima = held.maps.reshape(len(held.maps), -1).max(axis=1) if len(held.maps) else np.zeros(0)
    pixel_threshold = None
    try:
        if len(map_maxima):
            pixel_threshold = calibrate(map_maxima, threshold_rule).value
    except Exception:  # noqa: BLE001 - no outline on overlays then
        pixel_threshold = None
    # Too few good images for a calibration: the display range falls back to the fit
    # images' maps (a range only; no threshold is ever fixed on fitted images).
    display_maps = held.maps if len(held.maps) else _predict_batched(detector, train_images, predict_batch).maps
    return FitResult(
        detector=detector, size=size, fit_idx=fit_idx, hold_idx=hold_idx,
        calibration={"out-of-fold": detector.out_of_fold, "kfold": f"{KFOLD}-fold refits"}.get(how, "holdout"),
        calibration_scores=np.asarray(held.scores, dtype=np.float64), calibration_map_maxima=map_maxima,
        threshold_estimate=estimate, threshold=threshold, threshold_note=threshold_note,
        pixel_threshold=pixel_threshold, display_range=display_range_from_maps(display_maps),
        fit_s=fit_time[0], fit_cache_hits=fit_cache_hits,
    )


def save_fitted(fitted: FitResult, directory: Path, threshold_rule: str, info: dict[str, Any]) -> Path:
    """The model folder (iadbench.model format) of a fitted detector, with its
    calibration scores so that its threshold can be re-decided without refitting."""
    from iadbench.model import write_model

    return write_model(
        directory, fitted.detector, threshold=fitted.threshold, threshold_rule=threshold_rule,
        display_range=fitted.display_range, pixel_threshold=fitted.pixel_threshold,
        calibration={**fitted.calibration_info(), "scores": fitted.calibration_scores.tolist(),
                     "map_maxima": np.asarray(fitted.calibration_map_maxima, dtype=np.float64).tolist()},
        info={**info, "holdout_images": int(len(fitted.hold_idx)), "train_images": int(len(fitted.fit_idx)),
              "threshold_note": fitted.threshold_note},
    )


def run_cell(cell: Cell, cell_dir: Path, threads: int) -> dict[str, Any]:
    """Do the cell's work in this process and return the record's payload."""
    import torch

    from iadbench.calibration.rules import parse_rule
    from iadbench.calibration.verdicts import verdicts
    from iadbench.datasets import resolve_dataset
    from iadbench.features import cache_disabled
    from iadbench.images import load_images, load_masks
    from iadbench.metrics import compute_metrics
    from iadbench.plugins import get_registry
    from iadbench.report.gallery import write_gallery
    from iadbench.report.intervals import cell_intervals
    from iadbench.types import EvalData

    torch.set_num_threads(threads)
    s = cell.settings
    registry = get_registry()
    spec = registry.detector(cell.detector)
    seed_everything(cell.seed)

    dataset = resolve_dataset(
        registry,
        cell.dataset,
        data_root=Path(cell.data_root) if cell.data_root else None,
        path=Path(cell.dataset_path) if cell.dataset_path else None,
        **cell.dataset_params,
    )
    split = dataset.split(cell.category)
    fitted = fit_on_split(
        spec, cell.params, split, seed=cell.seed, holdout_fraction=s["holdout_fraction"],
        threshold_rule=s["threshold_rule"], threads=threads, workdir=cell_dir / "work",
        predict_batch=s["predict_batch"], calibration=s.get("calibration", "auto"),
    )
    detector, size, threshold, threshold_note = fitted.detector, fitted.size, fitted.threshold, fitted.threshold_note
    fit_idx, hold_idx = fitted.fit_idx, fitted.hold_idx
    test_images = load_images(split.test, size)
    masks = load_masks(split.test, size) if split.has_masks else None
    labels = np.array([t.label for t in split.test], dtype=np.int64)

    # The test set is scored with the feature cache off, so this pass measures
    # throughput honestly as well (fit_on_split already warmed the model up).
    with cache_disabled(), stopwatch() as predict_time:
        prediction = _predict_batched(detector, test_images, s["predict_batch"])

    data = EvalData(
        labels=labels,
        scores=prediction.scores,
        maps=prediction.maps,
        masks=masks,
        threshold=threshold,
        defect_types=[t.defect_type for t in split.test],
        calibration_scores=fitted.calibration_scores,
    )
    metrics, reasons = compute_metrics(data, registry.metrics)
    if threshold_note:  # the fitting error says more than "threshold is NaN"
        for name in ("precision", "recall", "f1", "accuracy"):
            if name in reasons:
                reasons[name] = f"no threshold: {threshold_note}"
    try:  # uncertainty is extra: a failure here must not cost the cell its metrics
        intervals = cell_intervals(labels, prediction.scores, prediction.maps, masks)
    except Exception as exc:  # noqa: BLE001
        intervals = {"error": f"{type(exc).__name__}: {exc}"}
    rule = parse_rule(s["threshold_rule"])
    verdict = verdicts(labels, prediction.scores, threshold, rule.target_fpr, fitted.calibration_scores)

    # Cost, with the feature cache off so that no number benefits from earlier cells.
    predict_fn, backbone_fn, runtime = _latency_runtime(cell.runtime, detector, threads)
    with cache_disabled():
        latencies = per_image_latency_ms(predict_fn, test_images, s["warmup"], s["latency_images"])
        backbone = None
        if backbone_fn is not None:
            backbone = per_image_latency_ms(backbone_fn, test_images, s["warmup"], s["latency_images"])

    artifact = save_fitted(fitted, cell_dir / "model", s["threshold_rule"], {
        "detector": spec.name, "params": cell.params, "dataset": cell.dataset, "category": cell.category,
        "seed": cell.seed, "cell_key": cell.key, "settings": s,
    })
    _write_scores(cell_dir / "scores.csv", split.test, prediction.scores)
    _write_calibration(cell_dir / "calibration.csv", [split.train[i] for i in fitted.calibration_idx], fitted.calibration_scores)
    gallery_error = None
    try:  # the report's pictures are extra, like the intervals
        write_gallery(cell_dir, split.test, test_images, prediction.maps, masks, prediction.scores)
    except Exception as exc:  # noqa: BLE001
        gallery_error = f"{type(exc).__name__}: {exc}"

    return {
        "metrics": metrics,
        "metric_notes": reasons,
        "intervals": intervals,
        **({"gallery_error": gallery_error} if gallery_error else {}),
        "threshold": {
            "rule": s["threshold_rule"],
            "value": threshold,
            "holdout_images": int(len(hold_idx)),
            "pixel_value": fitted.pixel_threshold,
            "display_range": list(fitted.display_range),
            "calibration": fitted.calibration_info(),
            **({"note": threshold_note} if threshold_note else {}),
        },
        "verdicts": verdict,
        "counts": {
            "train": int(len(fit_idx)),
            "holdout": int(len(hold_idx)),
            "test": int(len(split.test)),
            "test_anomalous": int(labels.sum()),
            "test_masks": bool(masks is not None),
        },
        "cost": {
            "fit_s": fitted.fit_s,
            # Images whose backbone features fit() read from the shared cache (an
            # earlier cell computed them): fit_s then excludes that forward pass.
            "fit_feature_cache_hits": fitted.fit_cache_hits,
            "predict_s": predict_time[0],
            "latency_ms_p50": percentile(latencies, 50),
            "latency_ms_p95": percentile(latencies, 95),
            "backbone_latency_ms_p50": percentile(backbone, 50) if backbone else None,
            # images/s over the whole test set at predict_batch, cache off
            "throughput_ips": len(test_images) / predict_time[0] if predict_time[0] > 0 and len(test_images) else None,
            "throughput_batch": s["predict_batch"],
            "peak_rss_mb": peak_rss_mb(),
            "artifact_mb": dir_size_mb(artifact),
            "threads": threads,
            # what latency_ms_* and backbone_latency_ms_p50 ran on (adbench run --runtime)
            **runtime,
        },
        "input_size": list(size),
        "training": _training(spec, detector, cell.params),
        "split_notes": split.notes,
        "artifact": str(artifact),
    }


def _latency_runtime(requested: str, detector, threads: int):
    """(predict, backbone forward or None, cost fields) for the latency measurement:
    eager, or with ``onnx`` the detector's onnx runtime and its backbone in onnxruntime.
    A detector that cannot export is measured eager, and the record says why."""
    backbone = detector.backbone_forward if detector.has_backbone else None
    if requested != "onnx":
        return detector.predict, backbone, {"runtime": "eager"}
    from iadbench.deploy.runtime import open_backbone, open_runtime
    from iadbench.errors import InputError

    try:
        rt = open_runtime(detector, "onnx", threads)
    except InputError as exc:
        return detector.predict, backbone, {"runtime": "eager", "runtime_note": f"onnx requested: {exc}"}
    if backbone is not None:
        try:
            backbone = open_backbone(detector, threads)
        except InputError:
            backbone = None  # an eager backbone beside an onnx end-to-end figure would mislead
    return rt.predict, backbone, {"runtime": "onnx", "runtime_detail": rt.detail}


def _training(spec, detector, params: dict[str, Any]) -> dict[str, Any] | None:
    """Training length used next to the published one (None for one-pass detectors),
    so a leaderboard built elsewhere can tell a smoke run from the method's length."""
    published = spec.published_training
    if not published:
        return None
    # What the detector reports it did (a step cap may end training before max_epochs),
    # else the param that sets the length.
    done = dict(getattr(detector, "training_done", None) or {})
    used = done.get(published["unit"], params.get(published["param"]))
    return {
        "unit": published["unit"],
        "used": used,
        "published": published["value"],
        "source": published.get("source"),
        "steps": done.get("steps"),
    }


def _write_scores(path: Path, samples, scores: np.ndarray) -> None:
    import csv

    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "defect_type", "score"])
        for sample, score in zip(samples, scores):
            w.writerow([str(sample.path), sample.label, sample.defect_type, repr(float(score))])


def _write_calibration(path: Path, samples, scores: np.ndarray) -> None:
    """The calibration scores beside the test scores, for the report and re-deciding."""
    import csv

    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "score"])
        for sample, score in zip(samples, scores):
            w.writerow([str(sample.path), repr(float(score))])


def main(argv: list[str]) -> int:
    return run_cell_files(Path(argv[0]), Path(argv[1]))


def run_cell_files(cell_path: Path, result_path: Path) -> int:
    """Run the cell described in ``cell_path``; write its result to ``result_path``."""
    payload = json.loads(cell_path.read_text())
    cell = Cell.from_json(payload["cell"])
    threads = int(payload.get("threads", 1))
    started = time.time()
    warnings.simplefilter("ignore")
    try:
        body = run_cell(cell, result_path.parent, threads)
        result = {"status": "ok", "error": None, **body}
    except Exception as exc:  # noqa: BLE001 - a cell's failure is data, not a crash
        from iadbench.errors import InputError

        message = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        result = {"status": "failed", "error": message, "traceback": traceback.format_exc()}
    result["started"] = started
    result["finished"] = time.time()
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=json_default, allow_nan=True))
    os.replace(tmp, result_path)
    return 0




if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
