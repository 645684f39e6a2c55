"""Which test images a cell keeps for its report, and the 2 MB bound on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iadbench.types import Sample
from iadbench.visual.gallery import BEST, WORST, pick, read_gallery, write_gallery


def test_pick_takes_the_worst_and_best_of_each_class():
    labels = np.array([0] * 10 + [1] * 10)
    scores = np.r_[np.arange(10) / 10, 0.35 + np.arange(10) / 10]
    chosen = dict((i, kind) for i, kind in pick(labels, scores))
    worst_good = sorted(range(10), key=lambda i: -scores[i])[:WORST]
    worst_bad = sorted(range(10, 20), key=lambda i: scores[i])[:WORST]
    assert {i for i, k in chosen.items() if k == "worst good"} == set(worst_good)
    assert {i for i, k in chosen.items() if k == "worst defective"} == set(worst_bad)
    assert {i for i, k in chosen.items() if k == "best good"} == set(range(BEST))
    assert {i for i, k in chosen.items() if k == "best defective"} == set(range(20 - BEST, 20))


def test_gallery_of_a_large_test_set_stays_under_2_mb(tmp_path):
    rng = np.random.default_rng(0)
    n, size = 83, 320
    images = rng.integers(0, 255, (n, size, size, 3)).astype(np.uint8)  # noise: incompressible
    maps = rng.random((n, size, size)).astype(np.float32)
    masks = rng.random((n, size, size)) > 0.5
    samples = [Sample(Path(f"{i}.png"), int(i >= 20), "good" if i < 20 else "crack") for i in range(n)]
    path = write_gallery(tmp_path, samples, images, maps, masks, rng.random(n))
    assert path.stat().st_size + (tmp_path / "gallery.json").stat().st_size < 2 * 1024 * 1024
    index, arrays = read_gallery(tmp_path)
    assert arrays["images"].shape == (len(index), 128, 128, 3) and arrays["maps"].dtype == np.float16
