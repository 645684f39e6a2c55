"""A feature cache on disk, shared by every process of a grid run.

Key: (backbone arch, weights id, input size, torch version, cache format) name a folder;
inside it one safetensors file per image, named by the SHA-256 of the image's uint8
bytes and shape, holding float32 maps of every layer computed so far. Detectors that
use the same backbone and input size share the forward pass: on a miss the extractor
stores every feature stage it passes through on its way to the deepest requested
layer (they are computed anyway), so PaDiM's ``blocks.1/2/4`` and PatchCore's
``blocks.2/4`` cost one forward per image whichever cell runs first.

Writes go to a temporary file in the same folder and are renamed into place
(atomic on POSIX), so concurrent writers never expose half a file; a lost race only
costs a recomputation. Cached maps are bit-identical to a fresh forward (float32).

Latency honesty: the cache serves ``fit()`` and full-test-set ``predict()``. The runner
wraps its latency loop in ``with cache_disabled():`` so timed predictions always run
the backbone. ``IADBENCH_FEATURE_CACHE=0`` (or ``use_cache=False``) turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from iadbench.backbones import FeatureExtractor, cache_root, default_layers
from iadbench.backbones.storage import atomic_save_safetensors
from iadbench.errors import InputError
from iadbench.switches import env_flag

FORMAT = 1
_state = threading.local()
# Images served from / computed into the cache in this process; the runner records
# them with fit time, which is shorter when an earlier cell warmed the cache.
STATS = {"hits": 0, "misses": 0}


def cache_enabled() -> bool:
    """False inside ``cache_disabled()`` or when IADBENCH_FEATURE_CACHE says off."""
    if getattr(_state, "disabled", 0) > 0:
        return False
    return env_flag("IADBENCH_FEATURE_CACHE", default=True)


@contextlib.contextmanager
def cache_disabled() -> Iterator[None]:
    """Within this block every extraction runs the backbone (used around latency loops)."""
    _state.disabled = getattr(_state, "disabled", 0) + 1
    try:
        yield
    finally:
        _state.disabled -= 1


def image_key(image: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(repr((image.shape, str(image.dtype))).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


def feature_cache_dir(extractor: FeatureExtractor, size: tuple[int, int]) -> Path:
    ident = f"{FORMAT}|{extractor.arch}|{extractor.weights_id}|{size[0]}x{size[1]}|{torch.__version__}"
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return cache_root() / "features" / f"{extractor.arch}-{size[0]}x{size[1]}-{digest}"


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except FileNotFoundError:
        return {}
    except Exception:
        return {}  # a corrupt or truncated file is a miss; it is rewritten


def _store_layers(extractor: FeatureExtractor, layers: Sequence[str]) -> list[str]:
    """What a miss computes and stores: the requested layers plus the standard stages
    on the same path (free to keep, and what other detectors ask for)."""
    extra = [x for x in default_layers(extractor.arch) if x in extractor.path_layers]
    return list(dict.fromkeys([*layers, *extra]))


def extract_features(
    extractor: FeatureExtractor,
    images: np.ndarray,
    layers: Sequence[str] | None = None,
    batch_size: int = 16,
    use_cache: bool | None = None,
) -> dict[str, torch.Tensor]:
    """``{layer: (N, C, h, w) float32}`` on the CPU for uint8 images (N, H, W, 3), from
    the cache where present, the backbone (in batches, on the extractor's device) where
    not. On the CPU whatever the backbone's device: so are cached features, and a
    detector moves them to where it computes."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"images must be a uint8 array (N, H, W, 3); got {getattr(images, 'shape', type(images))}")
    layers = list(extractor.layers if layers is None else layers)
    if use_cache is None:
        use_cache = cache_enabled()
    if not use_cache or len(images) == 0:
        parts = [extractor(images[i : i + batch_size], layers=layers) for i in range(0, len(images), batch_size)]
        if not parts:
            raise InputError("no images to extract features from")
        return {k: torch.cat([p[k] for p in parts]).cpu() for k in layers}

    folder = feature_cache_dir(extractor, images.shape[1:3])
    keys = [image_key(im) for im in images]
    paths = [folder / k[:2] / f"{k}.safetensors" for k in keys]
    found: list[dict[str, torch.Tensor] | None] = []
    for p in paths:
        got = _read(p)
        found.append({k: got[k] for k in layers} if all(k in got for k in layers) else None)
    todo = [i for i, f in enumerate(found) if f is None]
    STATS["hits"] += len(found) - len(todo)
    STATS["misses"] += len(todo)
    if todo:
        store = _store_layers(extractor, layers)
        fresh: dict[str, dict[str, torch.Tensor]] = {}  # one forward per distinct image
        order = list(dict.fromkeys(keys[i] for i in todo))
        first = {keys[i]: i for i in reversed(todo)}
        for s in range(0, len(order), batch_size):
            chunk = order[s : s + batch_size]
            feats = extractor(images[[first[k] for k in chunk]], layers=store)
            for j, k in enumerate(chunk):
                one = {name: feats[name][j].to("cpu", copy=True) for name in store}
                p = paths[first[k]]
                merged = {**_read(p), **one}  # keep layers another detector stored
                atomic_save_safetensors(merged, p)
                fresh[k] = one
        for i in todo:
            found[i] = {name: fresh[keys[i]][name] for name in layers}
    return {name: torch.stack([f[name] for f in found]) for name in layers}  # type: ignore[index]
