"""Fitting a model: the detector fitted on a category's good images, its calibration
scores, and the thresholds and display range they fix; then the model folder.

One path for a grid cell and ``adbench fit``, so both give the same model for the same
seed and settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.seeding import seed_everything
from iadbench.types import Prediction

CALIBRATIONS = ("auto", "holdout", "kfold")
#: Folds of the k-fold calibration (each refit sees 80% of the good images).
KFOLD = 5
#: The cell settings (iadbench.runner.plan.Settings) a fit reads, fit_model's keywords.
FIT_SETTINGS = ("holdout_fraction", "threshold_rule", "predict_batch", "calibration")


def fit_options(settings: dict[str, Any]) -> dict[str, Any]:
    """fit_model's keyword arguments from a cell's settings dict."""
    return {name: settings[name] for name in FIT_SETTINGS if name in settings}


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, holdout) of the good training images; the holdout fixes the
    threshold and is never fitted on. Too few images: no holdout."""
    k = int(round(n * fraction))
    if fraction <= 0 or n < 5:
        k = 0
    k = min(max(k, 1 if fraction > 0 and n >= 5 else 0), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[k:]), np.sort(order[:k])


def predict_batched(predict, images: np.ndarray, batch: int, size: tuple[int, int]) -> Prediction:
    """``predict`` (uint8 batch at ``size`` -> Prediction) over ``images``, ``batch`` at a time."""
    scores, maps = [], []
    for i in range(0, len(images), batch):
        p = predict(images[i : i + batch])
        scores.append(p.scores)
        maps.append(p.maps)
    if not scores:
        return Prediction(np.zeros(0), np.zeros((0, *size), np.float32))
    return Prediction(np.concatenate(scores), np.concatenate(maps))


@dataclass
class FitResult:
    """A detector fitted the way every cell fits one, with what its calibration fixed:
    the in-memory model, before it is written (``save_model``)."""

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
    threshold_rule: str = ""
    crop: float = 1.0  # the centre fraction of each image the detector saw (--protocol paper)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.size

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

    def score(self, images: np.ndarray) -> Prediction:
        """Images at the input size, scored by the fitted detector (eager)."""
        return self.detector.predict(images)


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


def _kfold_scores(spec, params, images: np.ndarray, seed: int, workdir: Path, threads: int, batch: int,
                  device: str = "cpu", defects=None):
    """Each image scored by the refit that left its fold out (folds seeded by ``seed``);
    refit j is seeded with seed + 1 + j, so the final model's own fit is untouched."""
    from iadbench.detector import FitContext

    folds = np.random.default_rng(seed).permutation(len(images)) % KFOLD
    scores = np.empty(len(images))
    maps = np.empty((len(images), *images.shape[1:3]), np.float32)
    for j in range(KFOLD):
        seed_everything(seed + 1 + j)
        refit = _on_device(spec.factory(**params), device)
        refit.fit(images[folds != j], FitContext(seed=seed + 1 + j, workdir=workdir / f"fold{j}", threads=threads,
                                                 device=device, defects=defects))
        held = predict_batched(refit.predict, images[folds == j], batch, tuple(refit.input_size))
        scores[folds == j], maps[folds == j] = held.scores, held.maps
    return Prediction(scores, maps)


def _labelled_defects(samples, size: tuple[int, int], crop: float = 1.0):
    """LabelledDefects of ``samples`` at the detector's input size; None for none."""
    if not samples:
        return None
    from iadbench.detector import LabelledDefects
    from iadbench.images import load_images, load_masks

    return LabelledDefects(images=load_images(samples, size, crop), masks=load_masks(samples, size, crop),
                           has_mask=np.array([s.mask_path is not None for s in samples], dtype=bool))


def _on_device(detector, device: str):
    """``detector`` moved to ``device``; on the CPU left as built (nothing to move)."""
    return detector if str(device) == "cpu" else detector.to(device)


