"""Writing the factory dataset in MVTec layout, and the cache it lives in.

Cache: ``$IADBENCH_CACHE`` or the platform's user cache dir, then
``factory/<generator version>-<seed>[-<size hash>]/<category>/``. Each category is
generated into a temporary folder beside its final place and renamed into it, so a
category folder that exists is complete, and two processes generating at once both
end with the same good copy (the loser of the rename discards its own).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from iadbench.api import DatasetError
from iadbench_factory.generate import CATEGORIES, GENERATOR_VERSION, TEST_GOOD, TRAIN, render
from iadbench_factory.sizes import Sizes

MANIFEST = "manifest.json"


def cache_root() -> Path:
    env = os.environ.get("IADBENCH_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("iadbench"))


def default_location(seed: int, sizes: Sizes) -> Path:
    return cache_root() / "factory" / f"{GENERATOR_VERSION}-{seed}{sizes.tag()}"


def _save(array: np.ndarray, path: Path) -> None:
    # compress_level 3: a third of the default's time for files a few % larger.
    Image.fromarray(array).save(path, compress_level=3)


def write_category(folder: Path, category: str, seed: int, sizes: Sizes) -> dict:
    """Generate one category into ``folder`` (MVTec layout); returns its counts."""
    size = sizes.image_size
    (folder / "train" / "good").mkdir(parents=True)
    (folder / "test" / "good").mkdir(parents=True)
    for i in range(sizes.n_train):
        _save(render(category, seed, TRAIN, i, size)[0], folder / "train" / "good" / f"{i:03d}.png")
    for i in range(sizes.n_test_good):
        _save(render(category, seed, TEST_GOOD, i, size)[0], folder / "test" / "good" / f"{i:03d}.png")
    defects = {}
    for k, kind in enumerate(CATEGORIES[category]):
        (folder / "test" / kind).mkdir(parents=True)
        (folder / "ground_truth" / kind).mkdir(parents=True)
        for i in range(sizes.n_per_defect):
            img, mask, _, _ = render(category, seed, 2 + k, i, size, defect=kind)
            _save(img, folder / "test" / kind / f"{i:03d}.png")
            _save(mask.astype(np.uint8) * 255, folder / "ground_truth" / kind / f"{i:03d}_mask.png")
        defects[kind] = sizes.n_per_defect
    info = {
        "generator": "iadbench_factory",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "category": category,
        "sizes": asdict(sizes),
        "train_good": sizes.n_train,
        "test_good": sizes.n_test_good,
        "test_defects": defects,
    }
    (folder / MANIFEST).write_text(json.dumps(info, indent=2, sort_keys=True))
    return info


def ensure_category(root: Path, category: str, seed: int, sizes: Sizes) -> Path:
    """``root/category``, generated atomically if absent."""
    final = root / category
    if (final / MANIFEST).is_file():
        return final
    if final.exists():
        raise DatasetError(
            "factory folder exists but is not a complete generated category (no manifest.json); "
            "delete it to regenerate",
            final,
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{category}-", dir=root))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    except OSError as exc:
        raise DatasetError(f"cannot create the factory data folder ({exc.strerror or exc})", root) from None
    try:
        write_category(tmp, category, seed, sizes)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MANIFEST).is_file():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_dataset(out: Path, seed: int, sizes: Sizes, categories: list[str] | None = None) -> list[Path]:
    """Every (or the named) category under ``out`` in MVTec layout, for other tools."""
    sizes.validate()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError("output folder exists and is not empty", out)
    names = categories or list(CATEGORIES)
    unknown = [c for c in names if c not in CATEGORIES]
    if unknown:
        raise DatasetError(f"factory has no category '{unknown[0]}' (known: {', '.join(CATEGORIES)})")
    return [ensure_category(out, c, seed, sizes) for c in names]
