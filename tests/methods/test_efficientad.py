from __future__ import annotations

import numpy as np
import pytest
import torch

from iadbench.api import FitContext, InputError
from iadbench.artifacts import load_detector
from iadbench.plugins import get_registry
from iadbench.precision import native_bf16, resolve_precision
from iadbench_efficientad.core import hard_feature_loss, map_quantiles, normalise_map, quantile
from iadbench_efficientad.detector import EfficientAD
from iadbench_efficientad.networks import AutoEncoder, MediumPDN, SmallPDN
from testkit import adbench, plugin_env

from .conftest import leaderboard_model_aurocs, synthetic_objects


def test_quantile_and_map_normalisation_match_numpy():
    rng = np.random.default_rng(0)
    maps = rng.gamma(2.0, size=(3, 17, 19)).astype(np.float32)
    for q in (0.0, 0.5, 0.9, 0.995, 1.0):
        np.testing.assert_allclose(float(quantile(torch.from_numpy(maps), q)), np.quantile(maps, q), rtol=1e-6)
    q_a, q_b = map_quantiles(torch.from_numpy(maps))
    np.testing.assert_allclose([q_a, q_b], np.quantile(maps, [0.9, 0.995]), rtol=1e-6)
    got = normalise_map(torch.from_numpy(maps), q_a, q_b).numpy()
    ref = 0.1 * (maps - np.quantile(maps, 0.9)) / (np.quantile(maps, 0.995) - np.quantile(maps, 0.9))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    assert np.mean(got <= 0) == pytest.approx(0.9, abs=1e-3) and np.mean(got <= 0.1) == pytest.approx(0.995, abs=1e-3)


def test_hard_feature_loss_keeps_exactly_the_top_tenth_of_a_percent():
    g = torch.Generator().manual_seed(1)
    d = torch.rand(2, 50, 10, 20, generator=g, requires_grad=True)  # 20,000 distinct errors
    loss = hard_feature_loss(d, 0.999)
    top = np.sort(d.detach().numpy().ravel())[-20:]  # 0.1% of 20,000
    np.testing.assert_allclose(loss.item(), top.mean(), rtol=1e-6)
    loss.backward()
    assert int((d.grad != 0).sum()) == 20


def test_networks_match_anomalib_with_the_same_weights():
    ref = pytest.importorskip("anomalib.models.image.efficient_ad.torch_model")
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    for padding in (False, True):
        for ours, theirs in ((SmallPDN(384, padding), ref.SmallPatchDescriptionNetwork(384, padding)),
                             (MediumPDN(384, padding), ref.MediumPatchDescriptionNetwork(384, padding))):
            theirs.load_state_dict(ours.state_dict(), strict=True)
            torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    ae, their_ae = AutoEncoder(384, True).eval(), ref.AutoEncoder(384, True).eval()
    their_ae.load_state_dict(ae.state_dict(), strict=True)
    x = torch.rand(1, 3, 256, 256)  # their bottleneck kernel is fixed at 8x8: 256 px only
    with torch.no_grad():
        torch.testing.assert_close(ae(x), their_ae(x, x.shape[-2:]), rtol=1e-5, atol=1e-5)


def test_fit_save_reload_and_seeding(tmp_path):
    x = synthetic_objects(6, 64)
    a, b = EfficientAD(input_size=64, steps=2), EfficientAD(input_size=64, steps=2)
    a.fit(x, FitContext(seed=0))
    b.fit(x, FitContext(seed=0))
    pa, pb = a.predict(x[:3]), b.predict(x[:3])
    assert pa.maps.shape == (3, 64, 64)
    np.testing.assert_array_equal(pa.scores, pb.scores)
    assert a.info == {"penalty": False, "penalty_images": 0, "teacher": "backbone:tf_efficientnet_lite0:blocks.2+blocks.3",
                      "teacher_channels": 384, "val_images": 1,
                      "precision": resolve_precision("auto", "test"),
                      "predict_precision": resolve_precision("auto", "test")}
    a.save(tmp_path / "m")
    back = load_detector(tmp_path / "m", get_registry())
    pc = back.predict(x[:3])
    np.testing.assert_allclose(pc.scores, pa.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pc.maps, pa.maps, rtol=1e-5, atol=1e-6)


