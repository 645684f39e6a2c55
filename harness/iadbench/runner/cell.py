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
from iadbench.model.fit import fit_model, save_model
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
    """Do the cell's work in this process and return the record's payload."""
    import torch

    from iadbench.datasets import resolve_dataset
    from iadbench.devices import describe_device, peak_gpu_mb, reset_peak_gpu_memory, torch_device
    from iadbench.features import cache_disabled
    from iadbench.model.evaluate import evaluate
    from iadbench.model.fit import fit_options
    from iadbench.plugins import get_registry
    from iadbench.visual.gallery import write_gallery

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
    split = dataset.split(cell.category)
    fitted = fit_model(spec, cell.params, split, seed=cell.seed, threads=threads, workdir=cell_dir / "work",
                       device=device, **fit_options(s))
    detector, size, threshold, threshold_note = fitted.detector, fitted.size, fitted.threshold, fitted.threshold_note
    fit_idx, hold_idx = fitted.fit_idx, fitted.hold_idx
    # The test set is scored with the feature cache off, so this pass measures
    # throughput honestly as well (fit_model already warmed the model up).
    ev = evaluate(fitted, split, metrics=registry.metrics, predict_batch=s["predict_batch"])
    test_images, masks, labels, prediction = ev.images, ev.masks, ev.labels, ev.prediction
    metrics, reasons, intervals, verdict = ev.metrics, ev.metric_notes, ev.intervals, ev.verdicts

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
            "predict_s": ev.predict_s,
            "latency_ms_p50": percentile(latencies, 50),
            "latency_ms_p95": percentile(latencies, 95),
            "backbone_latency_ms_p50": percentile(backbone, 50) if backbone else None,
            # images/s over the whole test set at predict_batch, cache off
            "throughput_ips": len(test_images) / ev.predict_s if ev.predict_s > 0 and len(test_images) else None,
            "throughput_batch": s["predict_batch"],
            "peak_rss_mb": peak_rss_mb(),
            "peak_gpu_mb": peak_gpu_mb(device),  # None on the CPU
            "artifact_mb": dir_size_mb(artifact),
            "threads": threads,
            # what latency_ms_* and backbone_latency_ms_p50 ran on (adbench run --runtime)
            **runtime,
        },
        "input_size": list(size),
        **describe_device(device),
        "training": _training(spec, detector, cell.params),
        "split_notes": split.notes,
        "artifact": str(artifact),
    }


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
