"""Deployment benchmarks: PatchCore's search against exact search, runtimes side by
side, and a load test of the web service.

    python -m bench.deploy search MODEL_DIR --dataset mvtec --path ../shared/data/mvtec_ad --category bottle
    python -m bench.deploy latency MODEL_DIR... [--category bottle] [--repeats 20] [--openvino [VARIANTS]]
        [--dataset folder --path ../shared/data/magnetic_tile] [--isa avx2]
    python -m bench.deploy load MODEL_DIR [--requests 500] [--concurrency 50]

``search``: predicts the test split of the model's dataset with exact search and with
each approximate one, and prints image and pixel AUROC (sklearn, all test pixels at the
model's input size), the largest image-score difference and the per-image latency of
the search variants, measured round-robin in one process.

``latency``: model folders (``adbench fit``) scored on their category's test images,
batch 1, 2 threads, in one process: per model, its backbone alone in onnxruntime and the
model end to end in eager (and in float32 eager too where it predicts in bfloat16, with
the scores' difference and both AUROCs) and in onnxruntime, interleaved round-robin in blocks of
``BLOCK`` calls after an untimed one, each call the next test image; then the largest
relative score difference and image/pixel AUROC of both runtimes over the test set.
With ``--openvino`` the OpenVINO runtimes too (float32, fp16, bf16 and INT8, or those named, calibrated on
``--calibration`` good training images of the category, six more held out as the gate's
good check images; never test images; with accuracy control, its gate line saying how
many convolutions stayed INT8), each line with its ratio to eager.
``--isa avx2`` runs the same under an AVX2 ceiling (``AVX2_CEILING``): on a machine with
AVX-512 and bfloat16 units, what torch, OpenVINO and numpy give a CPU without them
(an emulation: the clocks, caches and onnxruntime's kernels stay this CPU's).
Models are timed one after another, not interleaved with each other: a line runs one
model, and a 47 MB PatchCore bank read between two calls of another model evicts that
model's weights from the caches (PaDiM 12.7 ms alone, 19.8 ms interleaved with two
PatchCores).

``load``: starts ``adbench serve MODEL_DIR`` on a free loopback port and sends
``--requests`` requests, ``--concurrency`` at a time: good test images and, every
tenth request, a bad upload (empty, text, truncated PNG, 40000x40000 bomb header, 30
MB body). Checks: no 5xx, each bad upload its 4xx, each good image the score of the
model opened eager in this process (``open_model``) within 1e-3; prints p50/p95 latency,
requests/s and the server's resident memory before and after.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from iadbench.artifacts import load_detector
from iadbench.errors import InputError
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
    variants = ([("exact", "exact", {})] + [(f"hnsw ef={ef}", "hnsw", {"hnsw_ef": ef}) for ef in args.ef]
                + [(f"ivfpq probe={probe}", "ivfpq", {"ivf_probe": probe}) for probe in args.probe])
    for name, search, knobs in variants:
        det.use_search(search, **knobs)
        det.predict(x[:1])  # builds the index
        t = time.perf_counter()
        pred = det.predict(x)
        ms = (time.perf_counter() - t) * 1000 / len(x)
        img, pix = _aurocs(pred.scores, pred.maps, labels, masks)
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


def _mvtec_test(category: str, size: tuple[int, int], limit: int | None = None, dataset: str = "mvtec",
                path: str | None = None):
    split = _test_split(dataset, path or str(_mvtec_root()), category)
    test = split.test[:limit] if limit else split.test
    labels = np.array([t.label for t in test])
    return test, load_images(test, size), load_masks(test, size), labels


def _mvtec_root() -> Path:
    from bench.quality import mvtec_root

    return mvtec_root()


BLOCK = 5  # timed calls in a row per callable and round (after one untimed call)


def _interleaved(fns: dict, repeats: int, block: int = BLOCK) -> dict[str, float]:
    """Median ms of each callable, round-robin in blocks so load drifts hit all alike:
    each round runs every callable once untimed, then ``block`` timed calls. A line
    calls one model again and again; timing single calls round-robin would charge each
    one for the caches the previous one (another runtime, another bank) overwrote."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            fn()
            for _ in range(block):
                t = time.perf_counter()
                fn()
                times[k].append((time.perf_counter() - t) * 1000)
    return {k: float(np.median(v)) for k, v in times.items()}