def test_student_and_autoencoder_learn_at_their_own_rates():
    x = synthetic_objects(6, 64)
    det = EfficientAD(input_size=64, steps=2, lr=1e-3, ae_lr=1e-12)
    det.fit(x, FitContext(seed=0))
    torch.manual_seed(0)  # fit seeds, then builds the student and the autoencoder in this order
    student0, ae0 = SmallPDN(768, padding=True), AutoEncoder(384, padding=True, input_size=64)

    def moved(net, ref):
        return max(float((a - b).abs().max()) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))

    assert moved(det.ae, ae0) < 1e-9  # two Adam steps move a weight by about lr each
    assert moved(det.student, student0) > 1e-4


@pytest.mark.skipif(not native_bf16(), reason="this CPU has no bfloat16 units (AMX or AVX-512 BF16): auto trains in fp32")
def test_bf16_training_is_mixed_precision_of_the_same_recipe():
    """auto trains in bfloat16 here: deterministic, and close to (not equal to) an fp32 fit,
    since only the convolutions' arithmetic changes (both predict at the default precision)."""
    x = synthetic_objects(6, 64)
    fits = {}
    for precision in ("auto", "auto", "fp32"):
        det = EfficientAD(input_size=64, steps=3, precision=precision)
        det.fit(x, FitContext(seed=0))
        assert all(p.dtype == torch.float32 and p.is_contiguous() for p in det.student.parameters())
        fits.setdefault(det.info["precision"], []).append(det.predict(x[:3]).maps)
    bf16, fp32 = fits["bf16"], fits["fp32"][0]
    np.testing.assert_array_equal(bf16[0], bf16[1])
    assert not np.array_equal(bf16[0], fp32)
    # Close, not equal: the maps of the two fits agree in shape (measured 0.994 here; the
    # held-out quantile normalisation magnifies their absolute differences to ~12%).
    corr = np.corrcoef(bf16[0].ravel(), fp32.ravel())[0, 1]
    assert corr > 0.98, corr


