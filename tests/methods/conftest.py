from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, tmp_path, monkeypatch):
    """Each test gets its own feature cache; converted backbone weights are shared
    per session (converting takes a second)."""
    shared = tmp_path_factory.getbasetemp() / "iadbench-backbones"
    shared.mkdir(exist_ok=True)
    root = tmp_path / "iadbench-cache"
    root.mkdir()
    (root / "backbones").symlink_to(shared, target_is_directory=True)
    monkeypatch.setenv("IADBENCH_CACHE", str(root))
    monkeypatch.delenv("IADBENCH_FEATURE_CACHE", raising=False)
    yield root


def mvtec_root() -> Path:
    env = os.environ.get("IADBENCH_MVTEC_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mvtec_ad"


def synthetic_objects(n: int, size: int = 64, seed: int = 0, defect: bool = False) -> np.ndarray:
    """Aligned textured discs on a dark background; defects are bright scratches."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        r = np.hypot(yy - size / 2 + rng.normal(0, 0.5), xx - size / 2 + rng.normal(0, 0.5))
        img = np.where(r < size * 0.35, 120 + 40 * np.sin(r / 2.0), 20).astype(np.float32)
        img = np.repeat(img[..., None], 3, axis=2) + rng.normal(0, 4, (size, size, 3))
        if defect:
            y0, x0 = rng.integers(size // 4, size // 2, 2)
            img[y0 : y0 + size // 8, x0 : x0 + size // 5] = (250, 30, 30)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def leaderboard_model_aurocs(name: str) -> tuple[float, float]:
    """(image, pixel) AUROC of the model committed under leaderboards/models/NAME, re-scored
    on the full MVTec AD bottle test set (only the predict pass runs, not the fit);
    skips where the data is absent. The reference metric is scikit-learn's."""
    from sklearn.metrics import roc_auc_score

    from iadbench.artifacts import load_detector
    from iadbench.images import load_images, load_masks
    from iadbench.plugins import get_registry
    from iadbench_mvtec.plugin import MVTecAD

    if not (mvtec_root() / "bottle").is_dir():
        pytest.skip(f"MVTec AD bottle not found under {mvtec_root()} (set IADBENCH_MVTEC_ROOT)")
    det = load_detector(Path(__file__).resolve().parents[2] / "leaderboards" / "models" / name, get_registry())
    test = MVTecAD(mvtec_root()).split("bottle").test  # the project's own parser, masks required
    pred = det.predict(load_images(test, det.input_size))
    masks = load_masks(test, det.input_size)
    return roc_auc_score([s.label for s in test], pred.scores), roc_auc_score(masks.ravel(), pred.maps.ravel())