#: Test images whose front features are kept to time a split runtime's Python half alone.
SPLIT_IMAGES = 48


def _in_float32(det):
    """``det.predict`` forced to float32 (a detector that predicts in bfloat16)."""
    from iadbench.precision import float32_predictions

    def predict(images: np.ndarray):
        with float32_predictions(det):
            return det.predict(images)

    return predict


def _cycling(predict, images: np.ndarray):
    """A call scoring the next test image (batch 1) each time: PatchCore's exact re-check
    takes more passes on some images than on others, so one image repeated is not its
    latency."""
    ones = itertools.cycle([images[i : i + 1] for i in range(len(images))])
    return lambda: predict(next(ones))


def latency(args: argparse.Namespace) -> None:
    from iadbench.deploy.export import graph_bytes
    from iadbench.deploy.opening import open_backbone
    from iadbench.deploy.runtime import OnnxRuntime
    from iadbench.features import cache_disabled
    from iadbench.model import open_model

    torch.set_num_threads(args.threads)
    os.environ["IADBENCH_FEATURE_CACHE"] = "0"
    from iadbench.devices import cpu_model

    ceiling = os.environ.get("ONEDNN_MAX_CPU_ISA")
    print(f"{cpu_model()}{f', ISA ceiling {ceiling} (torch, OpenVINO, numpy, OpenBLAS, faiss; not onnxruntime)' if ceiling else ''}; "
          f"batch 1, {args.threads} threads, medians of {args.repeats} rounds x {BLOCK} calls, interleaved within each model; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at start")
    prepared, groups = [], []
    for directory in args.models:  # everything built first, then timed model by model
        model = open_model(directory, "onnx", threads=args.threads)  # what predict and serve use
        det = model.detector
        test, x, masks, labels = _mvtec_test(args.category, det.input_size, dataset=args.dataset, path=args.path)
        runtimes = {"onnx": model.runtime}
        if det.split_runtime:  # the whole graph as `adbench export` writes it, for comparison
            runtimes["onnx graph"] = OnnxRuntime(graph_bytes(det), threads=args.threads)
        if args.openvino:
            runtimes.update(_openvino_runtimes(args, directory, det))
        bank = f", bank {det.memory_bank.shape[0]}, search {det.search}" if hasattr(det, "memory_bank") else ""
        width = f", student width {det.student_width:g}" if getattr(det, "student_width", 1) != 1 else ""
        name = f"{det.name} {det.input_size[0]} px{bank}{width}"
        prepared.append((name, directory, det, runtimes, x, masks, labels))
        fns = {(directory, "eager"): _cycling(det.predict, x)}  # keyed by folder: two models may share a name
        if det.predict_precision == "bf16":  # its float32 eager path beside the bf16 one
            fns[(directory, "eager fp32")] = _cycling(_in_float32(det), x)
        try:  # conv_ae learns from pixels: no backbone to time alone
            fns[(directory, "backbone onnx")] = _cycling(open_backbone(det, args.threads), x)
        except InputError:
            pass
        for label, rt in runtimes.items():
            fns[(directory, label)] = _cycling(rt.predict, x)
            if getattr(rt, "finish", None) is not None:  # a split runtime: its halves alone too
                fns[(directory, label, "front")] = _cycling(rt.features, x)
                fronts = [rt.features(x[i : i + 1]) for i in range(min(len(x), SPLIT_IMAGES))]
                fns[(directory, label, "finish")] = lambda ones=itertools.cycle(fronts), finish=rt.finish: finish(next(ones))
        groups.append(fns)
    ms = {}
    with cache_disabled():
        for fns in groups:
            ms.update(_interleaved(fns, args.repeats))
    for name, directory, det, runtimes, x, masks, labels in prepared:
        with cache_disabled():
            eager = det.predict(x)
        ie, pe = _aurocs(eager.scores, eager.maps, labels, masks)
        backbone = ms.get((directory, "backbone onnx"))
        print(f"{name} ({directory}): backbone onnx {'-' if backbone is None else f'{backbone:.1f}'} ms | end to end eager "
              f"{ms[(directory, 'eager')]:.1f} ms | image AUROC eager {ie:.4f}, pixel AUROC {pe:.4f}")
        if (directory, "eager fp32") in ms:
            with cache_disabled():
                f32 = _in_float32(det)(x)
            rel = np.abs(f32.scores - eager.scores) / np.abs(f32.scores)
            i32, p32 = _aurocs(f32.scores, f32.maps, labels, masks)
            print(f"    eager in bfloat16 against float32 ({ms[(directory, 'eager fp32')]:.1f} ms, {ms[(directory, 'eager fp32')] / ms[(directory, 'eager')]:.2f}x "
                  f"the bf16 time): scores max rel diff {rel.max():.1e} | image AUROC fp32 {i32:.4f}, pixel AUROC {p32:.4f}")
        for label, rt in runtimes.items():
            with cache_disabled():
                got = rt.predict(x)
            rel = np.abs(got.scores - eager.scores) / np.abs(eager.scores)
            io_, po = _aurocs(got.scores, got.maps, labels, masks)
            ratio = ms[(directory, label)] / ms[(directory, "eager")]
            print(f"    {label} ({rt.detail}): {ms[(directory, label)]:.1f} ms ({ratio:.2f}x eager) | scores max rel diff "
                  f"{rel.max():.1e} over {len(x)} test images | image AUROC {io_:.4f} ({io_ - ie:+.4f}), "
                  f"pixel AUROC {po:.4f} ({po - pe:+.4f})")
            if (directory, label, "front") in ms:
                front, finish, both = ms[(directory, label, "front")], ms[(directory, label, "finish")], ms[(directory, label)]
                print(f"        halves alone: front graph {front:.1f} ms + the rest in Python {finish:.1f} ms = {front + finish:.1f} ms; "
                      f"one after the other {both:.1f} ms ({both - front - finish:+.1f} ms: the two thread pools and the caches)")
    # bank scaling: each PatchCore line against the smallest bank given, same runtime
    banks = [(det.memory_bank.shape[0], directory) for _, directory, det, *_ in prepared if hasattr(det, "memory_bank")]
    if len(banks) > 1:
        rows0, ref = min(banks)
        for rows, other in sorted(banks)[1:]:
            print(f"bank {rows} / {rows0} rows ({rows / rows0:.1f}x): onnx latency {ms[(other, 'onnx')] / ms[(ref, 'onnx')]:.2f}x, "
                  f"eager {ms[(other, 'eager')] / ms[(ref, 'eager')]:.2f}x")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


