"""``--runtime auto`` for a model folder: the fastest runtime that passed the parity
gate on this machine, measured on the model's first open and recorded in the folder
(``runtime.json``), so later opens on the same machine do not measure again.

The candidates are eager, onnx (onnxruntime installed and the detector exports),
openvino, openvino-fp16 and openvino-bf16 (openvino installed), and openvino-int8 where the folder
holds an INT8 IR (``adbench export --format openvino-int8`` builds it: it needs good
images to calibrate on). Each non-eager one is held to the parity gate on the same
check images (iadbench.deploy.parity); the passing ones and eager are timed at batch 1
(median of ``CALLS`` calls after one untimed, each call the next check image). The
record is keyed by the machine (CPU model, ISA ceiling, cores, threads, the runtimes' versions) and
the artifact's fingerprint: any change measures again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.detector import Detector
from iadbench.devices import cpu_identity
from iadbench.errors import InputError

RECORD = "runtime.json"
CALLS = 10


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine_key(directory: Path, detector: Detector, threads: int) -> dict[str, Any]:
    from iadbench.deploy.graph_cache import fingerprint

    return {**cpu_identity(), "cores": os.cpu_count(), "threads": int(threads),
            "versions": {p: _version(p) for p in ("torch", "onnxruntime", "openvino", "nncf")},
            "fingerprint": fingerprint(directory, detector.name)}


def candidates(detector: Detector, directory: Path) -> list[str]:
    from iadbench.deploy.ir_cache import INT8
    from iadbench.deploy.openvino import ir_folder, openvino_available
    from iadbench.deploy.runtime import onnxruntime_available

    out = ["eager"]
    if not (detector.exportable or detector.split_runtime) or not onnxruntime_available():
        return out  # every graph starts as a checked ONNX graph
    out.append("onnx")
    if openvino_available():
        out += ["openvino", "openvino-fp16", "openvino-bf16"]
        if (ir_folder(directory, INT8, detector.split_runtime) / "model.xml").is_file():
            out.append(INT8)
    return out


def read_record(directory: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        record = json.loads((directory / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("key") == key and record.get("chosen") else None


def _median_ms(predict, images: np.ndarray, calls: int = CALLS) -> float:
    predict(images[:1])  # untimed: first-call allocations
    times = []
    for i in range(calls):
        one = images[i % len(images) : i % len(images) + 1]
        t = time.perf_counter()
        predict(one)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def measure(detector: Detector, directory: Path, threads: int, open_named) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the record, the open runtimes by name): every candidate opened (``open_named(name)``),
    gated and timed."""
    from iadbench.deploy import parity
    from iadbench.features import cache_disabled

    checks = parity.check_set(detector.input_size)
    reference = parity.eager_reference(detector, checks)
    ms, refused, checked, opened = {}, {}, {}, {}
    for name in candidates(detector, directory):
        try:
            rt = open_named(name)
            if name != "eager":
                checked[name] = parity.gate(rt, reference, checks).as_dict()
        except InputError as exc:
            refused[name] = str(exc)
            continue
        with cache_disabled():
            ms[name] = _median_ms(rt.predict, checks.images)
        opened[name] = rt
    chosen = min(ms, key=ms.get)
    record = {"chosen": chosen, "ms_per_image": {k: round(v, 2) for k, v in ms.items()}, "refused": refused,
              "checks": checked, "check_images": checks.source, "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "key": machine_key(directory, detector, threads)}
    return record, opened


def write_record(directory: Path, record: dict[str, Any]) -> bool:
    from iadbench.deploy.export import write_graph

    try:
        write_graph(directory / RECORD, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    except OSError:
        return False
    return True


def note(record: dict[str, Any], measured_now: bool) -> str:
    """One line for the user: what auto chose and why."""
    times = ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(record["ms_per_image"].items(), key=lambda kv: kv[1]))
    refused = f"; refused: {', '.join(record['refused'])}" if record.get("refused") else ""
    when = "measured now" if measured_now else f"measured {record.get('measured', '?')}, {RECORD}"
    return f"runtime {record['chosen']} (auto: fastest that passed on this machine, {when}: {times}{refused})"
