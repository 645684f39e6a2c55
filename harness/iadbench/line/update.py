"""``adbench update``: confirmed-good images folded into a model folder as a new version.

How, by what the detector can do (iadbench.capabilities.Updatable):

- an updatable detector (PaDiM: exact running statistics; PatchCore: the coreset selected
  again over the bank and the new patches) updates in place and scores the new images out
  of fold under the updated model;
- any other detector, or a model its detector cannot update (a PaDiM folder saved before
  it kept its covariance), is refitted on the union: the images it was fitted on
  (``--train DIR``: a model folder does not hold them) plus those earlier updates added
  (their folders are in the lineage) plus the new ones, calibrated afresh.

The threshold is re-calibrated by the model's rule: on the new images' out-of-fold scores
under the updated model once there are enough of them for a tail fit (MIN_TAIL_SCORES),
else on old + new scores. The old images' scores are kept as they were computed, against
the older model (its images are not in the folder to score again);
``calibration.scored_by_version`` says which version scored each, ``calibrated_on``
which ones the threshold came from. The display range stays, so heatmaps keep their scale.

The new version is built whole in a sibling temp folder and swapped in atomically
(``versions.swap``): a corrupt image, a failed write or Ctrl-C leave the current version
as it was. The cached onnx graphs are not carried over (the next start rebuilds them);
``feedback/`` is.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.errors import InputError
from iadbench.line.versions import FEEDBACK_DIR, build_folder, lineage_entry, locked, swap_in
from iadbench.model.folder import load_model, read_model_json, write_model_json

FALSE_ALARM = "false_alarm"


@dataclass
class UpdateResult:
    directory: Path
    version: int
    parent: int
    images_added: int
    method: str
    threshold_before: float | None
    threshold: float | None
    seconds: float
    note: str | None = None


def good_images(folder: Path) -> list[Path]:
    """The image files of a folder of confirmed-good images (litter skipped)."""
    from iadbench.layouts import list_images

    return list_images(Path(folder))


def decode_all(paths: list[Path], size: tuple[int, int], crop: float = 1.0) -> np.ndarray:
    """Every image decoded and prepared at ``size`` before anything is written: a corrupt
    file is an ImageError naming it, and the model stays untouched."""
    from iadbench.images import load_image

    return np.stack([load_image(p, size, crop) for p in paths]) if paths else np.zeros((0, *size, 3), np.uint8)


def feedback_images(model_dir: Path, body: dict[str, Any]) -> tuple[list[Path], list[str]]:
    """Image files of the model's feedback entries labelled false alarm that no earlier
    version folded in, and their ids."""
    try:
        from iadbench.line.feedback import FeedbackStore
    except ImportError:
        raise InputError("--feedback needs the feedback store (iadbench.line.feedback), which this install lacks") from None
    done = {i for entry in body.get("lineage") or [] for i in entry.get("feedback_ids") or []}
    paths, ids = [], []
    for entry in FeedbackStore(model_dir).entries():
        if entry.get("label") != FALSE_ALARM or entry.get("id") in done:
            continue
        files = [p for p in (model_dir / FEEDBACK_DIR).glob(f"{entry['id']}.*") if p.suffix != ".json"]
        if files:
            paths.append(files[0])
            ids.append(str(entry["id"]))
    return paths, ids


def update_model(model_dir: str | Path, good: str | Path | None, *, out: str | Path | None = None,
                 train: str | Path | None = None, feedback: bool = False, threads: int = 0,
                 log=None) -> UpdateResult:
    """Fold the images of ``good`` (and, with ``feedback``, the model's confirmed false
    alarms) into the model folder ``model_dir`` as its next version: in place, or into a
    new folder ``out`` leaving ``model_dir`` as it is."""
    import os

    import torch

    model_dir = Path(model_dir)
    say = log or (lambda _msg: None)
    if threads or not torch.get_num_threads():
        torch.set_num_threads(threads or os.cpu_count() or 1)
    if out is not None:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError("already exists and is not an empty folder; choose another --out", out)
    with locked(model_dir):
        started = time.perf_counter()
        fitted = load_model(model_dir)  # one line naming the folder: missing, unreadable, unknown detector
        body = read_model_json(model_dir)
        _refuse_labelled(fitted, model_dir)
        parent = int(body.get("version", 1))
        paths = good_images(Path(good)) if good is not None else []
        fb_paths, fb_ids = feedback_images(model_dir, body) if feedback else ([], [])
        if not paths and not fb_paths:
            raise InputError("no images to add (no --good folder and no false alarms in the feedback store)", model_dir)
        images = decode_all(paths + fb_paths, tuple(fitted.input_size), fitted.crop)
        det = fitted.detector
        from iadbench.capabilities import Updatable, implements

        build, refusal, note = None, None, None
        if implements(det, Updatable):
            method = str(getattr(det, "update_method", "update"))
            say(f"updating {det.name} by {method} with {len(images)} images ...")
            try:
                build = _incremental(fitted, body, images, det, parent)
            except InputError as exc:  # the detector cannot update this model (it says why)
                refusal = str(exc)
        if build is None:
            why = refusal or f"detector '{det.name}' has no incremental update"
            if train is None:
                raise InputError(f"{why}; refitting on the union needs the images it was fitted on: pass --train DIR", model_dir)
            method = "refit on the union of the training, earlier and new images"
            say(f"{why}: refitting on the union ...")
            build, note = _refit(fitted, body, Path(train), paths + fb_paths, threads)
        entry = lineage_entry(parent + 1, parent, len(images), method,
                              good=str(Path(good).resolve()) if good is not None else None, feedback_ids=fb_ids)
        target = out if out is not None else model_dir

        def write(tmp: Path) -> None:
            new_body = build(tmp)
            new_body["version"] = parent + 1
            new_body["lineage"] = [*(body.get("lineage") or []), entry]
            write_model_json(tmp, new_body)

        with build_folder(target, write, carry_from=model_dir) as tmp:
            if out is not None:
                if out.exists():
                    out.rmdir()
                tmp.rename(out)
            else:
                swap_in(tmp, model_dir)
    return UpdateResult(directory=target, version=parent + 1, parent=parent, images_added=len(images),
                        method=method, threshold_before=body.get("threshold"),
                        threshold=read_model_json(target).get("threshold"),
                        seconds=time.perf_counter() - started, note=note)


def _incremental(fitted, body: dict[str, Any], images: np.ndarray, det, parent: int):
    """Update the detector in memory now (all the arithmetic before any write); returns
    the writer of the new folder's artifact and model.json body."""
    from iadbench.api import FitContext

    seed = int((fitted.info or {}).get("seed", 0))
    with tempfile.TemporaryDirectory(prefix="iadbench-update-") as work:
        held = det.update(images, FitContext(seed=seed, workdir=Path(work)))
    cal = dict(body.get("calibration") or {})
    old_scores = list(cal.get("scores") or [])
    old_max = list(cal.get("map_maxima") or [])
    versions = list(cal.get("scored_by_version") or [parent] * len(old_scores))
    new_max = np.asarray(held.maps).reshape(len(held.maps), -1).max(axis=1) if len(held.maps) else np.zeros(0)
    scores = old_scores + [float(s) for s in held.scores]
    maxima = old_max + [float(m) for m in new_max]
    new_body = dict(body)
    _recalibrate(new_body, scores, maxima, versions + [parent + 1] * len(held.scores),
                 str(getattr(det, "out_of_fold", None) or cal.get("method") or "out-of-fold"), parent)
    info = dict(new_body.get("info") or {})
    info["train_images"] = int(info.get("train_images", 0)) + len(images)
    new_body["info"] = info

    def build(tmp: Path) -> dict[str, Any]:
        det.save(tmp)
        return new_body

    return build


