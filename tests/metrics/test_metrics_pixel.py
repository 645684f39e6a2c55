"""Pixel AUROC and AP over all pixels of all test images."""

import numpy as np
import pytest

from iadbench.errors import UndefinedMetric
from iadbench.metrics.pixel import auroc, average_precision


def mann_whitney_auroc(masks, maps):
    pos, neg = maps[masks], maps[~masks]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


def test_matches_pairwise_definition_including_good_images():
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 6, 6), bool)
    masks[1, 1:3, 2:5] = True
    masks[2, 4:, :2] = True  # image 0 is good: its pixels are negatives too
    maps = np.round(rng.random(masks.shape) + 0.5 * masks, 1).astype(np.float32)
    assert auroc(maps, masks) == pytest.approx(mann_whitney_auroc(masks, maps))


def test_hand_computed_ap():
    # Ranked pixels: .9 (bad) .8 (good) .7 (bad) .1 (good): AP = 1/2 + 1/2 * 2/3.
    maps = np.array([[[0.9, 0.8], [0.7, 0.1]]], dtype=np.float32)
    masks = np.array([[[1, 0], [1, 0]]], dtype=np.uint8)  # 0/1 masks are accepted
    assert average_precision(maps, masks) == pytest.approx(0.5 + 1 / 3)
    assert auroc(maps, masks) == pytest.approx(3 / 4)


@pytest.mark.parametrize("fn", [auroc, average_precision])
def test_undefined_cases(fn):
    maps = np.random.default_rng(1).random((2, 4, 4))
    with pytest.raises(UndefinedMetric, match="no masks"):
        fn(maps, None)
    with pytest.raises(UndefinedMetric, match="no defective pixel"):
        fn(maps, np.zeros((2, 4, 4), bool))
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0, 0] = True
    with pytest.raises(UndefinedMetric, match="all anomaly map values are equal"):
        fn(np.zeros((2, 4, 4)), masks)
    with pytest.raises(ValueError, match="must both be"):
        fn(maps, np.zeros((2, 4, 3), bool))