def _openvino_runtimes(args: argparse.Namespace, directory: str, det) -> dict:
    """The OpenVINO runtimes of a model folder, INT8 calibrated on the category's good
    training images (rebuilt each run: the calibration is this bench's choice)."""
    from iadbench.deploy.ir_cache import INT8, open_ir
    from iadbench.deploy.openvino import int8_note

    split = _test_split(args.dataset, args.path or str(_mvtec_root()), args.category)
    train = load_images(split.train[: args.calibration + 6], det.input_size)
    out = {}
    every = ("openvino", "openvino-fp16", "openvino-bf16", INT8)
    chosen = every if args.openvino == "all" else tuple(v.strip() for v in args.openvino.split(","))
    if set(chosen) - set(every):
        raise SystemExit(f"--openvino {args.openvino}: choose from all, {', '.join(every)}")
    for variant in chosen:
        t = time.perf_counter()
        try:
            out[variant] = open_ir(det, variant, directory, args.threads, calibration=train[: args.calibration],
                                   good=train[args.calibration :], rebuild=variant == INT8)
        except InputError as exc:
            print(f"    {variant} refused: {exc}")
            continue
        c = out[variant].check
        print(f"    {variant} gate ({time.perf_counter() - t:.0f} s to build{int8_note(out[variant].metadata)}): scores {c['max_score_rel_diff']:.1e} relative, "
              f"rank correlation {c['spearman']:.4f}, image AUROC {c['image_auroc']:.4f} ({c['image_auroc_eager']:.4f} eager), "
              f"pixel AUROC {c['pixel_auroc']:.4f} ({c['pixel_auroc_eager']:.4f}) on {c['images']} check images")
    return out


