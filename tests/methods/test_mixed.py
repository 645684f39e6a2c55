from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from iadbench.api import FitContext, InputError, LabelledDefects
from iadbench.artifacts import load_detector
from iadbench.plugins import get_registry
from iadbench_mixed.augment import AUGMENTS, views
from iadbench_mixed.detector import Mixed
from iadbench_padim.detector import Padim

from .conftest import synthetic_objects

SIZE = 64


def nuisance_and_tint(n: int, seed: int, defect: bool, tint: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """(images, masks): every image has a dark spot somewhere on the disc, a strong but
    benign nuisance that the good training images show too; a defect is a faint reddish
    square besides. An unsupervised map's maximum sits on the spot in every image, so it
    ranks these defects poorly; the labels say the tint is what matters."""
    rng = np.random.default_rng(seed)
    imgs = synthetic_objects(n, SIZE, seed=seed).astype(np.float32)
    masks = np.zeros((n, SIZE, SIZE), bool)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(n):
        cy, cx = rng.uniform(SIZE * 0.25, SIZE * 0.75, 2)
        imgs[i][np.hypot(yy - cy, xx - cx) < SIZE / 10] = 15
        if defect:
            y0, x0 = rng.integers(SIZE // 4, SIZE * 5 // 8, 2)
            masks[i, y0 : y0 + SIZE // 6, x0 : x0 + SIZE // 6] = True
            imgs[i][masks[i]] += (tint, -tint / 2, -tint / 2)
    return np.clip(imgs, 0, 255).astype(np.uint8), masks


def labelled(images: np.ndarray, masks: np.ndarray, has_mask: np.ndarray | None = None) -> LabelledDefects:
    return LabelledDefects(images=images, masks=masks, has_mask=np.ones(len(images), bool) if has_mask is None else has_mask)


@pytest.fixture(autouse=True)
def _one_thread():
    """The head's tiny convolutions on 8x8 grids: two threads on a busy 2-core machine
    run them ~10x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    good, _ = nuisance_and_tint(30, 10, False)
    defects = nuisance_and_tint(6, 20, True)
    test_good, good_masks = nuisance_and_tint(12, 30, False)
    test_bad, bad_masks = nuisance_and_tint(12, 40, True)
    return good, defects, np.concatenate([test_good, test_bad]), np.concatenate([good_masks, bad_masks])


def test_without_labelled_defects_it_is_padim(data):
    """K = 0 (no defects, or an empty set): PaDiM's own scores and maps, so its ranking."""
    good, _, test, _ = data
    good = good[:12]
    reference = Padim(input_size=SIZE)
    reference.fit(good, FitContext(seed=3))
    want = reference.predict(test)
    empty = labelled(np.zeros((0, SIZE, SIZE, 3), np.uint8), np.zeros((0, SIZE, SIZE), bool))
    for defects in (None, empty):
        det = Mixed(input_size=SIZE)
        det.fit(good, FitContext(seed=3, defects=defects))
        got = det.predict(test)
        assert spearmanr(got.scores, want.scores).statistic == pytest.approx(1.0)
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.maps, want.maps)
        assert det.head is None and det.training_done == {"steps": 0, "defects": 0}


@pytest.mark.slow
def test_labels_teach_a_defect_type_the_unsupervised_map_ranks_poorly_and_the_model_saves_exactly(data, tmp_path):
    good, defects, test, masks = data
    y = [0] * 12 + [1] * 12
    unsupervised = Mixed(input_size=SIZE)
    unsupervised.fit(good, FitContext(seed=0))
    det = Mixed(input_size=SIZE, steps=60)
    det.fit(good, FitContext(seed=0, defects=labelled(*defects)))
    before, after = unsupervised.predict(test), det.predict(test)
    assert roc_auc_score(y, before.scores) < 0.8  # the planted type is hard for PaDiM (0.69 here)
    assert roc_auc_score(y, after.scores) > 0.95  # 0.99 here
    # and the map finds it: the tinted squares' pixels against every other pixel, at
    # least half of PaDiM's pixel-ranking error gone (0.957 -> 0.987 here)
    assert 1 - roc_auc_score(masks.ravel(), after.maps.ravel()) < (1 - roc_auc_score(masks.ravel(), before.maps.ravel())) / 2
    assert det.training_done["defects"] == 6 and det.training_done["views"] == 4
    assert det.training_done["head_stats_on"] == "held-out"
    # the head only adds evidence: no score under PaDiM's own z-score, and some above it
    padim_z, head_z, _, _ = det.standardised_parts(test)
    assert np.all(after.scores >= padim_z.numpy()) and np.any(after.scores > padim_z.numpy() + 1)
    assert np.any(head_z.numpy() < 0)  # which the clamp kept out
    det.save(tmp_path / "m")
    back = load_detector(tmp_path / "m", get_registry())
    assert back.head is not None and back.training_done == det.training_done
    again = back.predict(test)
    np.testing.assert_array_equal(again.scores, after.scores)
    np.testing.assert_array_equal(again.maps, after.maps)


@pytest.mark.slow
def test_one_seed_fits_alike_and_another_seed_does_not(data):
    good, defects, test, _ = data
    scores = []
    for seed in (5, 5, 6):
        det = Mixed(input_size=SIZE, steps=20, augment="hflip")
        det.fit(good[:12], FitContext(seed=seed, defects=labelled(*defects)))
        scores.append(det.predict(test).scores)
    np.testing.assert_array_equal(scores[0], scores[1])
    assert not np.array_equal(scores[0], scores[2])


def test_a_defect_without_a_mask_counts_as_a_whole_image_and_its_mask_row_is_ignored(data):
    good, (images, masks), test, _ = data
    has_mask = np.array([True, True, True, False, False, False])
    garbage = masks.copy()
    garbage[~has_mask] = np.random.default_rng(0).random((3, SIZE, SIZE)) < 0.5
    preds = []
    for rows in (np.where(has_mask[:, None, None], masks, False), garbage):
        det = Mixed(input_size=SIZE, steps=15, augment="none")
        det.fit(good[:12], FitContext(seed=1, defects=labelled(images, rows, has_mask)))
        preds.append(det.predict(test[:4]).scores)
    np.testing.assert_array_equal(preds[0], preds[1])
    assert det.training_done["defects_with_mask"] == 3


def test_views_move_images_masks_and_maps_together():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (1, 8, 8, 3), dtype=np.uint8)
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 1, 5] = True
    image[0, 1, 5] = (255, 0, 0)
    got = views((image, mask), "d4")
    assert len(got) == len(AUGMENTS["d4"]) == 8
    assert len({v[0].tobytes() for v in got}) == 8  # eight different views
    for img, m in got:
        assert m.sum() == 1 and tuple(img[m][0]) == (255, 0, 0)


def test_bad_input_is_a_one_line_error(data):
    good, (images, masks), _, _ = data
    for key, value in (("steps", 0), ("batch", 1), ("lr", 0), ("top_k", 0), ("head_holdout", 1), ("hidden", 0)):
        with pytest.raises(InputError, match=key):
            Mixed(**{key: value})
    with pytest.raises(InputError, match="augment must be one of"):
        Mixed(augment="rot45")
    det = Mixed(input_size=SIZE)
    with pytest.raises(InputError, match=r"uint8 \(2, 64, 64, 3\)"):
        det.fit(good, FitContext(defects=labelled(images[:2, :32], masks[:2])))
    with pytest.raises(InputError, match="masks must be"):
        det.fit(good, FitContext(defects=labelled(images[:2], masks[:1])))
    with pytest.raises(InputError, match="at least 3 good"):
        det.fit(good[:2], FitContext(defects=labelled(images[:2], masks[:2])))