def _recalibrate(body: dict[str, Any], scores: list[float], maxima: list[float], versions: list[int],
                 method: str, parent: int) -> None:
    """The model's rule applied again to ``scores`` (and to ``maxima`` for the pixel
    threshold); the threshold it replaces goes to ``threshold_history``."""
    import math

    from iadbench.calibration.rules import calibrate
    from iadbench.calibration.tail import MIN_TAIL_SCORES

    rule = str(body.get("threshold_rule"))
    history = list(body.get("threshold_history") or [])
    history.append({"rule": rule, "value": body.get("threshold"), "replaced": time.time(), "by": f"update to version {parent + 1}"})
    # Scores an older, smaller model gave run higher than the current one's: once the new
    # version has scored enough images of its own for a tail fit, the rule uses those
    # alone (on magnetic tile, keeping the old ones held the threshold at the first
    # model's and recall at 0); with fewer, old and new together.
    current = [i for i, v in enumerate(versions) if v == parent + 1]
    use = current if len(current) >= MIN_TAIL_SCORES else list(range(len(scores)))
    used = f"the {len(use)} images scored by version {parent + 1}" if use is current else f"all {len(use)} calibration scores"
    estimate, note = None, None
    try:
        estimate = calibrate(np.asarray([scores[i] for i in use], dtype=np.float64), rule)
    except Exception as exc:  # noqa: BLE001 - as fit_model: no threshold, and the note says why
        note = str(exc)
    try:
        pixel = calibrate(np.asarray([maxima[i] for i in use if i < len(maxima)], dtype=np.float64), rule).value if maxima else None
    except Exception:  # noqa: BLE001 - no outline on overlays then
        pixel = None
    value = estimate.value if estimate is not None and math.isfinite(estimate.value) else None
    body.update(threshold=value, pixel_threshold=pixel, threshold_history=history)
    body["calibration"] = {
        **(body.get("calibration") or {}), "method": method, "images": len(scores), "scores": scores,
        "map_maxima": maxima, "scored_by_version": versions, "calibrated_on": used,
        "estimate": estimate.to_dict() if estimate is not None else None,
    }
    body["info"] = {**(body.get("info") or {}), "threshold_note": note or (estimate.note if estimate is not None else None)}