def load(args: argparse.Namespace) -> None:
    import asyncio
    import socket
    import subprocess

    import httpx
    import psutil

    from iadbench.deploy.uploads import bad_uploads, png_of
    from iadbench.images import decode_image
    from iadbench.model import open_model

    model = open_model(args.model, "eager")
    test, _, _, _ = _mvtec_test(args.category, model.input_size, limit=args.images)
    natives = [decode_image(t.path) for t in test]
    expected = [r.score for r in model.predict(natives)]
    goods = [png_of(im) for im in natives]
    bads = bad_uploads(goods[0])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "iadbench", "serve", str(args.model), "--port", str(port), "--runtime", args.runtime,
           "--threads", str(args.threads)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise SystemExit("server did not start: " + server.stderr.read().decode()[-2000:])
        info = httpx.get(base + "/model").json()
        proc = psutil.Process(server.pid)
        # warm-up: one burst at the test's concurrency, so batches of every size have run
        # (onnxruntime's memory arena keeps what the largest batch needed)
        async def warm():
            async with httpx.AsyncClient(base_url=base, timeout=600) as client:
                await asyncio.gather(*(client.post("/predict", files={"image": ("w.png", g, "image/png")})
                                       for g in (goods * args.concurrency)[: args.concurrency]))

        asyncio.run(warm())
        rss_before = proc.memory_info().rss / 2**20
        plan = []
        bad_names = list(bads)
        for k in range(args.requests):
            if k % 10 == 9:
                name = bad_names[(k // 10) % len(bad_names)]
                plan.append(("bad", name, bads[name][0], bads[name][1]))
            else:
                i = k % len(goods)
                plan.append(("good", i, goods[i], {200}))

        async def run_all():
            sem = asyncio.Semaphore(args.concurrency)
            limits = httpx.Limits(max_connections=args.concurrency)
            async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:
                async def one(item):
                    kind, key, body, codes = item
                    async with sem:
                        t = time.perf_counter()
                        try:
                            r = await client.post("/predict", files={"image": ("u.png", body, "image/png")})
                            status, payload = r.status_code, (r.json() if r.headers.get("content-type", "").startswith("application/json") else {})
                        except httpx.HTTPError as exc:  # a server that closes on a 413 mid-upload
                            status, payload = -1, {"detail": f"{type(exc).__name__}"}
                        return kind, key, codes, status, payload, (time.perf_counter() - t) * 1000

                t0 = time.perf_counter()
                results = await asyncio.gather(*(one(item) for item in plan))
                return results, time.perf_counter() - t0

        results, wall = asyncio.run(run_all())
        rss_after = proc.memory_info().rss / 2**20
    finally:
        server.terminate()
        server.wait(30)
    five = [r for r in results if r[3] >= 500]
    wrong_bad = [(r[1], r[3], r[4].get("detail")) for r in results if r[0] == "bad" and r[3] not in r[2]]
    wrong_good = [(r[1], r[3]) for r in results if r[0] == "good" and (r[3] != 200 or abs(r[4]["score"] - expected[r[1]]) > 1e-3 * abs(expected[r[1]]))]
    good_ms = np.array([r[5] for r in results if r[0] == "good"])
    print(f"load test: {args.requests} requests, {args.concurrency} concurrent, {len(goods)} distinct bottle test images, "
          f"runtime {info['runtime']}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  5xx: {len(five)} | bad uploads without their 4xx: {len(wrong_bad)} {wrong_bad[:5]} | "
          f"good images with a wrong status or score: {len(wrong_good)} {wrong_good[:5]}")
    print(f"  good requests: p50 {np.percentile(good_ms, 50):.0f} ms, p95 {np.percentile(good_ms, 95):.0f} ms; "
          f"{len(results) / wall:.1f} requests/s over {wall:.1f} s")
    print(f"  server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after ({rss_after - rss_before:+.0f} MB)")
    if five or wrong_bad or wrong_good or rss_after - rss_before > 200:
        raise SystemExit(1)


#: What an ISA ceiling of AVX2 sets: oneDNN (torch's convolutions, OpenVINO's CPU
#: plugin), torch's own kernels, MKL, numpy's SIMD loops, OpenBLAS and faiss (its
#: dynamic dispatch). onnxruntime picks its kernels from the CPU's flags with no
#: ceiling to set.
AVX2_CEILING = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR", "OPENBLAS_CORETYPE": "Haswell",
                "FAISS_SIMD_LEVEL": "AVX2"}


def isa_ceiling(isa: str) -> dict[str, str]:
    """The environment that caps this process's libraries at ``isa`` (only avx2 is known)."""
    if isa.lower() != "avx2":
        raise SystemExit(f"--isa {isa}: only avx2 is known")
    return AVX2_CEILING


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("search")
    s.add_argument("model")
    s.add_argument("--dataset", default="mvtec")
    s.add_argument("--path", required=True)
    s.add_argument("--category", required=True)
    s.add_argument("--ef", type=int, action="append", default=None, help="HNSW efSearch to try (repeatable)")
    s.add_argument("--probe", type=int, action="append", default=None, help="IVF-PQ lists probed to try (repeatable)")
    s.add_argument("--threads", type=int, default=2)
    lat = sub.add_parser("latency")
    lat.add_argument("models", nargs="+")
    lat.add_argument("--category", default="bottle")
    lat.add_argument("--repeats", type=int, default=10)
    lat.add_argument("--threads", type=int, default=2)
    lat.add_argument("--dataset", default="mvtec")
    lat.add_argument("--path", default=None, help="dataset root (default: the MVTec AD root bench.quality finds)")
    lat.add_argument("--openvino", nargs="?", const="all", default=None, metavar="VARIANTS",
                     help="time the OpenVINO runtimes too: all, or some of openvino,openvino-fp16,openvino-bf16,openvino-int8")
    lat.add_argument("--calibration", type=int, default=32, help="good training images INT8 is calibrated on")
    lat.add_argument("--isa", default=None, help="avx2: run under an AVX2 ceiling (AVX2_CEILING), what a CPU without "
                     "AVX-512 and bfloat16 units gets from torch, OpenVINO, numpy and faiss; onnxruntime ignores it")
    ld = sub.add_parser("load")
    ld.add_argument("model")
    ld.add_argument("--category", default="bottle")
    ld.add_argument("--requests", type=int, default=500)
    ld.add_argument("--concurrency", type=int, default=50)
    ld.add_argument("--images", type=int, default=20)
    ld.add_argument("--runtime", default="auto")
    ld.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.cmd == "latency" and args.isa and os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() != args.isa.upper():
        # the ceiling binds when oneDNN loads: start again under it
        os.execve(sys.executable, [sys.executable, "-m", "bench.deploy", *sys.argv[1:]], {**os.environ, **isa_ceiling(args.isa)})
    if args.cmd == "latency":
        return latency(args)
    if args.cmd == "load":
        return load(args)
    if args.cmd == "search":
        args.ef = args.ef or [16, 64]
        args.probe = args.probe or [8]  # the detector's default (ivf_probe)
        search_check(args)


if __name__ == "__main__":
    main()
