"""Our OpenVINO export beside anomalib's own (issue #30, item 5): PaDiM and PatchCore
fitted by both on the same good images, with the same backbone (EfficientNet-Lite0, the
same ImageNet weights), layers and input size, each exported to OpenVINO IR by its own
code and timed through its own OpenVINO path in one process.

    python -m bench.peer [--category bottle] [--data ../shared/data/mvtec_ad/bottle]
        [--images 20] [--rounds 3] [--size 256] [--train 16] [--methods padim,patchcore]

Rows per method:

- ``ours``: ``iadbench.deploy.ir_cache.open_ir(det, "openvino")`` (what ``adbench export
  --format openvino`` writes: ONNX traced, checked against eager, converted, float32
  IR computed in float32, held to the parity gate). End to end = ``runtime.predict`` on
  a uint8 (1, H, W, 3) image: the graph takes uint8 and normalises inside; PaDiM's
  graph returns score and map; PatchCore's default (an approximate search: IVF-PQ since v8, HNSW before) runs its front graph
  (features) in OpenVINO and the search, score and map in Python.
- ``ours exact`` (PatchCore only): the same model with exact search, which exports as
  one graph (bank distances, score and map inside): the like-for-like graph to
  anomalib's, whose nearest-neighbour search is exact and in its graph too.
- ``anomalib``: anomalib 2.x's ``model.to_openvino(input_size=...)`` (its dynamo ONNX
  export, ``openvino.convert_model``, float32 IR) of the model fitted through our
  adapter (``anomalib.padim`` / ``anomalib.patchcore``: its own training code, offline
  weights), opened by ``anomalib.deploy.OpenVINOInferencer`` on the CPU with the same
  OpenVINO config as ours (2 threads, latency hint, one stream, f32). End to end =
  ``inferencer.predict`` on the same uint8 (H, W, 3) image: its pre-processing (to
  float32, /255, NCHW), the graph (resize, ImageNet mean/std normalisation, where ours
  uses the Lite0 weights' own mean = std = 0.5; model), its output
  dict and NumpyImageBatch. The adapter builds no anomalib post-processor, so the
  graph stops at raw ``pred_score`` and ``anomaly_map`` as ours does (anomalib's
  default would add min-max normalisation and thresholding: elementwise ops). Its
  PatchCore at 256 px is exported with a static batch of 1: the default export fixes
  the batch at 2 there and its inferencer then fails on one image (``_chunks_batch``).

``bare``: the compiled model alone (``infer_request.infer``) on an input prepared
untimed: uint8 for ours, float32 NCHW in [0, 1] for anomalib; for ours' approximate-search PatchCore
that is its front graph only (marked ``front``), not comparable to a whole graph.

Timing: batch 1, the same ``--images`` test images (evenly spaced over the test split,
good and defective), ``--rounds`` rounds; in each round every row runs one untimed
warm-up call, then each image once, timed. Rows take turns within a round, so load
drifts on a shared machine hit all alike. Median and p95 over rounds x images.
Ratios divide by our PaDiM's median (end to end, and bare) of the same run. Image
AUROC: each row's own end-to-end scores over the whole test split; ``vs eager``: the
largest relative score difference from its own eager PyTorch model on those images.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

METHODS = ("padim", "patchcore")
#: OpenVINO CPU config both sides compile with (ours sets it in OpenVinoRuntime).
OV_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}


@dataclass
class Data:
    source: str  # what was read, for the header
    train: np.ndarray  # uint8 (N, H, W, 3) good images the models fit on
    test: np.ndarray  # every test image of the category
    labels: np.ndarray  # 1 = defective
    timed: np.ndarray  # indices into test of the images timed


@dataclass
class Row:
    method: str
    impl: str
    predict: Callable[[np.ndarray], float]  # uint8 (1, H, W, 3) -> image score, its own OpenVINO path
    bare: Callable[[object], object]  # the compiled model alone, on ``bare_input``'s result
    bare_input: Callable[[np.ndarray], object]  # prepared untimed
    eager: Callable[[np.ndarray], np.ndarray]  # its own PyTorch model's scores
    config: str
    fit_s: float
    export_s: float
    bare_what: str = "whole graph"
    times: list[float] = field(default_factory=list)
    bare_times: list[float] = field(default_factory=list)
    auroc: float = float("nan")
    vs_eager: float = float("nan")


class UsageError(ValueError):
    """A bad command-line value: printed as one line, exit 2."""


# --- data -------------------------------------------------------------------------------


def _evenly(n: int, k: int) -> np.ndarray:
    """``k`` indices spread evenly over ``range(n)`` (all of them where k >= n)."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def load_data(category: str, data: str | None, size: int, train: int, images: int) -> Data:
    """The good training images and the test split of the factory's ``category``, or of
    the MVTec-like folder ``data`` (train/good, test/<defect>, ground_truth)."""
    from iadbench.datasets import resolve_dataset
    from iadbench.images import load_images
    from iadbench.plugins import get_registry

    if data is not None:
        if not Path(data).is_dir():
            raise UsageError(f"--data {data}: not a folder")
        ds = resolve_dataset(get_registry(), "folder", path=Path(data))
        cats = ds.categories()
        category = cats[0] if len(cats) == 1 else category
        source = f"folder {data}"
    else:
        ds = resolve_dataset(get_registry(), "factory")
        cats = ds.categories()
        source = f"factory/{category}"
    if category not in cats:
        raise UsageError(f"--category {category}: not in {source} (has {', '.join(cats)})")
    split = ds.split(category)
    good = [split.train[i] for i in _evenly(len(split.train), train)]
    test = list(split.test)
    labels = np.array([s.label for s in test])
    if len(set(labels)) < 2:
        raise UsageError(f"{source}: the test split needs good and defective images for AUROC")
    return Data(source=f"{source}, {len(good)} of {len(split.train)} good training images, {len(test)} test "
                       f"({int(labels.sum())} defective)",
                train=load_images(good, (size, size)), test=load_images(test, (size, size)), labels=labels,
                timed=_evenly(len(test), images))