def _refuse_labelled(fitted, model_dir: Path) -> None:
    """A model that learnt from labelled defects (``--defects-in-train``) cannot be
    updated: a refit on good images would silently drop what the labels taught."""
    learnt = (fitted.info or {}).get("supervision") or {}
    if getattr(fitted.detector, "supervision", "unsupervised") == "mixed" and learnt.get("k"):
        raise InputError(f"this model learnt from {learnt['k']} labelled defective images; an update refits on good "
                         "images only and would drop them: fit it again with the new good images instead", model_dir)


def _refit(fitted, body: dict[str, Any], train: Path, new_paths: list[Path], threads: int):
    """Refit the model's detector, with its params, seed and settings, on the union; the
    fit runs now, the writer writes its folder."""
    import os

    from iadbench.model.fit import fit_model, fit_options, save_model
    from iadbench.plugins import get_registry
    from iadbench.types import Sample, Split

    info = dict(fitted.info or {})
    old = good_images(train)
    for entry in body.get("lineage") or []:  # what earlier updates added
        if entry.get("good"):
            folder = Path(entry["good"])
            if not folder.is_dir():
                raise InputError(f"folder added by version {entry.get('version')} is gone; cannot refit on the union", folder)
            old += good_images(folder)
        for fid in entry.get("feedback_ids") or []:
            old += [p for p in (fitted.directory / FEEDBACK_DIR).glob(f"{fid}.*") if p.suffix != ".json"][:1]
    first, expected = len(good_images(train)), _first_fit_images(body, info)
    note = f"--train holds {first} images; version 1 was fitted on {expected}" if expected and first != expected else None
    spec = get_registry().detector(fitted.detector.name)
    params = dict(info.get("params") or fitted.detector.params)
    split = Split(dataset=str(info.get("dataset", "update")), category=str(info.get("category", "update")),
                  train=[Sample(path=p) for p in old + list(new_paths)], test=[])
    settings = dict(info.get("settings") or {})
    settings.setdefault("threshold_rule", body.get("threshold_rule"))
    settings.setdefault("predict_batch", 8)
    settings.setdefault("holdout_fraction", 0.1)
    with tempfile.TemporaryDirectory(prefix="iadbench-refit-") as work:
        result = fit_model(spec, params, split, seed=int(info.get("seed", 0)), threads=threads or os.cpu_count() or 1,
                           workdir=Path(work), crop=fitted.crop, **fit_options(settings))

    def build(tmp: Path) -> dict[str, Any]:
        save_model(result, tmp, {k: v for k, v in info.items() if k not in ("train_images", "holdout_images", "threshold_note")})
        return read_model_json(tmp)

    return build, note


def _first_fit_images(body: dict[str, Any], info: dict[str, Any]) -> int:
    """Images version 1 was fitted on: the count now less what updates added."""
    added = sum(int(e.get("images_added", 0)) for e in body.get("lineage") or [])
    return int(info.get("train_images", 0)) + int(info.get("holdout_images", 0)) - added

