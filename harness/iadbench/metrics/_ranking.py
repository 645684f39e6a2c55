"""One ranking of all pixels, shared by pixel AUROC, pixel AP and AUPRO.

All three metrics only need, at every distinct score t (descending), how many pixels
and how many defective pixels score >= t. That needs no argsort of the millions of
pixels: one plain sort of the scores gives the distinct values and how many pixels
reach each; the defective pixels (a few percent) are ranked on their own and counted
per distinct value. Counts are exact integers, so the curves are exact.

The ranking of the last (maps, masks) pair is kept (one entry): the metrics plugin
calls the three metrics one after the other on the same EvalData. The entry is found
again only for the very same array objects (held by weak reference, so a new array
at a recycled address never matches, and the entry is dropped when the maps are
freed) with the same shape, dtype, strides and data pointer, plus a cheap checksum
(sum of the maps, count of defective pixels) as a guard against in-place edits.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from iadbench.metrics._checks import pixel_inputs


@dataclass(frozen=True, eq=False)
class PixelRanking:
    """Cumulative counts at every distinct pixel score, highest score first.

    ``thresholds[g]`` is the g-th highest distinct score (maps' dtype); ``n_above[g]``
    and ``tps[g]`` count all pixels and defective pixels scoring >= it (int32 where
    the pixel count allows, else int64; sums over them are taken in int64).
    ``positives`` are the flat indices of the defective pixels, highest score first
    (ties in index order). Arrays are read-only: the ranking is shared via the cache.
    """

    thresholds: np.ndarray
    n_above: np.ndarray
    tps: np.ndarray
    positives: np.ndarray
    n_defective: int
    n_normal: int

    @property
    def fps(self) -> np.ndarray:
        """Normal pixels scoring >= each threshold."""
        return self.n_above - self.tps

    def roc_auc(self) -> float:
        """Area under (FPR, TPR) through every distinct threshold, trapezoid rule.

        Ties are one step of the curve (a diagonal segment), as in scikit-learn's
        ``roc_auc_score``. Summed in integers (twice the area times P * N, at most
        n**2 / 2: exact below about 4e9 pixels), divided once at the end.
        """
        tps = np.r_[np.int64(0), self.tps]  # int64 from here on
        fps = np.r_[np.int64(0), self.fps]
        twice_area = int(np.dot(np.diff(fps), tps[1:] + tps[:-1]))
        return twice_area / (2.0 * self.n_defective * self.n_normal)

    def average_precision(self) -> float:
        """scikit-learn's average precision: sum over distinct thresholds of
        (R_n - R_{n-1}) * P_n, with no interpolation."""
        gained = np.diff(self.tps.astype(np.int64), prepend=np.int64(0))
        hit = np.flatnonzero(gained)  # thresholds where recall grows; others add 0
        precision = self.tps[hit] / self.n_above[hit].astype(np.float64)
        return float(np.dot(gained[hit].astype(np.float64), precision) / self.n_defective)


def _build(maps: np.ndarray, masks: np.ndarray) -> PixelRanking:
    scores = maps.reshape(-1)
    flat_masks = masks.reshape(-1)
    n = scores.size

    ascending = np.sort(scores)
    starts = np.flatnonzero(ascending[1:] != ascending[:-1])
    starts += 1
    starts = np.r_[np.intp(0), starts]  # first index of each distinct value
    distinct = ascending[starts]
    del ascending

    positives = np.flatnonzero(flat_masks)
    positive_scores = scores[positives]
    # -x is exact for floats; a stable sort keeps ties in pixel-index order.
    rank = np.argsort(-positive_scores, kind="stable")
    positives = positives[rank]
    # Every defective pixel's score is one of the distinct values: find which.
    group = np.searchsorted(distinct, positive_scores)
    per_value = np.bincount(group, minlength=distinct.size)

    # Counts up to n: int32 where it fits (the ranking is kept; half the memory).
    count = np.int32 if n < 2**31 else np.int64
    n_above = (n - starts)[::-1].astype(count)
    tps = np.cumsum(per_value[::-1], dtype=count)
    thresholds = distinct[::-1].copy()
    for a in (thresholds, n_above, tps, positives):
        a.flags.writeable = False
    return PixelRanking(
        thresholds=thresholds,
        n_above=n_above,
        tps=tps,
        positives=positives,
        n_defective=int(positives.size),
        n_normal=int(n - positives.size),
    )


# (weakref to maps, weakref to masks, signature, checksum, ranking), or None.
_last: tuple | None = None


def _signature(a: np.ndarray) -> tuple:
    return (a.shape, a.dtype.str, a.strides, a.__array_interface__["data"][0])


def _checksum(maps: np.ndarray, masks: np.ndarray) -> tuple:
    return (float(maps.sum(dtype=np.float64)), int(np.count_nonzero(masks)))


def _forget(ref: weakref.ref) -> None:
    global _last
    entry = _last
    if entry is not None and (entry[0] is ref or entry[1] is ref):
        _last = None


def clear_cache() -> None:
    """Drop the kept ranking (tests; or to free its memory at once)."""
    global _last
    _last = None


def rank_pixels(maps: np.ndarray, masks: np.ndarray | None) -> PixelRanking:
    """The validated ranking of (maps, masks), as checked by ``pixel_inputs``
    (which raises UndefinedMetric or ValueError); reused for the same arrays."""
    global _last
    cacheable = isinstance(maps, np.ndarray) and isinstance(masks, np.ndarray)
    if cacheable:
        entry = _last
        if (
            entry is not None
            and entry[0]() is maps
            and entry[1]() is masks
            and entry[2] == (_signature(maps), _signature(masks))
            and entry[3] == _checksum(maps, masks)
        ):
            return entry[4]
    valid_maps, valid_masks = pixel_inputs(maps, masks)
    ranking = _build(valid_maps, valid_masks)
    if cacheable:
        try:
            refs = (weakref.ref(maps, _forget), weakref.ref(masks, _forget))
        except TypeError:  # an ndarray subclass without weak references
            return ranking
        signature = (_signature(maps), _signature(masks))
        _last = (*refs, signature, _checksum(maps, masks), ranking)
    return ranking