# --- the models -------------------------------------------------------------------------


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_ours(method: str, data: Data):
    from iadbench.api import FitContext
    from iadbench.plugins import get_registry

    det = get_registry().detector(method).factory(input_size=int(data.train.shape[1]))
    t = time.perf_counter()
    det.fit(data.train, FitContext(seed=0))
    return det, time.perf_counter() - t


def ours(method: str, data: Data, threads: int):
    """(our fitted detector, its rows): exported by our OpenVINO path (open_ir, float32),
    one row, two for PatchCore (its default approximate search, and exact search as one graph)."""
    from iadbench.deploy.ir_cache import open_ir
    from iadbench.deploy.runtime import INPUT

    det, fit_s = fit_ours(method, data)
    variants = [(det, "ours")]
    if method == "patchcore":
        exact = copy.deepcopy(det)
        exact.use_search("exact")
        variants.append((exact, "ours exact"))
    rows = []
    for d, impl in variants:
        t = time.perf_counter()
        rt = open_ir(d, "openvino", None, threads)
        export_s = time.perf_counter() - t
        request = rt.compiled.create_infer_request()
        p = d.params
        config = f"{'+'.join(p['layers'])}"
        config += f", d={p['n_features']}" if method == "padim" else f", bank {d.memory_bank.shape[0]}, k={p['num_neighbors']}, {p['search']}"
        rows.append(Row(
            method, impl, predict=lambda x, rt=rt: float(rt.predict(x).scores[0]),
            bare=lambda feed, request=request: request.infer(feed), bare_input=lambda x: {INPUT: x},
            eager=lambda x, d=d: d.predict(x).scores, config=config, fit_s=fit_s, export_s=export_s,
            bare_what="front graph" if d.split_runtime else "whole graph",
        ))
    return det, rows


def _anomalib_params(method: str, det) -> dict:
    """anomalib's model configured as our ``det``: its backbone, layers, input size and
    PaDiM's channel count / PatchCore's coreset ratio and neighbours."""
    p = det.params
    same = {"input_size": det.input_size[0], "layers": list(p["layers"])}
    if method == "padim":
        return {**same, "n_features": p["n_features"]}
    return {**same, "coreset_sampling_ratio": p["coreset_ratio"], "num_neighbors": p["num_neighbors"]}


