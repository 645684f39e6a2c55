"""Nearest-neighbour search of test patches in PatchCore's memory bank.

Two ways, chosen by the detector's ``search`` parameter:

* ``exact``: ||q||^2 + ||b||^2 - 2 q.b as chunked GEMMs over the whole bank
  (``core.nearest``). Cost grows linearly with the bank.
* ``hnsw``: a faiss HNSW graph (M = 48, efConstruction 120, efSearch ``ef``) gives
  approximate distances; they can only overestimate the true nearest distance (a
  graph search returns some bank row, never one closer than the nearest). Then, per
  image, the ``recheck`` patches with the largest approximate distances are searched
  exactly. Any patch outside them has true distance <= its approximate distance <= the
  smallest approximate distance rechecked, so once the largest exact distance among
  the rechecked patches reaches that bound, the image's most anomalous patch and its
  true nearest neighbour are known exactly: the image score (eq. 7) is exact. If the
  bound is not met the recheck set doubles until it is. Only the anomaly map keeps
  approximate distances outside the rechecked patches.

The graph is built on first use from the bank (not saved: a model folder holds the
bank only, so the choice can change at load time without refitting), with one thread:
faiss's parallel build is not deterministic, and a single-threaded one gives the same
graph, so the same maps, every time (the image scores are exact either way).

faiss and torch may share one OpenMP runtime (when torch is imported first, faiss's
``omp_set_num_threads`` sets torch's thread count too), so every change of faiss's
thread count here is undone on the way out: the single-threaded build once left the
rest of the process, torch included, on one thread (searches 2x slower, and every cost
measured after it in the same process skewed).

Graph parameters, measured on MVTec bottle's bank (19,251 x 152), 20 test images,
2 threads: M 32 / efConstruction 80 (the first choice) found the true nearest row for
96.3% of patches at ef 16, overestimating distances by 16% on average (a few misses by
far); M 48 / efConstruction 120 98.5% and 2.8%, at 5.4 vs 4.9 ms an image and a 1.4 s
build. Because the re-check must go on until the image maximum is certified, better
bounds save exact passes: ef 16 needs 24-32 re-checked patches an image (median, p90),
so the first re-check takes 32 (one pass over the bank) rather than doubling from 8.

What limits speed on a 2-core machine is memory bandwidth: each exact pass streams
the whole bank (47 MB for 77k rows at ~7 GB/s: ~7 ms). The re-check is one such pass
an image; eq. 7's neighbourhood of m* is not (it is looked up in the table the fit
computed, ``core.bank_neighbourhoods``).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from iadbench.api import InputError
from iadbench_patchcore.core import nearest

SEARCHES = ("exact", "hnsw")


def check_search(search: str) -> str:
    search = str(search).strip().lower()
    if search not in SEARCHES:
        raise InputError(f"patchcore: search must be one of {', '.join(SEARCHES)}, got {search!r}")
    if search == "hnsw":
        try:
            import faiss  # noqa: F401
        except ImportError:
            raise InputError("patchcore: search='hnsw' needs faiss-cpu (pip install 'iadbench[deploy]')") from None
    return search


@contextmanager
def faiss_threads(n: int):
    """faiss's OpenMP thread count set to ``n`` inside, torch's and faiss's restored after."""
    import faiss

    torch_threads, faiss_before = torch.get_num_threads(), faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(faiss_before)
        torch.set_num_threads(torch_threads)


class BankSearch:
    """Nearest bank row of every query patch, image by image (see the module doc)."""

    def __init__(self, bank: torch.Tensor, search: str = "exact", ef: int = 16, recheck: int = 32, hnsw_m: int = 48,
                 ef_construction: int = 120):
        self.bank = bank.float().contiguous()
        self.bank_sq = (self.bank * self.bank).sum(1)
        self.search, self.ef, self.recheck, self.hnsw_m = check_search(search), int(ef), int(recheck), int(hnsw_m)
        self.ef_construction = int(ef_construction)
        self._index = None

    def _hnsw(self):
        if self._index is None:
            import faiss

            # One thread: a parallel build inserts in a racy order, so the graph, and
            # the maps' approximate values, would differ between builds.
            with faiss_threads(1):
                index = faiss.IndexHNSWFlat(self.bank.shape[1], self.hnsw_m)
                index.hnsw.efConstruction = self.ef_construction
                index.add(self.bank.numpy())
            self._index = index
        self._index.hnsw.efSearch = self.ef
        return self._index

    def __call__(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (N, P, C) -> (distances (N, P), bank indices (N, P)); per image, the
        largest distance and its index are exact."""
        n, p, c = queries.shape
        if self.search == "exact":
            d, i = nearest(queries.reshape(-1, c), self.bank, self.bank_sq)
            return d.view(n, p), i.view(n, p)
        graph = self._hnsw()  # (built with one thread on first use)
        with faiss_threads(torch.get_num_threads()):  # searching is deterministic in parallel
            d2, idx = graph.search(queries.reshape(-1, c).contiguous().numpy(), 1)
        dist = torch.from_numpy(np.sqrt(np.maximum(d2[:, 0], 0))).view(n, p).clone()
        index = torch.from_numpy(idx[:, 0].astype(np.int64)).view(n, p).clone()
        for k in range(n):
            self._recheck(queries[k], dist[k], index[k])
        return dist, index

    def _recheck(self, q: torch.Tensor, dist: torch.Tensor, index: torch.Tensor) -> None:
        """Exact search of one image's top patches, in place, until its maximum is certified:
        the largest exact distance found is >= every approximate (upper-bound) distance left."""
        order = torch.argsort(dist, descending=True)
        done, r = 0, min(self.recheck, dist.shape[0])
        while True:
            todo = order[done:r]
            dist[todo], index[todo] = nearest(q[todo], self.bank, self.bank_sq)
            done = r
            if done == dist.shape[0] or float(dist[order[:done]].max()) >= float(dist[order[done]]):
                return
            r = min(2 * r, dist.shape[0])
