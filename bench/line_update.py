"""A simulated line on Magnetic Tile: fit on the first 100 good training images, then
``adbench update`` with 100 more at a time up to all 600; after each step the image
AUROC on the test set and the false-alarm rate the model's threshold achieves on the
test set's good images, beside a full refit on the same images (time and scores).

    python -m bench.line_update [--detector padim] [--size 256] [--step 100] [--data PATH]

Times are wall seconds on whatever else the machine runs; the ratio within one run is the
figure to read. Features are cached (iadbench.features) in a temp cache of this run, so
the test set's backbone pass is paid once; fits and updates run with the cache off, so
each pays its own backbone pass.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", default="padim")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--step", type=int, default=100)
    ap.add_argument("--first", type=int, default=100)
    ap.add_argument("--set", action="append", default=[], help="detector param KEY=VALUE (ints/floats parsed)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "magnetic_tile")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if not (args.data / "train").is_dir():
        raise SystemExit(f"{args.data}: Magnetic Tile not found (see its SOURCE.md)")
    work = Path(tempfile.mkdtemp(prefix="line-update-"))
    from iadbench.backbones import cache_root

    converted = cache_root() / "backbones"
    (work / "cache").mkdir()
    if converted.is_dir():
        (work / "cache" / "backbones").symlink_to(converted, target_is_directory=True)
    os.environ["IADBENCH_CACHE"] = str(work / "cache")
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def run(args, work: Path) -> None:
    import torch
    from sklearn.metrics import roc_auc_score

    from iadbench.datasets import resolve_dataset
    from iadbench.features import cache_disabled
    from iadbench.images import load_images
    from iadbench.line.update import update_model
    from iadbench.model import fit_model, load_model, save_model
    from iadbench.model.fit import predict_batched
    from iadbench.plugins import get_registry
    from iadbench.types import Split

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    registry = get_registry()
    dataset = resolve_dataset(registry, "folder", path=args.data)
    (category,) = dataset.categories()
    split = dataset.split(category)
    params = {"input_size": args.size, **{k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}}
    spec = registry.detector(args.detector)
    size = (args.size, args.size)
    labels = np.array([s.label for s in split.test])
    good_test = labels == 0
    t = time.perf_counter()
    test_images = load_images(split.test, size)
    print(f"{args.detector} {params} on magnetic tile: {len(split.train)} good training images, "
          f"{len(split.test)} test ({good_test.sum()} good); test images decoded in {time.perf_counter() - t:.1f} s", flush=True)

    def measure(directory: Path) -> tuple[float, float, float]:
        model = load_model(directory)
        scores = predict_batched(model.detector.predict, test_images, 16, size).scores
        fpr = float(np.mean(scores[good_test] > model.threshold)) if np.isfinite(model.threshold) else float("nan")
        recall = float(np.mean(scores[~good_test] > model.threshold)) if np.isfinite(model.threshold) else float("nan")
        return float(roc_auc_score(labels, scores)), fpr, recall

    def refit(k: int) -> tuple[Path, float]:
        sub = Split(split.dataset, split.category, split.train[:k], [])
        out = work / f"refit{k}"
        t = time.perf_counter()
        with cache_disabled():  # a fit pays its backbone pass, as the update does
            fitted = fit_model(spec, params, sub, seed=0, holdout_fraction=0.1, threshold_rule="fpr:0.005",
                               threads=torch.get_num_threads(), workdir=work / "fitwork", predict_batch=16)
        save_model(fitted, out, {"detector": args.detector, "params": params, "seed": 0,
                                 "settings": {"threshold_rule": "fpr:0.005"}})
        return out, time.perf_counter() - t

    line, seconds = refit(args.first)
    model = work / "line"
    shutil.copytree(line, model)
    auc, fpr, rec = measure(model)
    print("false-alarm rate (FPR) and recall at the model's threshold (fpr:0.005), on the test set")
    print(f"{'images':>6} {'update s':>9} {'refit s':>8} {'AUROC upd':>10} {'AUROC refit':>11} "
          f"{'FPR upd':>8} {'FPR refit':>9} {'rec upd':>8} {'rec refit':>9}")
    print(f"{args.first:>6} {'-':>9} {seconds:>8.1f} {auc:>10.4f} {auc:>11.4f} {fpr:>8.4f} {fpr:>9.4f} {rec:>8.4f} {rec:>9.4f}", flush=True)
    for k in range(args.first + args.step, len(split.train) + 1, args.step):
        batch = work / f"good{k}"
        batch.mkdir()
        for s in split.train[k - args.step : k]:
            (batch / s.path.name).symlink_to(s.path)
        t = time.perf_counter()
        with cache_disabled():
            update_model(model, batch)
        upd_s = time.perf_counter() - t
        auc_u, fpr_u, rec_u = measure(model)
        ref, ref_s = refit(k)
        auc_r, fpr_r, rec_r = measure(ref)
        shutil.rmtree(ref)
        print(f"{k:>6} {upd_s:>9.1f} {ref_s:>8.1f} {auc_u:>10.4f} {auc_r:>11.4f} {fpr_u:>8.4f} {fpr_r:>9.4f} {rec_u:>8.4f} {rec_r:>9.4f}", flush=True)
    sizes = {p.name: p.stat().st_size for p in model.iterdir() if p.is_file()}
    print(f"model folder files (bytes): {sizes}")


if __name__ == "__main__":
    main()
