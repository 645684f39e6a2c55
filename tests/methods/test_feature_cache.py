from __future__ import annotations

import numpy as np
import pytest
import torch

import iadbench.backbones as backbones
from iadbench.api import FitContext, InputError
from iadbench.features import cache_disabled, extract_features, feature_cache_dir
from iadbench_padim.detector import Padim
from iadbench_patchcore.detector import PatchCore

from .conftest import synthetic_objects


@pytest.fixture
def forward_count(monkeypatch):
    """Counts images that go through any FeatureExtractor's forward."""
    seen = {"images": 0}
    orig = backbones.FeatureExtractor.forward

    def counting(self, images, layers=None):
        seen["images"] += len(images)
        return orig(self, images, layers)

    monkeypatch.setattr(backbones.FeatureExtractor, "forward", counting)
    return seen


@pytest.mark.parametrize("patchcore_first", [False, True])
def test_padim_and_patchcore_share_one_forward_per_image(forward_count, patchcore_first):
    x = synthetic_objects(6, 64)
    dets = [Padim(input_size=64, n_features=50), PatchCore(input_size=64, coreset_ratio=0.5)]
    if patchcore_first:
        dets.reverse()
    for d in dets:
        d.fit(x, FitContext(seed=0))
    assert forward_count["images"] == len(x)
    for d in dets:  # the test set is new content: one more forward per test image
        d.predict(x[:2] ^ 1)
    assert forward_count["images"] == len(x) + 2


def test_disabled_cache_runs_the_backbone_every_time(forward_count, monkeypatch):
    x = synthetic_objects(3, 64)
    d = PatchCore(input_size=64)
    d.fit(x, FitContext())
    with cache_disabled():
        d.predict(x)
        d.predict(x)
    assert forward_count["images"] == 3 + 6
    monkeypatch.setenv("IADBENCH_FEATURE_CACHE", "0")
    d.predict(x)
    assert forward_count["images"] == 3 + 9
    monkeypatch.delenv("IADBENCH_FEATURE_CACHE")
    d.predict(x)  # cached again
    assert forward_count["images"] == 3 + 9


def test_cached_features_equal_fresh_ones_and_duplicates_cost_once(forward_count):
    fe = backbones.create_feature_extractor("efficientnet_lite0", ["blocks.2", "blocks.4"])
    x = synthetic_objects(3, 64)
    x = np.concatenate([x, x[:1]])  # a duplicate image
    first = extract_features(fe, x)
    assert forward_count["images"] == 3
    again = extract_features(fe, x)
    fresh = extract_features(fe, x, use_cache=False)
    for k in first:
        assert torch.equal(first[k], again[k]) and torch.equal(first[k], fresh[k])
    folder = feature_cache_dir(fe, (64, 64))
    assert len(list(folder.rglob("*.safetensors"))) == 3
    assert not list(folder.rglob("*.tmp"))  # no leftovers of the atomic writes


def test_corrupt_cache_file_is_a_miss(forward_count):
    fe = backbones.create_feature_extractor("efficientnet_lite0", ["blocks.2"])
    x = synthetic_objects(1, 64)
    ref = extract_features(fe, x)["blocks.2"]
    (f,) = feature_cache_dir(fe, (64, 64)).rglob("*.safetensors")
    f.write_bytes(b"garbage")
    assert torch.equal(extract_features(fe, x)["blocks.2"], ref)
    assert forward_count["images"] == 2


@pytest.mark.parametrize("mode", ["mirror", "reflect"])
@pytest.mark.parametrize("shape", [(70, 90), (5, 12)])  # (5, 12): kernel longer than the map
def test_gaussian_blur_matches_scipy(mode, shape):
    """scipy.ndimage.gaussian_filter with the same mode and truncate=4 (our kernel has
    2*int(4*sigma+0.5)+1 taps, scipy's radius is int(truncate*sigma+0.5))."""
    from scipy.ndimage import gaussian_filter

    from iadbench.features import gaussian_blur

    m = np.random.default_rng(0).random((2, *shape))
    for sigma in (1.0, 2.5, 4.0):
        got = gaussian_blur(torch.tensor(m, dtype=torch.float32), sigma, mode=mode).numpy()
        ref = np.stack([gaussian_filter(x, sigma, mode=mode, truncate=4.0) for x in m])
        np.testing.assert_allclose(got, ref, atol=1e-5)
        other = "reflect" if mode == "mirror" else "mirror"
        assert np.abs(got - np.stack([gaussian_filter(x, sigma, mode=other, truncate=4.0) for x in m])).max() > 1e-3


@pytest.mark.parametrize("mode", ["mirror", "reflect"])
@pytest.mark.parametrize(("grid", "size", "sigma"), [((32, 32), (256, 256), 4.0), ((7, 11), (60, 130), 2.0),
                                                      ((16, 16), (64, 64), 0.0)])
def test_pixel_maps_are_upsampling_then_blur(mode, grid, size, sigma):
    """The one-matrix-per-axis map equals the two steps done separately: torch's
    bilinear upsampling, then scipy's gaussian_filter (sigma 0: no blur)."""
    from scipy.ndimage import gaussian_filter

    from iadbench.features import patch_maps_to_pixels

    m = torch.tensor(np.random.default_rng(1).random((2, *grid)) * 5, dtype=torch.float32)
    up = torch.nn.functional.interpolate(m.unsqueeze(1).double(), size=size, mode="bilinear", align_corners=False)[:, 0].numpy()
    ref = np.stack([gaussian_filter(x, sigma, mode=mode, truncate=4.0) for x in up]) if sigma else up
    got = patch_maps_to_pixels(m, size, sigma, mode)
    assert got.shape == (2, *size) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), ref, atol=2e-5)


def test_gaussian_blur_rejects_unknown_mode():
    from iadbench.features import gaussian_blur

    with pytest.raises(InputError, match="blur mode"):
        gaussian_blur(torch.zeros(1, 8, 8), 1.0, mode="wrap")
