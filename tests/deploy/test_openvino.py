"""OpenVINO runtimes (float32, fp16, INT8) and the parity gate every non-eager runtime
passes: a good graph passes, a broken one (score negated, weights perturbed) is
refused with its numbers; ``--runtime auto`` measures once per model folder."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from iadbench.api import InputError

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'iadbench[deploy]')")
pytest.importorskip("openvino", reason="openvino not installed (pip install 'iadbench[openvino]')")

from iadbench.deploy import choice, parity  # noqa: E402
from iadbench.deploy.opening import open_runtime  # noqa: E402
from iadbench.deploy.openvino import OpenVinoRuntime, convert, ir_folder  # noqa: E402
from iadbench.model import open_model, write_model  # noqa: E402
from iadbench.precision import float32_predictions  # noqa: E402
from testkit import cli  # noqa: E402


def _negated_score(graph: bytes) -> bytes:
    """The graph with its score output negated (its map untouched)."""
    proto = onnx.load_from_string(graph)
    score = next(o for o in proto.graph.output if o.name == "score")
    for node in proto.graph.node:
        node.output[:] = ["score_raw" if x == "score" else x for x in node.output]
        node.input[:] = ["score_raw" if x == "score" else x for x in node.input]
    proto.graph.node.append(helper.make_node("Neg", ["score_raw"], [score.name]))
    return proto.SerializeToString()


def _perturbed(graph: bytes, scale: float) -> bytes:
    """The graph with its largest weight tensor scaled by ``scale``."""
    proto = onnx.load_from_string(graph)
    init = max(proto.graph.initializer, key=lambda t: np.prod(t.dims) if t.data_type == onnx.TensorProto.FLOAT else 0)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(scale), init.name))
    return proto.SerializeToString()


@pytest.fixture(scope="module")
def padim_checks(padim):
    checks = parity.check_set(padim.input_size)
    return checks, parity.eager_reference(padim, checks)


def test_check_set_paints_a_defect_into_a_copy_of_each_good_image():
    good = np.full((3, 48, 48, 3), 100, dtype=np.uint8)
    checks = parity.check_set((48, 48), good)
    assert checks.images.shape == (6, 48, 48, 3) and checks.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert not checks.masks[:3].any() and all(m.sum() == 8 * 8 for m in checks.masks[3:])
    changed = (checks.images[3:] != checks.images[:3]).any(axis=3)
    np.testing.assert_array_equal(changed, checks.masks[3:])  # painted exactly where the mask says


def test_parity_numbers_match_an_independent_computation(padim, padim_checks, graphs):
    checks, reference = padim_checks
    rt = OpenVinoRuntime(convert(graphs["padim"]), "openvino")
    got = rt.predict(checks.images)
    check = parity.compare("openvino", reference, got, checks)
    assert check.max_score_rel_diff == pytest.approx(np.max(np.abs(got.scores - reference.scores) / np.abs(reference.scores)))
    assert check.spearman == pytest.approx(spearmanr(reference.scores, got.scores).statistic)
    assert check.image_auroc == pytest.approx(roc_auc_score(checks.labels, got.scores))
    assert check.pixel_auroc_eager == pytest.approx(roc_auc_score(checks.masks.ravel(), reference.maps.ravel()))
    assert not check.failures(parity.BOUNDS["openvino"]), check


def test_gate_refuses_a_negated_score_and_perturbed_weights(padim, padim_checks, graphs):
    checks, reference = padim_checks
    parity.gate(OpenVinoRuntime(convert(graphs["padim"]), "openvino"), reference, checks)  # the good graph passes
    negated = OpenVinoRuntime(convert(_negated_score(graphs["padim"])), "openvino-int8")
    with pytest.raises(parity.ParityRefused, match=r"^openvino-int8 refused on 12 check images: .*rank correlation with eager -1\.0000"):
        parity.gate(negated, reference, checks)
    perturbed = OpenVinoRuntime(convert(_perturbed(graphs["padim"], 1.01)), "openvino")
    with pytest.raises(parity.ParityRefused, match=r"scores differ from eager by .* relative \(limit 0\.001\)"):
        parity.gate(perturbed, reference, checks)
    # a recorded check is held to today's bound when a cached graph is opened
    recorded = parity.compare("openvino", reference, perturbed.predict(checks.images), checks).as_dict()
    with pytest.raises(parity.ParityRefused):
        parity.accept(recorded, parity.BOUNDS["openvino"])


@pytest.mark.parametrize(("name", "variant"), [("padim", "openvino"), ("patchcore", "openvino"), ("efficientad", "openvino"),
                                             ("patchcore", "openvino-fp16"), ("efficientad", "openvino-fp16"), ("efficientad", "openvino-bf16")])
def test_openvino_matches_eager(name, variant, fitted, images, reuse_graphs):
    det = fitted[name]
    rt = open_runtime(det, variant)
    assert rt.name == variant and rt.check["images"] == 12
    with float32_predictions(det):
        eager = det.predict(images[4:])
    got = rt.predict(images[4:])  # batch 4
    rtol = parity.BOUNDS[variant].rtol
    np.testing.assert_allclose(got.scores, eager.scores, rtol=2 * rtol)  # other images than the gate's
    assert np.abs(got.maps - eager.maps).max() <= 2 * rtol * np.abs(eager.maps).max()
    assert ("front graph" in rt.detail) == bool(det.split_runtime)
    if det.split_runtime:  # its halves, as bench.deploy times them apart, make the same prediction
        halves = rt.finish(rt.features(images[4:8]))
        np.testing.assert_array_equal(halves.scores, got.scores)
        np.testing.assert_array_equal(halves.maps, got.maps)
    else:
        with pytest.raises(ValueError, match="only a front graph"):
            rt.features(images[4:8])


def test_fp16_compute_overflowing_padim_is_refused(padim, reuse_graphs):
    """PaDiM's squared Mahalanobis sums pass float16's 65504: where the CPU computes in
    float16 the gate refuses the NaN scores; elsewhere fp16 weights compute in float32."""
    import openvino

    if "FP16" not in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        rt = open_runtime(padim, "openvino-fp16")
        assert rt.precision == "f32"
        return
    with pytest.raises(InputError, match=r"^openvino-fp16 refused on 12 check images: scores differ from eager by nan"):
        open_runtime(padim, "openvino-fp16")


def test_int8_quantizes_the_convolutions_and_keeps_the_scoring_tail_float(padim, images, graphs, reuse_graphs, monkeypatch):
    from iadbench.deploy import ir_cache
    from iadbench.deploy.openvino import quantize, scoring_tail

    with pytest.raises(InputError, match="no INT8 IR yet"):
        open_runtime(padim, "openvino-int8")
    model = convert(graphs["padim"])
    tail = set(scoring_tail(model))
    types = {op.get_friendly_name(): op.get_type_name() for op in model.get_ops()}
    assert {"MatMul", "Sqrt", "ReduceMax"} <= {types[n] for n in tail}  # Mahalanobis, blur, score
    assert not {"Convolution", "GroupConvolution"} & {types[n] for n in tail}
    quantized = quantize(model, images[:4])
    fq = [op for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize"]
    consumers = {t.get_node().get_type_name() for op in fq for t in op.output(0).get_target_inputs()}
    assert fq and consumers <= {"Convolution", "GroupConvolution", "FakeQuantize", "Add", "Concat"}, consumers
    fed = {t.get_node().get_friendly_name() for op in fq for t in op.output(0).get_target_inputs()}
    assert not fed & tail
    scores = OpenVinoRuntime(quantized, "openvino-int8").predict(images[4:]).scores
    assert len(set(np.round(scores, 6))) == len(scores)  # a rounded distance would give all one score
    given = []

    def plain(model, calibration, validation=None):  # accuracy control has its own test (test_int8_accuracy)
        given.append(validation)
        return quantize(model, calibration)

    monkeypatch.setattr(ir_cache, "quantize", plain)
    try:  # a 4-image 64 px PaDiM may not survive INT8: then the gate says why
        rt = open_runtime(padim, "openvino-int8", calibration=images[:4])
    except parity.ParityRefused as exc:
        assert str(exc).startswith("openvino-int8 refused on 12 check images: ")
    else:
        assert rt.metadata["calibration_images"] == 4
    # the runtime asked for accuracy control on the calibration images and their painted twins
    assert len(given) == 1 and len(given[0].images) == 8 and given[0].images[:4].tolist() == images[:4].tolist()


def _folder(tmp_path, det):
    return write_model(tmp_path / "model", det, threshold=1.0, threshold_rule="max", display_range=(0.0, 2.0), info={})


def test_auto_measures_once_per_folder_and_records_the_choice(padim, tmp_path, monkeypatch, reuse_graphs):
    folder = _folder(tmp_path, padim)
    model = open_model(folder, "auto")
    record = json.loads((folder / choice.RECORD).read_text())
    assert {"eager", "onnx", "openvino", "openvino-fp16", "openvino-bf16"} <= set(record["ms_per_image"]) | set(record["refused"])
    assert record["chosen"] == min(record["ms_per_image"], key=record["ms_per_image"].get) == model.runtime_name
    assert set(record["checks"]) == set(record["ms_per_image"]) - {"eager"}
    assert "measured now" in model.runtime.choice_note and model.runtime_name in model.runtime.choice_note
    assert (ir_folder(folder, "openvino") / "model.xml").is_file()  # the IRs it built are cached

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(choice, "measure", no_measuring)
    again = open_model(folder, "auto")
    assert again.runtime_name == record["chosen"] and choice.RECORD in again.runtime.choice_note
    # another machine (a record whose key differs) measures again
    original = json.dumps(record)
    record["key"]["cpu"] = "some other CPU"
    (folder / choice.RECORD).write_text(json.dumps(record))
    with pytest.raises(AssertionError, match="measured again"):
        open_model(folder, "auto")
    # so does the same CPU under an ISA ceiling (other kernels, other speeds); the check
    # fails before anything compiles, so no runtime loads under the ceiling
    (folder / choice.RECORD).write_text(original)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(AssertionError, match="measured again"):
        open_model(folder, "auto")


def test_export_cli_writes_openvino_ir_and_int8_needs_calibration(padim, images, tmp_path, capsys, reuse_graphs, monkeypatch):
    from PIL import Image

    from iadbench.deploy import openvino

    monkeypatch.setattr(openvino, "INT8_MAX_ROUNDS", 1)  # one round of accuracy control: the plumbing is tested here

    folder = _folder(tmp_path, padim)
    out = tmp_path / "ir" / "padim.xml"
    out.parent.mkdir()
    assert cli("export", str(folder), "--out", str(out), "--format", "openvino") == 0
    assert out.is_file() and out.with_suffix(".bin").is_file()
    meta = json.loads(out.with_suffix(".iadbench.json").read_text())
    assert meta["runtime"] == "openvino" and meta["threshold"] == 1.0 and meta["check"]["spearman"] >= 0.999
    assert cli("export", str(folder), "--out", str(tmp_path / "x.onnx"), "--format", "openvino") == 2
    capsys.readouterr()
    assert cli("export", str(folder), "--out", str(tmp_path / "q.xml"), "--format", "openvino-int8") == 2
    assert "needs --calibration" in capsys.readouterr().err
    assert cli("predict", str(folder), str(tmp_path), "--runtime", "openvino-int8") == 2
    good = tmp_path / "good"
    good.mkdir()
    for i, im in enumerate(images[:4]):
        Image.fromarray(im).save(good / f"{i}.png")
    code = cli("export", str(folder), "--out", str(tmp_path / "q.xml"), "--format", "openvino-int8", "--calibration", str(good))
    err = capsys.readouterr().err
    assert code == 0 or ("openvino-int8 refused on" in err and "convolutions in INT8 after at most 1 rounds" in err), err
    if code == 0:  # the cached INT8 IR is what --runtime openvino-int8 opens
        rt = open_model(folder, "openvino-int8").runtime
        assert rt.graph_source == "cached model.openvino-int8/" and rt.metadata["calibration_images"] == 4


def test_run_measures_latency_through_openvino(deploy_cache, tmp_path, capsys):
    from PIL import Image

    from iadbench.deploy.export import check_images

    data = tmp_path / "part"
    pics = check_images((64, 64), n=8, seed=3)
    for sub, chunk in (("train/good", pics[:6]), ("test/good", pics[6:])):
        (data / sub).mkdir(parents=True)
        for i, im in enumerate(chunk):
            Image.fromarray(im).save(data / sub / f"{i:03d}.png")
    (data / "test" / "spot").mkdir()
    for i, im in enumerate(pics[6:]):
        bad = im.copy()
        bad[20:36, 20:36] = 255
        Image.fromarray(bad).save(data / "test" / "spot" / f"{i:03d}.png")
    run_dir = tmp_path / "run"
    code = cli("run", "-d", "padim", "--dataset", "folder", "--dataset-path", f"folder={data}", "--set", "padim.input_size=64",
               "--holdout", "0.34", "--workers", "1", "--run-dir", str(run_dir), "--runtime", "openvino")
    assert code == 0, capsys.readouterr()
    (rec,) = map(json.loads, (run_dir / "records.jsonl").read_text().splitlines())
    assert rec["cost"]["runtime"] == "openvino" and "OpenVINO" in rec["cost"]["runtime_detail"], rec["cost"]
    assert rec["cost"]["latency_ms_p50"] > 0
    assert cli("run", "-d", "padim", "--runtime", "openvino-int8", "--run-dir", str(tmp_path / "r2")) == 2
    assert "unknown runtime 'openvino-int8'" in capsys.readouterr().err


def test_a_cached_ir_is_gated_again_on_another_machine(padim, tmp_path, monkeypatch, reuse_graphs):
    """The check images are kept beside the IR. Where the IR was built its recorded
    numbers stand; on another CPU the gate runs again, so an IR that breaks there (here:
    weights swapped for perturbed ones behind the cache's back) is refused there."""
    from iadbench.deploy import ir_cache
    from iadbench.deploy.openvino import CHECKS_FILE, load_ir, save_ir

    folder = _folder(tmp_path, padim)
    built = open_model(folder, "openvino").runtime
    ir = ir_folder(folder, "openvino")
    kept = np.load(ir / CHECKS_FILE, allow_pickle=False)
    checks = parity.check_set(padim.input_size)
    np.testing.assert_array_equal(kept["images"], checks.images)
    np.testing.assert_array_equal(kept["masks"], checks.masks)
    assert built.metadata["machine"] == ir_cache.machine()

    elsewhere = {**ir_cache.machine(), "cpu": "a line PC's CPU"}
    monkeypatch.setattr(ir_cache, "machine", lambda: elsewhere)
    again = open_model(folder, "openvino").runtime
    assert again.graph_source.endswith("gated again on this machine") and again.check["spearman"] > 0.999

    _, meta = load_ir(ir)
    broken = convert(_perturbed(ir_cache._onnx_graph(padim, folder), 1.5))
    assert save_ir(broken, ir, "openvino", meta, parity.CheckSet(kept["images"], kept["labels"], kept["masks"], "kept"))
    with pytest.raises(InputError, match=r"^openvino refused on 12 check images: .*\(on this machine; the IR passed on "):
        open_model(folder, "openvino")
    monkeypatch.setattr(ir_cache, "machine", lambda: meta["machine"])  # where it was built its record stands
    assert open_model(folder, "openvino").runtime.graph_source == "cached model.openvino/"