@pytest.mark.skipif(not native_bf16(), reason="this CPU has no bfloat16 units (AMX or AVX-512 BF16): auto predicts in fp32")
def test_bf16_prediction_approximates_float32_and_export_checks_against_float32(tmp_path):
    """auto predicts in bfloat16 here: deterministic, close to the same model's float32
    prediction (not equal to it), and float32_predictions gives the float32 one back."""
    from iadbench.deploy.export import export_onnx
    from iadbench.precision import float32_predictions

    x = synthetic_objects(8, 64)
    det = EfficientAD(input_size=64, steps=3)
    det.fit(x[:6], FitContext(seed=0))
    assert det.predict_precision == "bf16"
    bf16, again = det.predict(x), det.predict(x)
    np.testing.assert_array_equal(bf16.maps, again.maps)
    with float32_predictions(det):
        fp32 = det.predict(x)
    assert det.predict_precision == "bf16"  # restored
    reference = EfficientAD(input_size=64, steps=3, predict_precision="fp32")
    reference.load_state_tensors(det.state_tensors())
    np.testing.assert_allclose(reference.predict(x).maps, fp32.maps, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(bf16.maps, fp32.maps)
    spread = fp32.maps.max() - fp32.maps.min()
    assert np.abs(bf16.maps - fp32.maps).max() < 0.05 * spread
    assert np.corrcoef(bf16.maps.ravel(), fp32.maps.ravel())[0, 1] > 0.99
    # The ONNX graph is float32: its check compares it with float32 eager scores (1e-3),
    # which bfloat16 rounding alone would not pass on every image.
    check = export_onnx(det, tmp_path / "m.onnx", images=x)
    assert check.max_score_rel_diff <= 1e-3 and (tmp_path / "m.onnx").is_file()
    assert det.predict_precision == "bf16"


def test_teacher_from_coarser_stages_is_upsampled_to_the_student_grid():
    """A teacher at strides 8 and 16 (blocks.2 + blocks.3) trains against the padded
    student's input/4 grid; maps come back at the input size."""
    det = EfficientAD(input_size=64, steps=2, teacher_layers=["blocks.2", "blocks.3"])
    x = synthetic_objects(6, 64)
    det.fit(x, FitContext(seed=0))
    assert det.teacher_mean.shape == (1, 384, 1, 1)
    assert det._raw_teacher(x[:1]).shape[-2:] == (16, 16)
    assert det.predict(x[:2]).maps.shape == (2, 64, 64)


def test_teacher_width_is_the_backbone_stages_own_or_a_fixed_projection(tmp_path):
    """By default the stages (40 + 80 channels) are projected onto 384 orthonormal
    columns, the PDN's width; None keeps the stages' own 120 (a narrower student and
    autoencoder); a projection must not be narrower than the stages. Either kind saves
    and reloads to the same maps."""
    x = synthetic_objects(5, 64)
    native = EfficientAD(input_size=64, steps=2, teacher_channels=None)
    native.fit(x, FitContext(seed=0))
    assert native.projection is None and native.info["teacher_channels"] == 120
    assert native.student.state_dict()["conv4.weight"].shape[0] == 240
    native.save(tmp_path / "native")
    back = load_detector(tmp_path / "native", get_registry())
    assert back.channels == 120 and back.projection is None
    np.testing.assert_allclose(back.predict(x[:2]).maps, native.predict(x[:2]).maps, rtol=1e-5, atol=1e-6)
    wide = EfficientAD(input_size=64, steps=2)
    wide.fit(x, FitContext(seed=0))
    assert wide.info["teacher_channels"] == 384 and wide.projection.shape == (384, 120)
    q = wide.projection.double()
    np.testing.assert_allclose((q.T @ q).numpy(), np.eye(120), atol=1e-5)  # orthonormal columns
    assert wide.student.state_dict()["conv4.weight"].shape[0] == 768
    wide.save(tmp_path / "wide")
    back = load_detector(tmp_path / "wide", get_registry())
    assert back.channels == 384
    np.testing.assert_allclose(back.predict(x[:2]).maps, wide.predict(x[:2]).maps, rtol=1e-5, atol=1e-6)
    narrow = EfficientAD(input_size=64, steps=2, teacher_channels=64)
    with pytest.raises(InputError, match="teacher_channels 64 is below"):
        narrow.fit(x, FitContext(seed=0))
    for bad in (0, "wide", 2.5):
        with pytest.raises(InputError, match="teacher_channels"):
            EfficientAD(teacher_channels=bad)
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'iadbench[deploy]')")
    from iadbench.deploy.export import export_onnx

    check = export_onnx(native, tmp_path / "native.onnx", images=x[:2])  # a graph without the projection
    assert check.max_score_rel_diff <= 1e-3 and check.max_map_rel_diff <= 1e-3


def test_a_narrower_student_fits_saves_reloads_and_exports(tmp_path):
    """student_width scales the student's hidden channels only (its outputs stay twice
    the teacher's); the folder reloads to the same maps and exports to the same graph."""
    x = synthetic_objects(5, 64)
    det = EfficientAD(input_size=64, steps=2, teacher_channels=None, student_width=0.5)
    det.fit(x, FitContext(seed=0))
    shapes = {k: tuple(v.shape) for k, v in det.student.state_dict().items() if k.endswith("weight")}
    assert shapes == {"conv1.weight": (64, 3, 4, 4), "conv2.weight": (128, 64, 4, 4),
                      "conv3.weight": (128, 128, 3, 3), "conv4.weight": (240, 128, 4, 4)}
    paper = EfficientAD(input_size=64, steps=2, teacher_channels=None)
    assert paper.student.conv1.weight.shape[0] == 128 and MediumPDN(8, width=0.25).conv2.weight.shape[0] == 128
    det.save(tmp_path / "m")
    back = load_detector(tmp_path / "m", get_registry())
    assert back.student_width == 0.5
    np.testing.assert_allclose(back.predict(x[:2]).maps, det.predict(x[:2]).maps, rtol=1e-5, atol=1e-6)
    for bad in (0, -1, 5):
        with pytest.raises(InputError, match="student_width"):
            EfficientAD(student_width=bad)
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'iadbench[deploy]')")
    from iadbench.deploy.export import export_onnx

    check = export_onnx(det, tmp_path / "m.onnx", images=x[:2])
    assert check.max_score_rel_diff <= 1e-3 and check.max_map_rel_diff <= 1e-3


