"""Mixed supervision's protocol: which labelled defective images a run moves into
training (``--defects-in-train K``), and the test set that remains.

A sweep over K (0, 1, 5, ...) sets aside the same ``reserve`` = its largest K defective
test images for every K, so every row of the sweep, whatever its K and whether its
detector learns from labels at all, is scored on one and the same test set: a curve
over K then compares like with like. The K images a cell trains on are the first K of
that reserve (nested: K = 1 is part of K = 5), drawn by a seeded permutation of the
category's defective images. A dataset with labelled defective training images of its
own (``Split.train_defective``, e.g. KSDD2's positives) gives K of those instead, and its
test set stays whole.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any

import numpy as np

from iadbench.errors import InputError
from iadbench.types import Sample, Split


def parse_defect_counts(text: str, where: str = "--defects-in-train") -> list[int]:
    """``"0,1,5"`` -> [0, 1, 5]: each a whole number >= 0, in the order given, once."""
    counts = []
    for item in str(text).split(","):
        item = item.strip()
        try:
            k = int(item)
        except ValueError:
            raise InputError(f"{where} {text!r}: {item!r} is not a whole number") from None
        if k < 0:
            raise InputError(f"{where} {text!r}: {k} is negative (a count of labelled defective images)")
        counts.append(k)
    return list(dict.fromkeys(counts))


def check_defect_counts(counts: list[int], where: str = "defects_in_train") -> list[int]:
    """A plan's counts: a non-empty list of whole numbers >= 0, each once."""
    if isinstance(counts, int) and not isinstance(counts, bool):
        counts = [counts]
    if not isinstance(counts, (list, tuple)) or not counts:
        raise InputError(f"{where} must be a list of whole numbers >= 0, got {counts!r}")
    for k in counts:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InputError(f"{where}: {k!r} is not a whole number >= 0")
    return list(dict.fromkeys(int(k) for k in counts))


def _order(samples: list[Sample], seed: int, split: Split) -> list[Sample]:
    """``samples`` in a seeded order that depends on the seed, dataset and category only
    (not on the detector or K), so that every cell of a sweep draws the same images."""
    ordered = sorted(samples, key=lambda s: str(s.path))
    salt = zlib.crc32(f"{split.dataset}/{split.category}".encode())
    perm = np.random.default_rng([int(seed), salt]).permutation(len(ordered))
    return [ordered[i] for i in perm]


def available(split: Split) -> tuple[str, int]:
    """(where labelled defects come from, how many a run may take): the dataset's own
    labelled defective training images, else the defective test images less one (a
    category keeps at least one defect to score)."""
    if split.train_defective:
        return "dataset", len(split.train_defective)
    return "test", max(sum(s.is_anomalous for s in split.test) - 1, 0)


def check_reserve(split: Split, reserve: int) -> None:
    """A one-line error where a category cannot give ``reserve`` labelled defects."""
    source, n = available(split)
    if reserve <= n:
        return
    if source == "dataset":
        raise InputError(f"--defects-in-train {reserve}: {split.dataset}:{split.category} has "
                         f"{n} labelled defective training images")
    bad = sum(s.is_anomalous for s in split.test)
    raise InputError(f"--defects-in-train {reserve}: {split.dataset}:{split.category} has {bad} defective test "
                     f"images; at most {n} can move to training (one must stay to be scored)")


def take_defects(split: Split, k: int, reserve: int, seed: int) -> tuple[Split, list[Sample], dict[str, Any]]:
    """(the split a cell scores, the K labelled defects it may train on, the record's
    ``supervision`` facts). ``reserve`` >= ``k``: the sweep's largest K."""
    if k < 0 or reserve < k:
        raise InputError(f"labelled defects: K={k} must be in [0, reserve={reserve}]")
    check_reserve(split, reserve)
    source, _ = available(split)
    if source == "dataset":
        chosen = _order(split.train_defective, seed, split)[:k]
        scored = split
        removed: list[Sample] = []
    else:
        bad = [s for s in split.test if s.is_anomalous]
        removed = _order(bad, seed, split)[:reserve]
        chosen = removed[:k]
        gone = {s.path for s in removed}
        scored = replace(split, test=[s for s in split.test if s.path not in gone])
    info = {
        "k": k,
        "reserve": reserve,
        "source": source,
        "images": [str(s.path) for s in chosen],
        "masks": sum(s.mask_path is not None for s in chosen),
        "test_removed": [str(s.path) for s in removed],
    }
    return scored, chosen, info
