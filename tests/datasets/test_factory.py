"""The synthetic factory: determinism, exact masks, the cache and `data factory`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iadbench.errors import DatasetError
from iadbench_factory import store
from iadbench_factory.dataset import FactoryDataset
from iadbench_factory.generate import CATEGORIES, GENERATOR_VERSION, SEVERITY, TRAIN, render

SMALL = {"image_size": 128, "n_train": 3, "n_test_good": 2, "n_per_defect": 1}


def test_at_least_three_textures_and_two_objects_with_several_defect_kinds():
    assert {"fabric", "metal", "wood", "nut", "bottle"} <= set(CATEGORIES)
    kinds = {k for ks in CATEGORIES.values() for k in ks}
    assert {"scratch", "crack", "hole", "stain", "missing", "bent", "contamination"} <= kinds


@pytest.mark.parametrize("category", list(CATEGORIES))
@pytest.mark.parametrize("severity", [None, 0.0, 1.0])
def test_every_defect_changes_exactly_its_mask(category, severity):
    """At the drawn severity and at both ends of the scale: the faintest defect is
    still visible (above the sensor noise) and touches nothing outside its mask."""
    for k, kind in enumerate(CATEGORIES[category]):
        img, mask, good, final = render(category, 0, 2 + k, 0, size=128, defect=kind, severity=severity)
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
        assert mask.sum() >= 12, f"{category}/{kind}: defect too small"
        diff = np.abs(final - good).max(axis=2)
        assert (diff[~mask] == 0).all(), f"{category}/{kind}: pixels outside the mask changed"
        assert diff[mask].mean() > 0.02, f"{category}/{kind}: defect invisible"


def test_severity_sets_how_big_and_strong_a_defect_is():
    assert set(SEVERITY) == set(CATEGORIES)
    assert all(0.0 <= lo < hi <= 1.0 for lo, hi in SEVERITY.values())
    for category, kinds in CATEGORIES.items():
        for k, kind in enumerate(kinds):
            faint = render(category, 0, 2 + k, 1, size=128, defect=kind, severity=0.0)
            bold = render(category, 0, 2 + k, 1, size=128, defect=kind, severity=1.0)
            change = [np.abs(d[3] - d[2]).max(axis=2).sum() for d in (faint, bold)]
            assert change[0] < change[1], f"{category}/{kind}: severity 0 not fainter than 1"


def test_severity_override_keeps_the_random_stream():
    """Overriding the severity changes that defect only, not the scene it sits on."""
    a = render("wood", 0, 2, 0, size=128, defect="crack")
    b = render("wood", 0, 2, 0, size=128, defect="crack", severity=0.5)
    assert np.array_equal(a[2], b[2])


def test_seeded_deterministic_and_order_independent():
    a = render("nut", 7, TRAIN, 3, size=128)[0]
    render("wood", 7, TRAIN, 0, size=128)  # other draws in between change nothing
    b = render("nut", 7, TRAIN, 3, size=128)[0]
    c = render("nut", 8, TRAIN, 3, size=128)[0]
    d = render("nut", 7, TRAIN, 4, size=128)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, d)


def test_good_images_vary_so_a_pixel_model_is_not_perfect():
    imgs = np.stack([render("fabric", 0, TRAIN, i, size=128)[0] for i in range(4)]).astype(float)
    assert imgs.std(axis=0).mean() > 10  # texture phase and lighting move from image to image


def test_generated_on_first_use_into_the_cache(isolated_env):
    ds = FactoryDataset(None, **SMALL)
    assert ds.categories() == list(CATEGORIES)
    split = ds.split("bottle")
    assert len(split.train) == 3 and len(split.test) == 2 + 4
    assert split.has_masks and sorted({s.defect_type for s in split.test}) == sorted(("good",) + CATEGORIES["bottle"])
    folder = split.train[0].path.parents[2]
    assert folder.parent.parent == isolated_env / "cache" / "factory"
    assert folder.parent.name.startswith(f"{GENERATOR_VERSION}-0-")  # version-seed-size hash
    manifest = folder / store.MANIFEST
    stamp = manifest.stat().st_mtime_ns
    FactoryDataset(None, **SMALL).split("bottle")
    assert manifest.stat().st_mtime_ns == stamp, "regenerated instead of reusing the cache"
    assert not list(folder.parent.glob(".tmp-*"))
    default = FactoryDataset(None).root.name
    assert default.startswith(f"{GENERATOR_VERSION}-0-") and default != folder.parent.name  # each size its own folder


def test_lost_generation_race_keeps_the_winner(isolated_env, monkeypatch):
    real = store.write_category
    root = isolated_env / "data"

    def racing(folder, category, seed, sizes):
        real(folder, category, seed, sizes)
        real(root / category, category, seed, sizes)  # another process finished first
        (root / category / "winner").write_text("x")

    monkeypatch.setattr(store, "write_category", racing)
    out = store.ensure_category(root, "metal", 0, store.Sizes(**SMALL))
    assert (out / "winner").exists() and not list(root.glob(".tmp-*"))


def test_explicit_folder_generated_with_other_settings_is_refused(isolated_env):
    FactoryDataset(isolated_env / "f", seed=1, **SMALL).split("nut")
    with pytest.raises(DatasetError, match="generated with seed=1"):
        FactoryDataset(isolated_env / "f", seed=2, **SMALL).split("nut")
    (isolated_env / "f" / "wood").mkdir()
    with pytest.raises(DatasetError, match="not a complete generated category"):
        FactoryDataset(isolated_env / "f", seed=1, **SMALL).split("wood")


def test_write_dataset_in_mvtec_layout(isolated_env):
    out = isolated_env / "out"
    store.write_dataset(out, 0, store.Sizes(**SMALL), ["fabric"])
    info = json.loads((out / "fabric" / store.MANIFEST).read_text())
    assert info["test_defects"] == {k: 1 for k in CATEGORIES["fabric"]}
    assert info["generator_version"] == GENERATOR_VERSION
    assert len(list((out / "fabric" / "train" / "good").glob("*.png"))) == 3
    assert len(list((out / "fabric" / "ground_truth").glob("*/*_mask.png"))) == 4
    with pytest.raises(DatasetError, match="not empty"):
        store.write_dataset(out, 0, store.Sizes(**SMALL), ["fabric"])
    with pytest.raises(DatasetError, match="no category 'leather'"):
        store.write_dataset(isolated_env / "o2", 0, store.Sizes(**SMALL), ["leather"])


def test_a_new_generator_version_gets_its_own_cache_folder(isolated_env, monkeypatch):
    """Changing what the generator draws bumps GENERATOR_VERSION, and the cache folder
    is keyed by it: a factory cached by an older generator is never reused."""
    sizes = store.Sizes(**SMALL)
    here = store.default_location(0, sizes)
    assert here.name.startswith(f"{GENERATOR_VERSION}-0-")
    monkeypatch.setattr(store, "GENERATOR_VERSION", "0")
    assert store.default_location(0, sizes) != here


def test_default_sizes():
    """The default factory's test split: 16 good and 6 per defect kind (24 defective),
    enough images for AUROC to tell detectors a few points apart."""
    split_sizes = store.Sizes()
    assert (split_sizes.image_size, split_sizes.n_train) == (256, 32)
    assert (split_sizes.n_test_good, split_sizes.n_per_defect) == (16, 6)
