"""ONNX export parity, its refusal, and runtime selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iadbench.api import FitContext, InputError
from iadbench.types import Prediction

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'iadbench[deploy]')")

from iadbench.deploy.export import export_onnx  # noqa: E402
from iadbench.deploy.opening import open_runtime, resolve_runtime  # noqa: E402
from iadbench.deploy.runtime import EagerRuntime, OnnxRuntime, SplitOnnxRuntime  # noqa: E402
from iadbench.plugins import get_registry  # noqa: E402
from iadbench.precision import float32_predictions  # noqa: E402


@pytest.mark.parametrize("name", ["padim", "patchcore", "feature_ae", "conv_ae", "efficientad"])
def test_export_matches_eager_with_dynamic_batch(name, fitted, images, tmp_path, reuse_graphs):
    det = fitted[name]
    out = tmp_path / f"{name}.onnx"
    check = export_onnx(det, out, images=images[4:6])
    assert out.is_file() and check.max_score_rel_diff <= 1e-3
    rt = OnnxRuntime(out, threads=1)
    assert rt.metadata["detector"] == name and rt.input_size == (64, 64)
    test = images[4:]
    with float32_predictions(det):  # the graph is float32; efficientad predicts in bf16 where it can
        eager = det.predict(test)
    batched = rt.predict(test)  # batch 4, traced at batch 2
    single = [rt.predict(test[i : i + 1]) for i in range(len(test))]
    assert batched.scores.shape == (4,) and batched.maps.shape == (4, 64, 64)
    np.testing.assert_allclose(batched.scores, eager.scores, rtol=1e-3)
    np.testing.assert_allclose(batched.maps, eager.maps, rtol=1e-3, atol=1e-3 * np.abs(eager.maps).max())
    np.testing.assert_allclose(np.concatenate([s.scores for s in single]), batched.scores, rtol=1e-5)


def test_export_refuses_a_graph_that_disagrees_and_keeps_the_old_file(padim, images, tmp_path, monkeypatch, reuse_graphs):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous export")
    real = padim.predict

    def off_by_one_percent(x):
        p = real(x)
        return Prediction(scores=p.scores * 1.01, maps=p.maps)

    monkeypatch.setattr(padim, "predict", off_by_one_percent)
    with pytest.raises(InputError, match="export refused"):
        export_onnx(padim, out, images=images[4:6])
    assert out.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary left behind


def test_runtime_selection(padim, images):
    baseline = get_registry().detector("pixel_gaussian").factory(input_size=64)
    baseline.fit(images[:4], FitContext(seed=0))
    assert not baseline.exportable and padim.exportable
    assert resolve_runtime(padim, "auto") == "onnx"
    assert resolve_runtime(baseline, "auto") == "eager"
    assert resolve_runtime(padim, "eager") == "eager"
    with pytest.raises(InputError, match="cannot be exported"):
        resolve_runtime(baseline, "onnx")
    with pytest.raises(InputError, match="runtime must be one of"):
        resolve_runtime(padim, "tensorrt")
    with pytest.raises(InputError, match="no export graph"):
        export_onnx(baseline, "unused.onnx")
    assert isinstance(open_runtime(baseline, "auto"), EagerRuntime)


def test_auto_runtime_keeps_a_bfloat16_detector_eager(efficientad):
    """A detector predicting in bfloat16 is faster eager than as a float32 graph: auto
    keeps it eager; asked for, onnx still works."""
    assert efficientad.exportable
    with float32_predictions(efficientad):
        assert resolve_runtime(efficientad, "auto") == "onnx"
    before, efficientad.predict_precision = efficientad.predict_precision, "bf16"  # as auto resolves on AMX
    try:
        assert resolve_runtime(efficientad, "auto") == "eager"
        assert resolve_runtime(efficientad, "onnx") == "onnx"
    finally:
        efficientad.predict_precision = before


def test_patchcore_onnx_runtime_splits_at_the_search(patchcore, images):
    """An approximate search (IVF-PQ, the default) cannot live in a graph: the onnx
    runtime runs the backbone and embedding in onnxruntime and the faiss search in Python."""
    rt = open_runtime(patchcore, "onnx")
    assert isinstance(rt, SplitOnnxRuntime) and rt.name == "onnx"
    eager, got = patchcore.predict(images[4:]), rt.predict(images[4:])
    np.testing.assert_allclose(got.scores, eager.scores, rtol=1e-4)
    assert np.abs(got.maps - eager.maps).max() <= 1e-3 * np.abs(eager.maps).max()
    halves = rt.finish(rt.features(images[4:]))  # the two halves bench.deploy times apart
    np.testing.assert_array_equal(halves.scores, got.scores)
    np.testing.assert_array_equal(halves.maps, got.maps)
    try:  # exact search stays one graph
        patchcore.use_search("exact")
        assert isinstance(open_runtime(patchcore, "onnx"), OnnxRuntime)
    finally:
        patchcore.use_search("ivfpq")
    with pytest.raises(InputError, match="images must be uint8"):
        rt.predict(images[4:, :32])


def test_onnx_runtime_refuses_bad_files_and_inputs(tmp_path, graphs, images):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(InputError, match="not a loadable ONNX graph"):
        OnnxRuntime(bad)
    with pytest.raises(InputError, match="not found"):
        OnnxRuntime(tmp_path / "missing.onnx")
    with pytest.raises(InputError, match="uint8"):
        OnnxRuntime(graphs["padim"]).predict(images[:1, :32, :32])


def test_export_graphs_never_touch_the_live_detector(padim, images):
    # a graph shares no module with the detector: switching the graph to training
    # mode (as tracing does and undoes) leaves the detector's batch norms in eval
    before = padim.predict(images[4:6]).scores
    wrapper = torch.nn.Sequential(padim.export_module())
    wrapper.train(True)
    assert not any(m.training for m in padim.extractor.modules())
    np.testing.assert_array_equal(padim.predict(images[4:6]).scores, before)


@pytest.mark.parametrize("size", [(64, 64), (72, 96)])
def test_trunk_with_fixed_size_has_constant_same_padding(padim, size):
    """TF-"same" convolutions get constant pads for the graph's input size: the trunk's
    features equal the extractor's own (timm's Conv2dSame), and its ONNX graph computes
    no pads from shapes (no Shape node is left to fold at run time)."""
    import onnx
    from timm.layers import Conv2dSame

    from iadbench.deploy.export import onnx_bytes
    from iadbench.deploy.graph import StaticSamePadConv, TrunkFeatures, TrunkOutputs

    fixed = TrunkFeatures(padim.extractor, padim.layers, size).eval()
    assert not any(isinstance(m, Conv2dSame) for m in fixed.modules())
    assert sum(isinstance(m, StaticSamePadConv) for m in fixed.modules()) >= 1
    x = torch.randint(0, 256, (2, *size, 3), dtype=torch.uint8)
    with torch.no_grad():
        ref = TrunkFeatures(padim.extractor, padim.layers)(x)
        got = fixed(x)
    for name in padim.layers:
        torch.testing.assert_close(got[name], ref[name], rtol=0, atol=0)

    blob = onnx_bytes(TrunkOutputs(fixed), size)
    graph = onnx.load_from_string(blob)
    assert not [n for n in graph.graph.node if n.op_type == "Shape"]
    # the pads live in the Conv nodes (a separate Pad is not fused by onnxruntime), and
    # onnxruntime's features still equal timm's Conv2dSame
    assert not [n for n in graph.graph.node if n.op_type == "Pad"]
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    for name, got_rt in zip(padim.layers, session.run(None, {"images": x.numpy()})):
        np.testing.assert_allclose(got_rt, ref[name].numpy(), rtol=1e-4, atol=1e-4 * float(ref[name].abs().max()))