def fit_model(spec, params: dict[str, Any], split, *, seed: int, holdout_fraction: float,
              threshold_rule: str, threads: int, workdir: Path, predict_batch: int,
              calibration: str = "auto", device: str = "cpu", defects=None, crop: float = 1.0) -> FitResult:
    """Fit and calibrate (see ``choose_calibration``): the calibration scores fix the
    image threshold, their maps' maxima the pixel threshold (the same rule), and their
    maps the display range of heatmaps. Seeds the global RNGs with ``seed`` first, so
    the model depends on nothing that ran before in the process. ``device``: a torch
    device string (iadbench.devices.torch_device) the detector fits and scores on.
    ``defects``: labelled defective Samples (iadbench.model.defects.take_defects), handed
    to a detector whose ``supervision`` is "mixed" and to no other. The threshold is
    still fixed on good images alone. ``crop``: the centre fraction of each image the
    detector sees (``--protocol paper``; iadbench.images.prepare_image)."""
    from iadbench.calibration.rules import calibrate
    from iadbench.detector import FitContext
    from iadbench.errors import InputError
    from iadbench.features import STATS as FEATURE_CACHE_STATS
    from iadbench.images import load_images
    from iadbench.model.folder import display_range_from_maps

    if not split.train:
        raise InputError(f"{split.dataset}:{split.category} has no good training images")
    if calibration not in CALIBRATIONS:
        raise InputError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}")
    seed_everything(seed)
    detector = _on_device(spec.factory(**params), device)
    if not detector.name:
        detector.name = spec.name
    size = tuple(detector.input_size)
    how = choose_calibration(calibration, detector, len(split.train), holdout_fraction)
    if how == "holdout":
        fit_idx, hold_idx = split_holdout(len(split.train), holdout_fraction, seed)
    else:
        fit_idx, hold_idx = np.arange(len(split.train)), np.zeros(0, dtype=np.int64)
    train_images = load_images([split.train[i] for i in fit_idx], size, crop)
    holdout_images = load_images([split.train[i] for i in hold_idx], size, crop)

    labelled = _labelled_defects(defects, size, crop) if getattr(detector, "supervision", "unsupervised") == "mixed" else None
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = FitContext(seed=seed, workdir=workdir, threads=threads, device=device, defects=labelled)
    hits_before = FEATURE_CACHE_STATS["hits"]
    started = time.perf_counter()  # calibration scoring is part of the fit's cost
    if how == "out-of-fold":
        held = detector.fit_out_of_fold(train_images, ctx)
    else:
        detector.fit(train_images, ctx)
        if how == "kfold":
            held = _kfold_scores(spec, params, train_images, seed, workdir, threads, predict_batch, device, labelled)
    fit_s = time.perf_counter() - started
    fit_cache_hits = FEATURE_CACHE_STATS["hits"] - hits_before
    if how == "holdout":
        held = predict_batched(detector.predict, holdout_images, predict_batch, size)
    else:
        # warm the model up on a few images, as the holdout pass does (the caller times what follows)
        predict_batched(detector.predict, train_images[:predict_batch], predict_batch, size)

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
    display_maps = held.maps if len(held.maps) else predict_batched(detector.predict, train_images, predict_batch, size).maps
    return FitResult(
        detector=detector, size=size, fit_idx=fit_idx, hold_idx=hold_idx,
        calibration={"out-of-fold": detector.out_of_fold, "kfold": f"{KFOLD}-fold refits"}.get(how, "holdout"),
        calibration_scores=np.asarray(held.scores, dtype=np.float64), calibration_map_maxima=map_maxima,
        threshold_estimate=estimate, threshold=threshold, threshold_note=threshold_note,
        pixel_threshold=pixel_threshold, display_range=display_range_from_maps(display_maps),
        fit_s=fit_s, fit_cache_hits=fit_cache_hits, threshold_rule=str(threshold_rule), crop=float(crop),
    )


def save_model(fitted: FitResult, directory: Path, info: dict[str, Any]) -> Path:
    """The model folder (iadbench.model.folder format) of a fitted detector, with its
    calibration scores so that its threshold can be re-decided without refitting."""
    from iadbench.model.folder import write_model

    return write_model(
        directory, fitted.detector, threshold=fitted.threshold, threshold_rule=fitted.threshold_rule, crop=fitted.crop,
        display_range=fitted.display_range, pixel_threshold=fitted.pixel_threshold,
        calibration={**fitted.calibration_info(), "scores": fitted.calibration_scores.tolist(),
                     "map_maxima": np.asarray(fitted.calibration_map_maxima, dtype=np.float64).tolist()},
        info={**info, "holdout_images": int(len(fitted.hold_idx)), "train_images": int(len(fitted.fit_idx)),
              "threshold_note": fitted.threshold_note},
    )
