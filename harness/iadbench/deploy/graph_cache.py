"""The exported graph, cached in the model folder so that only a model's first onnx
start pays for tracing and checking it.

``model.onnx`` (the whole graph) or ``front.onnx`` (the split runtime's front graph)
sits beside model.safetensors, written atomically once it passed the export check, with
in its ONNX metadata the check's result and a fingerprint: a hash of the detector
artifact (config.json, model.safetensors), the detector plugin's version and
GRAPH_FORMAT. A graph whose fingerprint differs (refitted weights, a new plugin version,
an older graph format) or that does not load is rebuilt and replaced; a folder that
cannot be written keeps the graph in memory, so a read-only model still runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from iadbench.deploy import export
from iadbench.detector import CONFIG_FILE, WEIGHTS_FILE, Detector
from iadbench.errors import InputError, UnknownNameError

#: Bump when graphs built by this code differ from those of the code before: every
#: cached graph is then rebuilt on its next use.
GRAPH_FORMAT = 2  # 2: pixel maps as one matrix per axis
WHOLE_GRAPH, FRONT_GRAPH = "model.onnx", "front.onnx"


def graph_path(directory: str | Path, front: bool = False) -> Path:
    return Path(directory) / (FRONT_GRAPH if front else WHOLE_GRAPH)


def fingerprint(directory: str | Path, detector_name: str) -> str:
    """What a cached graph must have been built from to be reused."""
    h = hashlib.sha256(f"iadbench graph {GRAPH_FORMAT} {detector_name} {_plugin_version(detector_name)}\n".encode())
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        with open(Path(directory) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def open_cached(directory: str | Path, detector: Detector, front: bool = False, rtol: float = 1e-3, threads: int = 2):
    """The onnx runtime of the model folder ``directory`` (holding ``detector``): its
    cached graph where fresh, else one built, checked and cached. ``graph_source`` on
    the runtime says which."""
    path = graph_path(directory, front)
    want = fingerprint(directory, detector.name)
    if path.is_file():
        try:
            runtime = export.graph_runtime(detector, path, front, threads)
        except InputError:
            runtime = None  # unreadable: rebuilt below
        if runtime is not None and _fresh(runtime.metadata, want):
            _accept(runtime.metadata["check"], rtol)
            runtime.graph_source = f"cached {path.name}"
            return runtime
    built = export.checked_graph(detector, front=front, rtol=rtol, threads=threads)
    meta = _cache_metadata(detector, built.check, want, front)
    stored = _store(path, export.with_metadata(built.graph, meta))
    built.runtime.metadata = meta
    built.runtime.graph_source = f"built and cached as {path.name}" if stored else "built in memory (model folder not writable)"
    return built.runtime


def cached_graph(directory: str | Path, detector: Detector, rtol: float = 1e-3, threads: int = 2) -> tuple[bytes, dict[str, Any]]:
    """(the whole graph with its metadata, that metadata) of the model folder, from the
    cache where fresh, else built, checked and cached: what ``adbench export`` writes."""
    path = graph_path(directory)
    want = fingerprint(directory, detector.name)
    if path.is_file():
        try:
            graph = path.read_bytes()
            meta = export.read_metadata(graph)
        except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt, whatever broke it
            meta = None
        if meta is not None and _fresh(meta, want):
            _accept(meta["check"], rtol)
            return graph, meta
    built = export.checked_graph(detector, rtol=rtol, threads=threads)
    meta = _cache_metadata(detector, built.check, want, False)
    graph = export.with_metadata(built.graph, meta)
    _store(path, graph)
    return graph, meta


def _cache_metadata(detector: Detector, check, want: str, front: bool) -> dict[str, Any]:
    return {**export.export_metadata(detector, check), "fingerprint": want, "graph_format": GRAPH_FORMAT, "front": front}


CHECK_FIELDS = ("images", "max_score_rel_diff", "max_map_rel_diff")


def _fresh(meta: dict[str, Any], want: str) -> bool:
    check = meta.get("check")
    return (meta.get("fingerprint") == want and meta.get("graph_format") == GRAPH_FORMAT
            and isinstance(check, dict) and all(k in check for k in CHECK_FIELDS))


def _accept(check: dict[str, Any], rtol: float) -> None:
    """A cached graph passed its check at the rtol of its day; refuse it past this one's."""
    result = export.ExportCheck(**{k: check[k] for k in CHECK_FIELDS})
    if not result.passes(rtol):
        raise export.ExportRefused(result.refusal(rtol))


def _store(path: Path, graph: bytes) -> bool:
    """Write the graph into the model folder; False where the folder cannot be written."""
    try:
        export.write_graph(path, graph)
    except OSError:
        return False
    return True


def _plugin_version(name: str) -> str:
    from iadbench.plugins import get_registry

    try:
        return str(get_registry().detector(name).version)
    except UnknownNameError:
        return "?"
