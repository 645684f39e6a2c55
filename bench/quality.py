"""Quality of our PaDiM and PatchCore on one MVTec AD category (default: bottle).

    python -m bench.quality [--category bottle] [--methods padim,patchcore] [--size 256]

Prints image AUROC, pixel AUROC (all test pixels), fit time and peak memory (RSS).
Data: $IADBENCH_MVTEC_ROOT, else <repo>/../shared/data/mvtec_ad.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from sklearn.metrics import roc_auc_score

from iadbench.api import FitContext, Sample
from iadbench.images import load_images, load_masks


def mvtec_root() -> Path:
    env = os.environ.get("IADBENCH_MVTEC_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mvtec_ad"


def mvtec_samples(category: str) -> tuple[list[Sample], list[Sample]]:
    root = mvtec_root() / category
    train = [Sample(p) for p in sorted((root / "train" / "good").glob("*.png"))]
    test = []
    for d in sorted((root / "test").iterdir()):
        for p in sorted(d.glob("*.png")):
            if d.name == "good":
                test.append(Sample(p))
            else:
                test.append(Sample(p, 1, d.name, root / "ground_truth" / d.name / f"{p.stem}_mask.png"))
    return train, test


class PeakRSS:
    """Samples this process's RSS in a thread (peak over a block)."""

    def __enter__(self):
        self.proc, self.peak, self.stop = psutil.Process(), 0, threading.Event()
        self.base = self.proc.memory_info().rss

        def run():
            while not self.stop.is_set():
                self.peak = max(self.peak, self.proc.memory_info().rss)
                time.sleep(0.02)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def make(name: str, **params):
    from iadbench.plugins import get_registry

    return get_registry().detector(name).factory(**params)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--category", default="bottle")
    ap.add_argument("--methods", default="padim,patchcore")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--param", action="append", default=[], help="name=value (int/float parsed)")
    ap.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (iadbench.devices)")
    args = ap.parse_args()
    from iadbench.devices import device_name, peak_gpu_mb, reset_peak_gpu_memory, resolve_device, torch_device

    device = torch_device(resolve_device(args.device))
    print(f"device: {device} ({device_name(device)})")
    params = {}
    for kv in args.param:
        k, v = kv.split("=", 1)
        for conv in (int, float):
            try:
                v = conv(v)
                break
            except ValueError:
                pass
        params[k] = v
    train, test = mvtec_samples(args.category)
    size = (args.size, args.size)
    x_train, x_test = load_images(train, size), load_images(test, size)
    labels = np.array([s.label for s in test])
    masks = load_masks(test, size)
    for name in args.methods.split(","):
        det = make(name, input_size=args.size, **params).to(device)
        reset_peak_gpu_memory(device)
        with PeakRSS() as mem:
            t = time.perf_counter()
            det.fit(x_train, FitContext(seed=0, device=device))
            fit_s = time.perf_counter() - t
        t = time.perf_counter()
        pred = det.predict(x_test)
        pred_s = time.perf_counter() - t
        img = roc_auc_score(labels, pred.scores)
        pix = roc_auc_score(masks.ravel(), pred.maps.ravel())
        print(
            f"{name} {args.category} {params}: image AUROC {img:.4f}  pixel AUROC {pix:.4f}  "
            f"fit {fit_s:.1f} s  predict {pred_s:.1f} s ({len(test)} images)  "
            f"peak RSS during fit {mem.peak / 2**30:.2f} GiB (+{(mem.peak - mem.base) / 2**30:.2f})"
            + (f"  peak GPU {gpu:.0f} MB" if (gpu := peak_gpu_mb(device)) is not None else "")
        )


if __name__ == "__main__":
    main()