@contextlib.contextmanager
def _silent() -> Iterator[None]:
    """torch.onnx's dynamo exporter prints progress and logs warnings: kept off the table."""
    names = ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo", "torch.fx")
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def _chunks_batch(det) -> bool:
    """Whether anomalib's PatchCore export would fix the batch at 2: dynamo traces with
    an example batch of 2, and where 2 x patches exceeds its search chunk (1024 rows) the
    chunk loop specialises the batch, so the IR takes batches of 2 only and its own
    inferencer fails on one image (256 px: 32 x 32 patches). Exported then with a static
    batch of 1, anomalib's ``dynamic_shapes=None``."""
    from anomalib.models.image.patchcore.torch_model import DEFAULT_CHUNK_SIZE

    model = det.module.model
    with torch.no_grad():
        first = model.feature_extractor(torch.zeros(1, 3, *det.input_size))[model.layers[0]]
    return 2 * first.shape[-2] * first.shape[-1] > DEFAULT_CHUNK_SIZE


def theirs(method: str, data: Data, threads: int, workdir: Path, like) -> Row:
    """anomalib's model fitted through our adapter, exported by ``to_openvino`` and opened
    by its OpenVINOInferencer; configured like our detector ``like``."""
    from anomalib.deploy import OpenVINOInferencer

    from iadbench.api import FitContext
    from iadbench.plugins import get_registry

    det = get_registry().detector(f"anomalib.{method}").factory(**_anomalib_params(method, like))
    t = time.perf_counter()
    # anomalib's PaDiM inverts its 1024 covariances with one batched torch.linalg.inv, which
    # with 2 torch threads here hits "oneMKL ERROR ... SLASWP" and never returns: one thread
    with torch_threads(1 if method == "padim" else torch.get_num_threads()):
        det.fit(data.train, FitContext(seed=0))
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    # opset 18: the dynamo exporter's own; anomalib's default 14 fails to down-convert (Pad) and stays 18
    onnx_kwargs: dict = {"opset_version": 18}
    static = method == "patchcore" and _chunks_batch(det)
    if static:
        onnx_kwargs["dynamic_shapes"] = None  # a static batch of 1: see _chunks_batch
    with _silent(), torch.no_grad():
        xml = det.module.to_openvino(workdir / method, input_size=det.input_size, onnx_kwargs=onnx_kwargs)
    with contextlib.chdir(workdir):  # the inferencer makes ./openvino_cache (its compile cache)
        inferencer = OpenVINOInferencer(xml, device="CPU", config={**OV_CONFIG, "INFERENCE_NUM_THREADS": threads})
    export_s = time.perf_counter() - t
    batch = inferencer.model.input(0).get_partial_shape()[0]
    if batch.is_static and batch.get_length() != 1:
        raise RuntimeError(f"anomalib.{method}: its IR has a static batch of {batch.get_length()}; batch 1 cannot run")
    request = inferencer.model.create_infer_request()
    name = inferencer.input_blob.any_name
    p = det.params
    config = f"{'+'.join(p['layers'])}"
    if method == "padim":
        config += f", d={p['n_features']}"
    else:
        config += f", bank {det.module.model.memory_bank.shape[0]}, k={p['num_neighbors']}, exact"
    config += ", batch 1" if static else ""
    return Row(method, "anomalib",
               predict=lambda x: float(np.asarray(inferencer.predict(x[0]).pred_score).ravel()[0]),
               bare=lambda feed: request.infer(feed),
               bare_input=lambda x: {name: OpenVINOInferencer.pre_process(x.copy())},
               eager=lambda x: det.predict(x).scores, config=config, fit_s=fit_s, export_s=export_s)


# --- measuring --------------------------------------------------------------------------


def measure(rows: list[Row], data: Data, rounds: int) -> None:
    """Times each row's end-to-end and bare call on the timed images (see the module
    docstring for the protocol), then its image AUROC and agreement with eager."""
    ones = [data.test[i : i + 1] for i in data.timed]
    feeds = {id(row): [row.bare_input(x) for x in ones] for row in rows}
    for _ in range(rounds):
        for row in rows:
            row.predict(ones[0])  # warm-up
            for x in ones:
                t = time.perf_counter()
                row.predict(x)
                row.times.append((time.perf_counter() - t) * 1000)
            row.bare(feeds[id(row)][0])
            for feed in feeds[id(row)]:
                t = time.perf_counter()
                row.bare(feed)
                row.bare_times.append((time.perf_counter() - t) * 1000)
    for row in rows:
        scores = np.array([row.predict(data.test[i : i + 1]) for i in range(len(data.test))])
        row.auroc = float(roc_auc_score(data.labels, scores))
        eager = np.asarray(row.eager(data.test), dtype=np.float64)
        row.vs_eager = float((np.abs(scores - eager) / np.abs(eager).clip(min=1e-12)).max())


