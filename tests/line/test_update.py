"""``adbench update``: PaDiM's exact update against a refit on the union, PatchCore's
against a refit on bottle, versions and lineage, and a failed update leaving the model
folder byte for byte as it was."""

from __future__ import annotations

import hashlib
import json
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iadbench.cli import main
from iadbench.deploy.export import check_images
from iadbench.model import fit_model, load_model, model_version, save_model
from iadbench.plugins import get_registry
from iadbench.types import Sample, Split

SIZE = 64
N_FIT, N_ADD = 6, 4


@pytest.fixture(scope="module", autouse=True)
def cache_env(tmp_path_factory):
    """A feature cache of the module's own, never the user's; converted weights reused."""
    from iadbench.backbones import cache_root

    converted = cache_root() / "backbones"
    root = tmp_path_factory.mktemp("iadbench-cache")
    if converted.is_dir():
        (root / "backbones").symlink_to(converted, target_is_directory=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("IADBENCH_CACHE", str(root))
    mp.setenv("IADBENCH_FEATURE_CACHE", "0")
    torch.set_num_threads(2)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Folders of 64 px image-like PNGs: fit/ (6), good/ (4) and test (4, in memory)."""
    root = tmp_path_factory.mktemp("pictures")
    imgs = check_images((SIZE, SIZE), n=N_FIT + N_ADD + 4, seed=11)
    for name, part in (("fit", imgs[:N_FIT]), ("good", imgs[N_FIT : N_FIT + N_ADD])):
        (root / name).mkdir()
        for i, img in enumerate(part):
            Image.fromarray(img).save(root / name / f"{i:02d}.png")
    return root, imgs[N_FIT + N_ADD :]


def fit_folder(detector: str, paths: list[Path], out: Path, rule: str = "max", **params) -> tuple[Path, object]:
    spec = get_registry().detector(detector)
    split = Split("pictures", "any", [Sample(path=p) for p in paths], [])
    fitted = fit_model(spec, {"input_size": SIZE, **params}, split, seed=0, holdout_fraction=0.1, threshold_rule=rule,
                       threads=2, workdir=Path(tempfile.mkdtemp()), predict_batch=8)
    save_model(fitted, out, {"detector": detector, "params": fitted.detector.params, "seed": 0,
                             "settings": {"threshold_rule": rule, "predict_batch": 8}})
    return out, fitted


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def padim_model(pictures, tmp_path_factory):
    root, _ = pictures
    return fit_folder("padim", files(root / "fit"), tmp_path_factory.mktemp("models") / "padim")


def copy_of(folder: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, tmp_path / folder.name))


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files(folder)}


def run(*args) -> int:
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    return int(exit_.value.code or 0)


def ok(*args) -> None:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert not exc.code, f"adbench {' '.join(map(str, args))} exited {exc.code}"


def test_padim_update_equals_a_refit_on_the_union(pictures, padim_model, tmp_path):
    root, test = pictures
    model = copy_of(padim_model[0], tmp_path)
    (model / "model.onnx").write_bytes(b"stale graph of version 1")
    (model / "feedback").mkdir()
    (model / "feedback" / "a1.json").write_text("{}")
    before = json.loads((model / "model.json").read_text())
    assert model_version(model) == 1 and before["lineage"] == []

    ok("update", model, "--good", root / "good")

    union, refit = fit_folder("padim", files(root / "fit") + files(root / "good"), tmp_path / "refit")
    got = load_model(model).detector.predict(test)
    want = load_model(union).detector.predict(test)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)
    np.testing.assert_allclose(got.maps, want.maps, rtol=1e-5, atol=1e-5 * float(want.maps.max()))

    body = json.loads((model / "model.json").read_text())
    assert model_version(model) == 2 and body["info"]["train_images"] == N_FIT + N_ADD
    (entry,) = body["lineage"]
    assert (entry["version"], entry["parent"], entry["images_added"]) == (2, 1, N_ADD)
    assert "running statistics" in entry["method"] and entry["good"] == str((root / "good").resolve())
    assert datetime.fromisoformat(entry["created"]).utcoffset().total_seconds() == 0
    # calibration: the old scores as they were, the new images' leave-one-out scores under
    # the updated model (the refit's for the same images), the rule ("max") applied again
    cal = body["calibration"]
    assert cal["scores"][:N_FIT] == before["calibration"]["scores"]
    # (to 1e-3: with 10 images and 152 channels leave-one-out's 1 / (1 - c m) amplifies the
    # float32 rounding of the refit's centred embeddings; the update's are float64)
    np.testing.assert_allclose(cal["scores"][N_FIT:], refit.calibration_scores[N_FIT:], rtol=1e-3)
    assert cal["scored_by_version"] == [1] * N_FIT + [2] * N_ADD
    assert body["threshold"] == pytest.approx(max(cal["scores"]))
    assert body["threshold_history"][-1]["value"] == before["threshold"]
    # the stale graph stays behind, operator feedback comes along, no temp folder is left
    assert not (model / "model.onnx").exists() and (model / "feedback" / "a1.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["padim", "refit"])

    ok("update", model, "--good", root / "good")  # and again: version 3, two lineage entries
    assert model_version(model) == 3 and [e["parent"] for e in json.loads((model / "model.json").read_text())["lineage"]] == [1, 2]


def test_out_writes_a_new_folder_and_leaves_the_model_alone(pictures, padim_model, tmp_path):
    root, _ = pictures
    model = copy_of(padim_model[0], tmp_path)
    before = digest(model)
    ok("update", model, "--good", root / "good", "--out", tmp_path / "v2")
    assert digest(model) == before
    assert model_version(tmp_path / "v2") == 2 and model_version(model) == 1


def _fails_untouched(model: Path, *args, expect: str) -> None:
    before = digest(model)
    code = run("update", model, *args)
    assert code == 2
    assert digest(model) == before
    assert [p.name for p in model.parent.iterdir()] == [model.name], "a temp folder was left behind"


def test_a_corrupt_image_leaves_the_model_untouched(pictures, padim_model, tmp_path, capsys):
    root, _ = pictures
    model = copy_of(padim_model[0], tmp_path / "m")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ok.png").write_bytes((root / "good" / "00.png").read_bytes())
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _fails_untouched(model, "--good", bad, expect="broken.png")
    err = capsys.readouterr().err.strip()
    assert "broken.png" in err and len(err.splitlines()) == 1


def test_a_full_disk_leaves_the_model_untouched(pictures, padim_model, tmp_path, monkeypatch, capsys):
    import errno

    import iadbench.line.versions as versions

    root, _ = pictures
    model = copy_of(padim_model[0], tmp_path / "m")

    def full(_folder):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(versions, "_sync", full)
    _fails_untouched(model, "--good", root / "good", expect="space")
    assert "No space left on device" in capsys.readouterr().err


def test_ctrl_c_leaves_the_model_untouched(pictures, padim_model, tmp_path, monkeypatch):
    import iadbench.line.versions as versions

    root, _ = pictures
    model = copy_of(padim_model[0], tmp_path / "m")
    before = digest(model)

    def interrupted(_folder):
        raise KeyboardInterrupt

    monkeypatch.setattr(versions, "_sync", interrupted)  # after the new version is written, before the swap
    assert run("update", model, "--good", root / "good") == 130
    assert digest(model) == before and [p.name for p in model.parent.iterdir()] == [model.name]


def test_swap_exchanges_two_folders(tmp_path):
    from iadbench.line.versions import swap_in

    live, new = tmp_path / "live", tmp_path / "new"
    for folder, text in ((live, "old"), (new, "new")):
        (folder / "feedback").mkdir(parents=True)
        (folder / "v").write_text(text)
    (live / "feedback" / "late.png").write_bytes(b"x")  # arrived while the new one was built
    (live / "feedback" / "late.json").write_text("{}")
    swap_in(new, live)
    assert (live / "v").read_text() == "new" and (new / "v").read_text() == "old"
    assert sorted(p.name for p in (live / "feedback").iterdir()) == ["late.json", "late.png"]


def test_bad_input_is_one_line_and_exit_2(pictures, padim_model, tmp_path, capsys):
    root, _ = pictures
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ((tmp_path / "nope", "--good", root / "good"), "no such folder"),
        ((padim_model[0], "--good", empty), "no images"),
        ((padim_model[0], "--good", tmp_path / "missing"), "missing"),
    ]
    unknown = copy_of(padim_model[0], tmp_path / "u")
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "detector": "no_such_detector"}))
    cases.append(((unknown, "--good", root / "good"), "no_such_detector"))
    for args, words in cases:
        capsys.readouterr()
        assert run("update", *args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err


def test_padim_folder_from_before_the_kept_covariance(pictures, padim_model, tmp_path, capsys):
    """A folder holding inv_cov (the format before): loads and predicts as the fit did;
    update refuses in one line naming the folder, or refits on the union with --train."""
    from safetensors.torch import load_file, save_file

    root, test = pictures
    model = copy_of(padim_model[0], tmp_path / "m")
    fitted = load_model(model).detector
    tensors = load_file(model / "model.safetensors")
    save_file({"channel_idx": tensors["channel_idx"], "mean": tensors["mean"].float(), "inv_cov": fitted.inv_cov},
              model / "model.safetensors")
    np.testing.assert_array_equal(load_model(model).detector.predict(test).scores, fitted.predict(test).scores)
    before = digest(model)
    assert run("update", model, "--good", root / "good") == 2
    err = capsys.readouterr().err.strip()
    assert str(model) in err and "--train" in err and len(err.splitlines()) == 1
    assert digest(model) == before
    ok("update", model, "--good", root / "good", "--train", root / "fit")
    body = json.loads((model / "model.json").read_text())
    assert body["version"] == 2 and body["lineage"][0]["method"].startswith("refit")
    union, _ = fit_folder("padim", files(root / "fit") + files(root / "good"), tmp_path / "refit")
    np.testing.assert_allclose(load_model(model).detector.predict(test).scores,
                               load_model(union).detector.predict(test).scores, rtol=1e-6)


def test_a_detector_without_update_refits_on_the_union(pictures, tmp_path, capsys):
    root, test = pictures
    model, _ = fit_folder("pixel_gaussian", files(root / "fit"), tmp_path / "pg")
    assert run("update", model, "--good", root / "good") == 2
    assert "--train" in capsys.readouterr().err
    ok("update", model, "--good", root / "good", "--train", root / "fit")
    union, _ = fit_folder("pixel_gaussian", files(root / "fit") + files(root / "good"), tmp_path / "refit")
    np.testing.assert_array_equal(load_model(model).detector.predict(test).scores,
                                  load_model(union).detector.predict(test).scores)
    assert json.loads((model / "model.json").read_text())["lineage"][0]["images_added"] == N_ADD


def test_patchcore_update_on_bottle_is_near_a_refit(mvtec_root, tmp_path):
    """Fit on 20 good bottle images and update with 20 more, against a refit on all 40:
    image AUROC on the 83 test images within 0.005 (small: 128 px, 5% coreset)."""
    from sklearn.metrics import roc_auc_score

    from iadbench.api import FitContext
    from iadbench.images import load_image

    size = 128
    good = sorted((mvtec_root / "bottle" / "train" / "good").glob("*.png"))[:40]
    test = sorted((mvtec_root / "bottle" / "test").glob("*/*.png"))
    labels = np.array([p.parent.name != "good" for p in test], dtype=int)
    x_train = np.stack([load_image(p, (size, size)) for p in good])
    x_test = np.stack([load_image(p, (size, size)) for p in test])
    factory = get_registry().detector("patchcore").factory
    params = {"input_size": size, "coreset_ratio": 0.05, "search": "exact"}
    updated, refit = factory(**params), factory(**params)
    updated.fit(x_train[:20], FitContext(seed=0))
    held = updated.update(x_train[20:], FitContext(seed=0))
    refit.fit(x_train, FitContext(seed=0))
    assert updated.memory_bank.shape == refit.memory_bank.shape  # the ratio of all patches seen
    assert held.scores.shape == (20,) and np.all(held.scores > 0)
    auc_u = roc_auc_score(labels, updated.predict(x_test).scores)
    auc_r = roc_auc_score(labels, refit.predict(x_test).scores)
    assert abs(auc_u - auc_r) <= 0.005, (auc_u, auc_r)


def test_a_model_that_learnt_from_labelled_defects_is_not_updated(tmp_path):
    """An update refits on good images only: a mixed-supervision model fitted with K > 0
    labelled defects would lose them silently, so it is refused; at K = 0 it is not."""
    from types import SimpleNamespace

    from iadbench.errors import InputError
    from iadbench.line.update import _refuse_labelled

    learnt = SimpleNamespace(info={"supervision": {"k": 5}}, detector=SimpleNamespace(supervision="mixed"))
    with pytest.raises(InputError, match="learnt from 5 labelled defective images"):
        _refuse_labelled(learnt, tmp_path)
    _refuse_labelled(SimpleNamespace(info={"supervision": {"k": 0}}, detector=learnt.detector), tmp_path)
    _refuse_labelled(SimpleNamespace(info={}, detector=SimpleNamespace(supervision="unsupervised")), tmp_path)
