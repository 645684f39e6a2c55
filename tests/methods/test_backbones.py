from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from iadbench.backbones import (
    ARCHS,
    canonical_arch,
    create_feature_extractor,
    create_model,
    pretrained_state_dict,
    read_state_dict,
)
from iadbench.backbones.checkpoints import remap_efficientnet_pytorch
from iadbench.errors import InputError

LITES = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]


@pytest.mark.parametrize("arch", LITES)
def test_remap_covers_every_timm_key_and_nothing_else(arch):
    import importlib

    info = ARCHS[arch]
    module = importlib.import_module(info.pypi_module)
    src = read_state_dict(__import__("pathlib").Path(getattr(module, info.pypi_class).get_model_file_path()))
    model = timm.create_model(arch, pretrained=False)
    sd = remap_efficientnet_pytorch(src, model)
    assert set(sd) == set(model.state_dict())  # every timm key, none left over
    assert len(sd) == len(src)  # every source tensor used exactly once
    for k, v in model.state_dict().items():
        assert sd[k].shape == v.shape, k
    model.load_state_dict(sd, strict=True)


def test_state_dict_is_cached_as_safetensors_and_identical(_isolated_cache):
    a = pretrained_state_dict("efficientnet_lite0")
    files = list((_isolated_cache / "backbones").glob("tf_efficientnet_lite0-*.safetensors"))
    assert len(files) == 1
    b = pretrained_state_dict("tf_efficientnet_lite0")  # now from the safetensors file
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_loading_weights_leaves_the_global_generator_alone(tmp_path, monkeypatch):
    """Converting weights (a cold cache) builds a randomly initialised network; a seeded
    fit that loads its backbone after seeding must not depend on whether that happened."""
    monkeypatch.setenv("IADBENCH_CACHE", str(tmp_path))  # cold: nothing converted yet
    draws = []
    for _ in ("cold", "warm"):
        torch.manual_seed(0)
        pretrained_state_dict("efficientnet_lite0")
        draws.append(torch.rand(4))
    assert list(tmp_path.glob("backbones/tf_efficientnet_lite0-*.safetensors"))  # the cold call did convert
    torch.manual_seed(0)
    assert torch.equal(draws[0], torch.rand(4)) and torch.equal(draws[1], draws[0])


@pytest.mark.parametrize("arch", [*LITES, "resnet18", "wide_resnet50_2"])
def test_normalisation_matches_timm_pretrained_cfg(arch):
    tag = ARCHS[arch].hub_tag
    cfg = timm.create_model(f"{arch}.{tag}" if tag else arch, pretrained=False).pretrained_cfg
    assert tuple(cfg["mean"]) == ARCHS[arch].mean and tuple(cfg["std"]) == ARCHS[arch].std


def test_pretrained_batchnorm_statistics_match_activations():
    """With the right remap and normalisation, each BN layer's running mean tracks the
    mean of its inputs on natural-ish images; a scrambled remap breaks this."""
    rng = np.random.default_rng(0)
    # Smooth random "photos": low-frequency colour fields.
    small = rng.integers(0, 256, (8, 3, 8, 8)).astype(np.float32) / 255
    x = torch.nn.functional.interpolate(torch.from_numpy(small), size=160, mode="bicubic").clamp(0, 1)
    model = create_model("efficientnet_lite0")
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, i[0].mean((0, 2, 3))))
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    ]
    with torch.no_grad():
        model((x - 0.5) / 0.5)
    for h in hooks:
        h.remove()
    mods = dict(model.named_modules())
    corr = [float(torch.corrcoef(torch.stack([v, mods[n].running_mean]))[0, 1]) for n, v in seen.items()]
    assert np.median(corr) > 0.7


def test_extractor_layers_shapes_and_determinism():
    fe = create_feature_extractor("efficientnet_lite0", ["blocks.1", "blocks.2", "blocks.4"])
    x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    a, b = fe(x), fe(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)
    assert {k: tuple(v.shape) for k, v in a.items()} == {
        "blocks.1": (2, 24, 16, 16), "blocks.2": (2, 40, 8, 8), "blocks.4": (2, 112, 4, 4)
    }
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6)
        assert torch.equal(a[k], fe(x)[k])
    fe.train()
    assert not fe.training  # frozen batch-norm


def test_extractor_matches_full_timm_model():
    fe = create_feature_extractor("efficientnet_lite0", ["blocks.4"])
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(3,))
    sd = pretrained_state_dict("efficientnet_lite0")
    model.load_state_dict({k: v for k, v in sd.items() if k in model.state_dict()}, strict=True)
    model.eval()
    x = np.random.default_rng(1).integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
    t = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        ref = model(t)[0]
    assert torch.allclose(fe(x)["blocks.4"], ref, atol=1e-5)


def test_offline_paper_backbone_fails_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(InputError) as err:
        pretrained_state_dict("resnet18")
    msg = str(err.value)
    assert "\n" not in msg and "tf_efficientnet_lite0" in msg and "weights=" in msg


def test_local_weights_file_for_resnet18(tmp_path):
    from safetensors.torch import save_file

    model = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "r18.safetensors"
    save_file(model.state_dict(), path)
    sd = pretrained_state_dict("resnet18", weights=path)
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())
    fe = create_feature_extractor("resnet18", ["layer1", "layer3"], weights=path)
    out = fe(np.zeros((1, 64, 64, 3), dtype=np.uint8))
    assert out["layer1"].shape == (1, 64, 16, 16) and out["layer3"].shape == (1, 256, 4, 4)
    bad = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(1)}, bad)
    with pytest.raises(InputError, match="do not fit resnet18"):
        pretrained_state_dict("resnet18", weights=bad)


def test_bad_names_give_input_errors():
    assert canonical_arch("EfficientNet_Lite2") == "tf_efficientnet_lite2"
    with pytest.raises(InputError, match="unknown backbone"):
        canonical_arch("vgg16")
    with pytest.raises(InputError, match="unknown layer"):
        create_feature_extractor("efficientnet_lite0", ["layer2"])
    fe = create_feature_extractor("efficientnet_lite0", ["blocks.1"])
    with pytest.raises(InputError):
        fe(np.zeros((1, 64, 64), dtype=np.uint8))