def test_pdn_teacher_weights_and_penalty_folder(tmp_path):
    from PIL import Image

    torch.manual_seed(3)
    torch.save({"teacher." + k: v for k, v in SmallPDN(384).state_dict().items()}, tmp_path / "teacher.pth")
    (tmp_path / "nat").mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "nat" / f"{i}.png")
    det = EfficientAD(input_size=64, steps=2, teacher_weights=str(tmp_path / "teacher.pth"), penalty_dir=str(tmp_path / "nat"))
    x = synthetic_objects(4, 64)
    det.fit(x, FitContext(seed=0))
    assert det.info["penalty"] and det.info["penalty_images"] == 2 and det.info["teacher"] == "pdn:teacher_weights"
    before = det.predict(x[:2])
    det.save(tmp_path / "m")  # the teacher travels inside the model folder
    after = load_detector(tmp_path / "m", get_registry()).predict(x[:2])
    np.testing.assert_allclose(after.maps, before.maps, rtol=1e-5, atol=1e-6)
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'iadbench[deploy]')")
    from iadbench.deploy.export import export_onnx

    # the user's PDN teacher goes into the export graph too (the backbone teacher: tests/deploy)
    check = export_onnx(det, tmp_path / "m.onnx", images=x[:2])
    assert check.max_score_rel_diff <= 1e-3 and check.max_map_rel_diff <= 1e-3


def test_bad_parameters_are_one_line_plan_errors(tmp_path):
    with pytest.raises(InputError, match="steps"):
        EfficientAD(steps=-5)
    with pytest.raises(InputError, match="variant"):
        EfficientAD(variant="large")
    with pytest.raises(InputError, match="ae_lr"):
        EfficientAD(ae_lr=0)
    with pytest.raises(InputError, match="weight_decay"):
        EfficientAD(weight_decay=-1e-5)
    with pytest.raises(InputError, match="precision"):
        EfficientAD(precision="fp16")
    with pytest.raises(InputError, match="predict_precision"):
        EfficientAD(predict_precision="int8")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="teacher_weights"):
        EfficientAD(teacher_weights=str(tmp_path / "junk.pth"))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(InputError, match="do not fit"):
        EfficientAD(teacher_weights=str(tmp_path / "wrong.pth"))
    env = plugin_env(allow="efficientad,factory,metrics", IADBENCH_CACHE=str(tmp_path / "cache"))
    out = adbench("run", "-d", "efficientad", "--set", f"efficientad.teacher_weights={tmp_path / 'missing.pth'}",
                  "--run-dir", str(tmp_path / "run"), env=env, cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert len(out.stderr.strip().splitlines()) == 1 and "teacher_weights" in out.stderr
    assert not (tmp_path / "run" / "records.jsonl").exists()


def test_slow_trained_in_house_detectors_are_opt_in_for_the_default_grid():
    """efficientad fits too slowly for `make run`'s grid and runs when named; feature_ae
    and conv_ae (seconds a factory category) are in it."""
    from iadbench.runner.plan import DatasetEntry, DetectorEntry, Plan, expand

    registry = get_registry()
    cells = expand(Plan(detectors=[], all_detectors=True, datasets=[DatasetEntry("factory")]), registry, lambda d: ["fabric"])
    names = {c.detector for c in cells}
    assert {"padim", "feature_ae", "conv_ae"} <= names and "efficientad" not in names
    named = expand(Plan(detectors=[DetectorEntry("efficientad")], datasets=[DatasetEntry("factory")]), registry, lambda d: ["fabric"])
    assert [c.detector for c in named] == ["efficientad"]


@pytest.mark.slow
@pytest.mark.real_data
def test_real_bottle_quality_of_the_leaderboard_model():
    """The model that made leaderboards/mvtec-bottle.md's efficientad row (1.000 / 0.991),
    committed beside it (21.6 MB, trained in bf16), re-scored on the bottle test set
    (prediction runs in float32)."""
    image_auroc, pixel_auroc = leaderboard_model_aurocs("mvtec-bottle-efficientad")
    # Floors 0.01 under the leaderboard row.
    assert image_auroc > 0.99
    assert pixel_auroc > 0.981
