"""Cost benchmark of our PaDiM and PatchCore (EfficientNet-Lite0, 256 px, MVTec bottle).

    python -m bench.methods [--category bottle] [--repeats 20]

Every figure is printed beside a reference measured in the same process, because
absolute times drift on a shared machine:
  * latency per image at batch 1 (feature cache disabled), as a ratio to the
    backbone's forward alone (targets: PaDiM <= 1.3x; PatchCore shown);
  * fit time on the full train set with the cache disabled (backbone included) and
    peak RSS (targets: PaDiM <= 30 s, PatchCore <= 120 s and < 3 GB), as a ratio to
    the backbone forward over the same images.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bench.quality import PeakRSS, make, mvtec_samples
from iadbench.api import FitContext
from iadbench.features import cache_disabled
from iadbench.images import load_images


def _interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median time of each callable, run round-robin so machine load drifts hit all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--category", default="bottle")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (iadbench.devices)")
    args = ap.parse_args()
    from iadbench.devices import device_name, resolve_device, torch_device

    device = torch_device(resolve_device(args.device))
    print(f"device: {device} ({device_name(device)})")
    size = (args.size, args.size)
    train, test = mvtec_samples(args.category)
    x_train, x_test = load_images(train, size), load_images(test, size)

    padim, patchcore = make("padim", input_size=args.size).to(device), make("patchcore", input_size=args.size).to(device)

    def backbone(images):  # returns once the device is done: nothing comes back to wait on
        padim.backbone_forward(images)
        if device != "cpu":
            torch.cuda.synchronize(device)

    with cache_disabled():
        t = time.perf_counter()
        for i in range(0, len(x_train), 16):
            backbone(x_train[i : i + 16])
        backbone_train = time.perf_counter() - t
        print(f"backbone forward over {len(x_train)} train images: {backbone_train:.1f} s")
        fits = {}
        for det in (padim, patchcore):
            with PeakRSS() as mem:
                t = time.perf_counter()
                det.fit(x_train, FitContext(seed=0, device=device))
                fits[det.name] = (time.perf_counter() - t, mem.peak)
        one = x_test[:1]
        lat = _interleaved_medians(
            {"backbone": lambda: backbone(one), "padim": lambda: padim.predict(one),
             "patchcore": lambda: patchcore.predict(one)},
            args.repeats,
        )
    ref = lat.pop("backbone")
    print(f"backbone forward, batch 1: {ref * 1e3:.1f} ms (median, interleaved with the methods)")
    for name, s in lat.items():
        print(f"{name} predict, batch 1: {s * 1e3:.1f} ms = {s / ref:.2f}x backbone")
    for name, (s, peak) in fits.items():
        print(
            f"{name} fit on {len(x_train)} images (no cache): {s:.1f} s = {s / backbone_train:.2f}x the "
            f"backbone over them; peak RSS {peak / 2**30:.2f} GiB"
        )
    bank = patchcore.memory_bank.shape
    print(f"patchcore memory bank {tuple(bank)}; scoring = one matrix product per image ({bank[0]} x {bank[1]})")
    np.random.seed(0)


if __name__ == "__main__":
    main()