def _median(v: list[float]) -> float:
    return float(np.median(v))


def _p95(v: list[float]) -> float:
    return float(np.percentile(v, 95))


def table(rows: list[Row]) -> str:
    """One line per row; ratios against our PaDiM (the first row where it is absent)."""
    ref = next((r for r in rows if (r.method, r.impl) == ("padim", "ours")), rows[0])
    e_ref, b_ref = _median(ref.times), _median(ref.bare_times)
    head = (f"{'method':<10} {'impl':<11} {'config':<47} {'e2e ms':>7} {'p95':>6} {'x ref':>6} "
            f"{'bare ms':>8} {'p95':>6} {'x ref':>6} {'bare is':<11} {'AUROC':>6} {'vs eager':>8} {'fit s':>6} {'export s':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        e, b = _median(r.times), _median(r.bare_times)
        lines.append(
            f"{r.method:<10} {r.impl:<11} {r.config:<47} {e:7.1f} {_p95(r.times):6.1f} {e / e_ref:6.2f} "
            f"{b:8.1f} {_p95(r.bare_times):6.1f} {b / b_ref:6.2f} {r.bare_what:<11} {r.auroc:6.3f} {r.vs_eager:8.1e} "
            f"{r.fit_s:6.1f} {r.export_s:8.1f}")
    lines.append(f"x ref: against {ref.impl} {ref.method} ({e_ref:.1f} ms end to end, {b_ref:.1f} ms bare), same run")
    return "\n".join(lines)


def header(args: argparse.Namespace, data: Data) -> str:
    import anomalib
    import openvino

    from iadbench.devices import cpu_model

    return (f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs, load average {args.load:.1f} at start); "
            f"openvino {openvino.__version__.split('-')[0]}, anomalib {anomalib.__version__}, torch {torch.__version__}\n"
            f"data: {data.source}; input {args.size} px, EfficientNet-Lite0; batch 1, {args.threads} threads; "
            f"{len(data.timed)} images x {args.rounds} rounds per row (median, p95)")


def run(args: argparse.Namespace) -> list[Row]:
    from iadbench.features import cache_disabled

    args.load = os.getloadavg()[0]
    data = load_data(args.category, args.data, args.size, args.train, args.images)
    rows: list[Row] = []
    # no feature cache: every fit and eager score runs its backbone, and nothing is written
    with torch_threads(args.threads), cache_disabled(), tempfile.TemporaryDirectory(prefix="iadbench-peer-") as tmp:
        for method in args.methods:
            det, mine = ours(method, data, args.threads)
            rows += mine
            rows.append(theirs(method, data, args.threads, Path(tmp), det))
        if args.header:
            print(header(args, data), flush=True)
        measure(rows, data, args.rounds)
    return rows


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__.splitlines()[0])
    ap.add_argument("--category", default="bottle", help="factory category (default bottle), or with --data a category of that folder")
    ap.add_argument("--data", default=None, help="an MVTec-like category folder (train/good, test/..., ground_truth) instead of the factory")
    ap.add_argument("--images", type=int, default=20, help="test images timed per row and round (default 20, evenly spaced)")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds; rows take turns within each (default 3)")
    ap.add_argument("--size", type=int, default=256, help="input size in pixels, both sides (default 256, a multiple of 32)")
    ap.add_argument("--train", type=int, default=16, help="good training images both fit on (default 16, evenly spaced; "
                    "anomalib's PatchCore coreset takes ~4x as long at 32)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of padim,patchcore (default both)")
    ap.add_argument("--threads", type=int, default=2, help="inference threads, both runtimes (default 2)")
    args = ap.parse_args(argv)
    for name in ("images", "rounds", "train", "threads"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.size < 32 or args.size % 32:
        raise UsageError(f"--size must be a multiple of 32 (>= 32), got {args.size}")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad or not args.methods:
        raise UsageError(f"--methods {','.join(bad) or '(none)'}: not one of {', '.join(METHODS)}")
    args.header = True
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
        rows = run(args)
    except UsageError as exc:
        print(f"bench.peer: {exc}", file=sys.stderr)
        return 2
    print(table(rows))
    print(f"load average {os.getloadavg()[0]:.1f} at the end; the machine may be shared: compare ratios, not ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
