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
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.jsonio import json_default
from iadbench.model.fit import fit_model, fit_options, save_model
from iadbench.runner.cost import (
    dir_size_mb,
    peak_rss_mb,
    per_image_latency_ms,
    percentile,
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


def run_cell(cell: Cell, cell_dir: Path, threads: int) -> dict[str, Any]:
    """Do the cell's work in this process and return the record's payload; for a cell of
    the unified setting (``cell.categories``), one model fitted on every category's good
    images and a payload per category under ``per_category``."""
    import torch

    from iadbench.datasets import resolve_dataset
    from iadbench.devices import describe_device, peak_gpu_mb, reset_peak_gpu_memory, torch_device
    from iadbench.features import cache_disabled
    from iadbench.plugins import get_registry
    from iadbench.runner.plan import PROTOCOLS

    torch.set_num_threads(threads)
    s = cell.settings
    registry = get_registry()
    spec = registry.detector(cell.detector)
    seed_everything(cell.seed)
    device = torch_device(getattr(cell, "device", "cpu"))  # cuda: the one GPU the executor left visible
    reset_peak_gpu_memory(device)

    dataset = resolve_dataset(
        registry,
        cell.dataset,
        data_root=Path(cell.data_root) if cell.data_root else None,
        path=Path(cell.dataset_path) if cell.dataset_path else None,
        **cell.dataset_params,
    )
    defects, supervision = [], None
    if cell.categories:  # the unified setting: one model for the dataset
        from iadbench.model.unified import union_split

        splits = {c: dataset.split(c) for c in cell.categories}
        train_split = union_split(cell.dataset, splits)
    else:
        split = dataset.split(cell.category)
        if cell.defects_reserve or cell.defects_in_train:
            from iadbench.model.defects import take_defects

            split, defects, supervision = take_defects(split, cell.defects_in_train, cell.defects_reserve, cell.seed)
        splits, train_split = {cell.category: split}, split

    fitted = fit_model(spec, cell.params, train_split, seed=cell.seed, threads=threads, workdir=cell_dir / "work",
                       device=device, defects=defects, crop=PROTOCOLS[cell.protocol], **fit_options(s))
    if supervision is not None:
        supervision["learns"] = fitted.detector.supervision == "mixed"
    detector = fitted.detector
    # Each category's test set, scored with the feature cache off so that pass measures
    # throughput honestly as well (fit_model already warmed the model up).
    # Latency is measured on the first category's test images; the others' are let go as
    # soon as they are scored (a unified cell would otherwise hold every category's).
    files = {c: _files_dir(cell, cell_dir, c) for c in splits}
    bodies, test_images = {}, None
    for category, split_c in splits.items():
        bodies[category], images = _evaluate(fitted, split_c, files[category], registry, s)
        test_images = images if test_images is None else test_images

    # Cost, with the feature cache off so that no number benefits from earlier cells.
    predict_fn, backbone_fn, runtime = _latency_runtime(cell.runtime, detector, threads, device)
    if backbone_fn is not None and device != "cpu":
        backbone_fn = _synchronised(backbone_fn, device)
    with cache_disabled():
        latencies = per_image_latency_ms(predict_fn, test_images, s["warmup"], s["latency_images"])
        backbone = None
        if backbone_fn is not None:
            backbone = per_image_latency_ms(backbone_fn, test_images, s["warmup"], s["latency_images"])

    artifact = save_model(fitted, cell_dir / "model", {
        "detector": spec.name, "params": cell.params, "dataset": cell.dataset, "category": cell.category,
        "seed": cell.seed, "cell_key": cell.key, "settings": s, "device": device,
        **({"categories": list(cell.categories)} if cell.categories else {}),
        **({"supervision": supervision} if supervision else {}),
    })
    for folder in files.values():  # beside each category's scores, where the report reads both
        _write_calibration(folder / "calibration.csv",
                           [train_split.train[i] for i in fitted.calibration_idx], fitted.calibration_scores)
    shared = {
        "threshold": {
            "rule": s["threshold_rule"],
            "value": fitted.threshold,
            "holdout_images": int(len(fitted.hold_idx)),
            "pixel_value": fitted.pixel_threshold,
            "display_range": list(fitted.display_range),
            "calibration": fitted.calibration_info(),
            **({"note": fitted.threshold_note} if fitted.threshold_note else {}),
        },
        "input_size": list(fitted.size),
        **describe_device(device),
        "training": _training(spec, detector, cell.params),
        "supervision": supervision,
        "protocol": cell.protocol,
        "artifact": str(artifact),
    }
    cost = {
        "fit_s": fitted.fit_s,
        # Images whose backbone features fit() read from the shared cache (an
        # earlier cell computed them): fit_s then excludes that forward pass.
        "fit_feature_cache_hits": fitted.fit_cache_hits,
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p95": percentile(latencies, 95),
        "backbone_latency_ms_p50": percentile(backbone, 50) if backbone else None,
        "throughput_batch": s["predict_batch"],
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": peak_gpu_mb(device),  # None on the CPU
        "artifact_mb": dir_size_mb(artifact),
        "threads": threads,
        # what latency_ms_* and backbone_latency_ms_p50 ran on (adbench run --runtime)
        **runtime,
    }
    for body in bodies.values():
        body["cost"] = {**cost, **body["cost"]}
        body["counts"]["train"] = int(len(fitted.fit_idx))
        body["counts"]["holdout"] = int(len(fitted.hold_idx))
    if not cell.categories:
        return {**shared, **bodies[cell.category]}
    return {**shared, "per_category": bodies}


def _files_dir(cell: Cell, cell_dir: Path, category: str) -> Path:
    """Where a category's scores and gallery go: the cell folder, or for a unified cell
    one folder per category inside it (an executor moves the cell folder whole)."""
    if not cell.categories:
        return cell_dir
    from iadbench.model.unified import category_dir

    folder = category_dir(cell_dir, category)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _evaluate(fitted, split, files: Path, registry, s: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
    """One category's test set scored and measured: (its part of the record, with the
    cost of its scoring pass; its test images at the input size), its scores and
    gallery written into ``files``."""
    from iadbench.model.evaluate import evaluate
    from iadbench.visual.gallery import write_gallery

    ev = evaluate(fitted, split, metrics=registry.metrics, predict_batch=s["predict_batch"])
    _write_scores(files / "scores.csv", split.test, ev.prediction.scores)
    gallery_error = None
    try:  # the report's pictures are extra, like the intervals
        write_gallery(files, split.test, ev.images, ev.prediction.maps, ev.masks, ev.prediction.scores)
    except Exception as exc:  # noqa: BLE001
        gallery_error = f"{type(exc).__name__}: {exc}"
    return {
        "metrics": ev.metrics,
        "metric_notes": ev.metric_notes,
        "intervals": ev.intervals,
        **({"gallery_error": gallery_error} if gallery_error else {}),
        "verdicts": ev.verdicts,
        "counts": {
            "train": 0,
            "holdout": 0,
            "test": int(len(split.test)),
            "test_anomalous": int(ev.labels.sum()),
            "test_masks": bool(ev.masks is not None),
        },
        "split_notes": split.notes,
        "cost": {
            "predict_s": ev.predict_s,
            # images/s over the whole test set at predict_batch, cache off
            "throughput_ips": len(ev.images) / ev.predict_s if ev.predict_s > 0 and len(ev.images) else None,
        },
    }, ev.images


def _latency_runtime(requested: str, detector, threads: int, device: str = "cpu"):
    """(predict, backbone forward or None, cost fields) for the latency measurement:
    eager, or with ``onnx`` (``openvino``, ``openvino-fp16``) the detector's runtime of that
    name and its backbone in onnxruntime.
    A detector that cannot export, or one on a GPU (onnxruntime here runs on the CPU),
    is measured eager, and the record says why."""
    backbone = detector.backbone_forward if detector.has_backbone else None
    if requested == "eager":
        return detector.predict, backbone, {"runtime": "eager"}
    if device != "cpu":
        return detector.predict, backbone, {"runtime": "eager", "runtime_note": f"{requested} requested: the cell ran on {device}"}
    from iadbench.deploy.opening import open_backbone, open_runtime
    from iadbench.errors import InputError

    try:
        rt = open_runtime(detector, requested, threads)
    except InputError as exc:
        return detector.predict, backbone, {"runtime": "eager", "runtime_note": f"{requested} requested: {exc}"}
    if backbone is not None:
        try:
            backbone = open_backbone(detector, threads)
        except InputError:
            backbone = None  # an eager backbone beside an onnx end-to-end figure would mislead
    return rt.predict, backbone, {"runtime": rt.name, "runtime_detail": rt.detail}


def _synchronised(fn, device: str):
    """``fn`` that returns once the GPU has finished its work: a backbone forward
    returns nothing to copy back, so without this its latency is the launch's alone."""
    import torch

    def timed(images):
        fn(images)
        torch.cuda.synchronize(torch.device(device))

    return timed


def _training(spec, detector, params: dict[str, Any]) -> dict[str, Any] | None:
    """Training length used next to the published one (None for one-pass detectors),
    so a leaderboard built elsewhere can tell a smoke run from the method's length."""
    published = spec.published_training
    if not published:
        return None
    # What the detector reports it did (a step cap may end training before max_epochs),
    # else the param that sets the length.
    done = dict(detector.training_done or {})
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
