"""The exported graph cached in the model folder: built once and reused, rebuilt when
the weights change or the file is broken, kept in memory where the folder cannot be
written, and reused by `adbench export`."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from iadbench.api import FitContext

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'iadbench[deploy]')")

from iadbench.deploy import export as export_module  # noqa: E402
from iadbench.deploy.graph_cache import FRONT_GRAPH, WHOLE_GRAPH  # noqa: E402
from iadbench.deploy.runtime import OnnxRuntime, SplitOnnxRuntime  # noqa: E402
from iadbench.model import open_model, write_model  # noqa: E402
from iadbench.plugins import get_registry  # noqa: E402
from testkit import cli  # noqa: E402


@pytest.fixture
def traces(monkeypatch):
    """How many graphs were traced (the slow part the cache saves)."""
    calls = []
    real = export_module.graph_bytes

    def counting(det, front=False):
        calls.append(front)
        return real(det, front=front)

    monkeypatch.setattr(export_module, "graph_bytes", counting)
    return calls


def _folder(tmp_path, det, name="model"):
    return write_model(tmp_path / name, det, threshold=1.0, threshold_rule="max", display_range=(0.0, 2.0), info={})


def test_graph_is_cached_reused_and_rebuilt_when_the_weights_change(padim, images, tmp_path, traces):
    folder = _folder(tmp_path, padim)
    first = open_model(folder, "onnx")
    assert traces == [False] and (folder / WHOLE_GRAPH).is_file()
    assert isinstance(first.runtime, OnnxRuntime) and first.runtime.graph_source.startswith("built")
    stamp = (folder / WHOLE_GRAPH).stat().st_mtime_ns

    again = open_model(folder, "onnx")
    assert traces == [False], "the cached graph was traced again"
    assert again.runtime.graph_source == f"cached {WHOLE_GRAPH}"
    assert (folder / WHOLE_GRAPH).stat().st_mtime_ns == stamp
    np.testing.assert_allclose(again.score(images[4:]).scores, padim.predict(images[4:]).scores, rtol=1e-3)
    assert again.runtime.metadata["check"]["max_score_rel_diff"] <= 1e-3

    # refitted on other images: same folder, new weights -> the stale graph is rebuilt
    torch.set_num_threads(2)
    refit = get_registry().detector("padim").factory(input_size=64)
    refit.fit(images[2:6], FitContext(seed=0))
    _folder(tmp_path, refit)
    fresh = open_model(folder, "onnx")
    assert traces == [False, False]
    assert fresh.runtime.metadata["fingerprint"] != again.runtime.metadata["fingerprint"]
    expected = refit.predict(images[6:])
    np.testing.assert_allclose(fresh.score(images[6:]).scores, expected.scores, rtol=1e-3)
    assert not np.allclose(expected.scores, padim.predict(images[6:]).scores, rtol=1e-3)  # the refit differs


def test_a_broken_cache_file_is_rebuilt(padim, images, tmp_path, traces):
    folder = _folder(tmp_path, padim)
    (folder / WHOLE_GRAPH).write_bytes(b"half a graph")
    model = open_model(folder, "onnx")
    assert traces == [False]
    assert OnnxRuntime(folder / WHOLE_GRAPH).metadata["fingerprint"] == model.runtime.metadata["fingerprint"]
    assert [p.name for p in folder.iterdir() if p.suffix == ".tmp"] == []


def test_a_read_only_folder_keeps_the_graph_in_memory(padim, images, tmp_path, traces, monkeypatch):
    folder = _folder(tmp_path, padim)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    # root writes through chmod, so the refusal a read-only mount gives is staged here
    monkeypatch.setattr(export_module, "tempfile", types.SimpleNamespace(mkstemp=refuse))
    folder.chmod(0o555)
    try:
        model = open_model(folder, "onnx")
        assert not (folder / WHOLE_GRAPH).exists()
        assert "in memory" in model.runtime.graph_source
        np.testing.assert_allclose(model.score(images[4:]).scores, padim.predict(images[4:]).scores, rtol=1e-3)
        (result,) = model.predict([images[5]])
        assert result.score == pytest.approx(float(padim.predict(images[5:6]).scores[0]), rel=1e-3)
    finally:
        folder.chmod(0o755)


def test_split_runtime_caches_its_front_graph(patchcore, images, tmp_path, traces):
    folder = _folder(tmp_path, patchcore)
    first = open_model(folder, "onnx")
    second = open_model(folder, "onnx")
    assert traces == [True] and (folder / FRONT_GRAPH).is_file() and not (folder / WHOLE_GRAPH).exists()
    assert isinstance(second.runtime, SplitOnnxRuntime) and second.runtime.graph_source == f"cached {FRONT_GRAPH}"
    np.testing.assert_allclose(second.score(images[4:]).scores, first.score(images[4:]).scores, rtol=1e-6)


def test_export_reuses_the_cached_graph(padim, tmp_path, traces):
    folder = _folder(tmp_path, padim)
    open_model(folder, "onnx")
    out = tmp_path / "padim.onnx"
    assert cli("export", str(folder), "--out", str(out)) == 0
    assert traces == [False], "export traced a graph the folder already held"
    meta = OnnxRuntime(out).metadata
    assert meta["threshold"] == 1.0 and meta["display_range"] == [0.0, 2.0] and meta["check"]["images"] == 3
