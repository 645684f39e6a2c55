"""The few test images a cell keeps for its report: the worst cases (highest-scored
good images, lowest-scored defective ones) and a few best ones, each as a small
thumbnail of the image, its ground-truth mask and its raw anomaly map. The cell
writes it (``write_gallery``) and the report reads it (``read_gallery``).

Stored beside the cell's records as ``gallery.safetensors`` (uint8 images, uint8
masks, float16 maps; never pickle) + ``gallery.json`` (which image is which). At most
GALLERY_SIZE images of at most THUMB px a side: 16 x 128 x 128 x (3 + 1 + 2) bytes
is 1.5 MB before compression, under the 2 MB per cell the report may cost.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

GALLERY_FILE = "gallery.safetensors"
GALLERY_INDEX = "gallery.json"
THUMB = 128
WORST, BEST = 5, 3  # per class: 2 x (5 + 3) = 16 images at most
GALLERY_SIZE = 2 * (WORST + BEST)


def pick(labels: np.ndarray, scores: np.ndarray) -> list[tuple[int, str]]:
    """(test index, kind) of the gallery images, worst first; kinds are
    ``worst good``, ``worst defective``, ``best good``, ``best defective``."""
    labels = np.asarray(labels).astype(bool)
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=np.inf)
    good = np.flatnonzero(~labels)
    bad = np.flatnonzero(labels)
    good = good[np.argsort(-scores[good], kind="stable")]  # highest first: worst good
    bad = bad[np.argsort(scores[bad], kind="stable")]  # lowest first: worst defective
    chosen: list[tuple[int, str]] = []
    taken: set[int] = set()

    def take(indices, kind: str, k: int) -> None:
        for i in indices:
            if k == 0:
                return
            if int(i) not in taken:
                taken.add(int(i))
                chosen.append((int(i), kind))
                k -= 1

    take(good, "worst good", WORST)
    take(bad, "worst defective", WORST)
    take(good[::-1], "best good", BEST)
    take(bad[::-1], "best defective", BEST)
    return chosen


def _thumb_size(h: int, w: int) -> tuple[int, int]:
    scale = min(1.0, THUMB / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def write_gallery(cell_dir: Path, samples, images: np.ndarray, maps: np.ndarray,
                  masks: np.ndarray | None, scores: np.ndarray) -> Path | None:
    """Write the gallery of a scored test set into ``cell_dir``; None if it is empty."""
    from PIL import Image
    from safetensors.numpy import save_file

    from iadbench.visual.overlay import resize_map

    labels = np.array([s.label for s in samples])
    chosen = pick(labels, scores)
    if not chosen:
        return None
    th, tw = _thumb_size(*images.shape[1:3])
    thumbs = np.stack([np.asarray(Image.fromarray(images[i]).resize((tw, th), Image.BILINEAR)) for i, _ in chosen])
    small_maps = np.stack([resize_map(maps[i], (th, tw)) for i, _ in chosen]).astype(np.float16)
    if masks is not None:
        small_masks = np.stack([
            np.asarray(Image.fromarray(masks[i].astype(np.uint8) * 255).resize((tw, th), Image.NEAREST)) > 0
            for i, _ in chosen
        ]).astype(np.uint8)
    else:
        small_masks = np.zeros((len(chosen), th, tw), np.uint8)
    path = Path(cell_dir) / GALLERY_FILE
    save_file(
        {"images": np.ascontiguousarray(thumbs), "maps": small_maps, "masks": small_masks},
        path,
    )
    index = [
        {"path": str(samples[i].path), "label": int(samples[i].label), "defect_type": samples[i].defect_type,
         "score": float(scores[i]), "kind": kind, "has_mask": masks is not None}
        for i, kind in chosen
    ]
    (Path(cell_dir) / GALLERY_INDEX).write_text(json.dumps(index, indent=1))
    return path


def read_gallery(cell_dir: Path) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]] | None:
    """The gallery index and arrays of a cell folder, or None when it has none."""
    from safetensors.numpy import load_file

    cell_dir = Path(cell_dir)
    if not (cell_dir / GALLERY_FILE).is_file() or not (cell_dir / GALLERY_INDEX).is_file():
        return None
    try:
        arrays = load_file(cell_dir / GALLERY_FILE)
        index = json.loads((cell_dir / GALLERY_INDEX).read_text())
    except Exception:  # noqa: BLE001 - a damaged gallery only loses the pictures
        return None
    return index, arrays
