"""Nearest-neighbour search of test patches in PatchCore's memory bank.

Three ways, chosen by the detector's ``search`` parameter:

* ``exact``: ||q||^2 + ||b||^2 - 2 q.b as chunked GEMMs over the whole bank
  (``core.nearest``). Cost grows linearly with the bank.
* ``ivfpq`` (the default): faiss IVF-PQ in its fast-scan layout. k-means lists over the
  bank (~sqrt(rows)), each row's residual as 4-bit codes of 4 coordinates, ``probe``
  (8) lists searched a query, and the 8 nearest by code re-ranked by their exact
  distances. Every distance it reports is the exact distance to some bank row.
* ``hnsw``: a faiss HNSW graph (M = 48, efConstruction 120, efSearch ``ef``).

Both approximate searches give distances that can only overestimate the true nearest
distance (each is the distance to some bank row, never one closer than the nearest).
Then, per image, the image maximum is certified exact in two steps:

  1. Tighten. The largest approximate distances are often search failures, not anomalies
     (on bottle's 77k-row bank, HNSW at ef 16 reported 70 for patches whose nearest row
     lies at 4-11). The ``tighten_top`` (8) patches with the largest bounds are searched
     again in an inverted file over the same k-means lists, ``tighten_probe`` (32) of
     them probed: another upper bound, nearly always the true distance. This repeats
     until the largest bound belongs to a tightened patch.
  2. Exact. The patch with the largest bound is searched exactly (one pass over the
     bank); then every patch whose bound still exceeds the largest exact distance found
     is tightened and, if still above, searched exactly in one more pass. Every other
     patch has true distance <= its bound <= that exact distance, so the image's most
     anomalous patch and its true nearest row are known exactly: the image score (eq. 7)
     is exact. Only the anomaly map keeps approximate distances outside the exact and
     tightened patches.

Why tighten, and why deep: an exact pass is a GEMM of the re-checked patches against the
whole bank, far below peak for a few patches and bound by reading the bank (37 MB for
magnetic tile's 61k x 152). When the tightening probed the first stage's 8 lists, it
rarely improved on IVF-PQ, and magnetic tile sent 15 patches an image to the exact pass;
probing 32 lists for 8 patches sends one (its maximum), and the search took 13.6 instead
of 23.8 ms an image under an AVX2 ceiling (bottle 7.8 against 8.0; spec version 9).

The indexes are built on first use from the bank (not saved: a model folder holds the
bank only, so the choice can change at load time without refitting), with one thread:
faiss's parallel builds are not deterministic, and a single-threaded one gives the same
index, so the same maps, every time (the image scores are exact either way).

faiss and torch may share one OpenMP runtime (when torch is imported first, faiss's
``omp_set_num_threads`` sets torch's thread count too), so every change of faiss's
thread count here is undone on the way out.

Excluded rows (``exclude``, one set per image; PatchCore's out-of-fold scores leave out
the rows taken from the image's own patches): the graph and the inverted files search
with a faiss filter (``Exclusion``; the graph is still traversed through excluded rows,
only results skip them, so no index is rebuilt) and the exact passes see those rows'
squared norms as +inf. Every distance is then an upper bound of the nearest distance in
the bank less those rows, and the certification above makes each image's maximum exact
in that smaller bank.

Why IVF-PQ is the default first stage (spec version 8): its 4-bit codes make probing 8
lists cheap (a list's rows are scanned 32 at a time from lookup tables held in SIMD
registers). HNSW (M 48, efConstruction 120, ef 16) is the other choice. The flat inverted
file as the whole search was faster than the graph but lost 0.0044 pixel AUROC on
magnetic tile. Gates and timings of each choice: docs/history.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch

from iadbench.api import InputError
from iadbench_patchcore.core import nearest

SEARCHES = ("exact", "hnsw", "ivfpq")
#: Candidates an IVF-PQ search re-ranks by their exact distances, per query.
REFINE_CANDIDATES = 8
#: The certification's tightening: patches re-searched a round, and lists they probe.
TIGHTEN_TOP, TIGHTEN_PROBE = 8, 32
#: Banks smaller than this are searched exactly by the "approximate" stage too: a
#: 4-bit product quantizer trains 16 centroids per sub-vector, and so few rows search
#: exactly in no time.
SMALLEST_QUANTIZED_BANK = 256


def check_search(search: str) -> str:
    search = str(search).strip().lower()
    if search not in SEARCHES:
        raise InputError(f"patchcore: search must be one of {', '.join(SEARCHES)}, got {search!r}")
    if search != "exact":
        try:
            import faiss  # noqa: F401
        except ImportError:
            raise InputError(f"patchcore: search={search!r} needs faiss-cpu (pip install 'iadbench[deploy]')") from None
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

    def __init__(self, bank: torch.Tensor, search: str = "exact", ef: int = 16, tighten_top: int = TIGHTEN_TOP, hnsw_m: int = 48,
                 ef_construction: int = 120, tighten_probe: int = TIGHTEN_PROBE, probe: int = 8):
        self.bank = bank.float().contiguous()
        self.bank_sq = (self.bank * self.bank).sum(1)
        self.search, self.ef, self.tighten_top, self.hnsw_m = check_search(search), int(ef), int(tighten_top), int(hnsw_m)
        self.ef_construction, self.tighten_probe, self.probe = int(ef_construction), int(tighten_probe), int(probe)
        self._index = self._lists = self._codes = None

    def _approximate(self):
        """The first stage's index: the HNSW graph or the IVF-PQ index (built on first use)."""
        return self._hnsw() if self.search == "hnsw" else self._quantized()

    def _quantized(self):
        """IVF-PQ: k-means lists (as ``_inverted_file``'s) holding each row's residual as
        4-bit product codes of 4 coordinates (faiss's fast-scan layout: a query's distance
        tables live in SIMD registers), ``probe`` lists searched a query, and the
        ``REFINE_CANDIDATES`` nearest by code re-ranked by their exact distances (faiss's
        IndexRefineFlat). The coordinates are zero-padded to a multiple of 4, which
        changes no distance. A bank under ``SMALLEST_QUANTIZED_BANK`` rows: a flat
        (exact) index."""
        if self._codes is None:
            import faiss

            rows, dim = self.bank.shape
            width = -(-dim // 4) * 4
            if rows < SMALLEST_QUANTIZED_BANK:
                index = faiss.IndexFlatL2(width)
            else:
                lists = _list_count(rows)
                base = faiss.IndexIVFPQFastScan(faiss.IndexFlatL2(width), width, lists, width // 4, 4)
                base.cp.seed = base.pq.cp.seed = 0
                base.nprobe = min(self.probe, lists)
                index = faiss.IndexRefineFlat(base)
                index.k_factor = REFINE_CANDIDATES
            with faiss_threads(1):  # k-means sums in a fixed order: the same index every build
                padded = _padded(self.bank, width).numpy()
                index.train(padded)
                index.add(padded)
            self._codes = index
        return self._codes

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

    def _inverted_file(self):
        """k-means lists over the bank (``_list_count``), ``tighten_probe`` of them probed
        a query. With IVF-PQ search it shares that index's lists (its trained coarse
        quantizer: the same k-means on the same rows, padded, gave the same centroids),
        so the bank is clustered once."""
        if self._lists is None:
            import faiss

            rows, dim = self.bank.shape
            lists = _list_count(rows)
            codes = self._quantized() if self.search == "ivfpq" else None
            if isinstance(codes, faiss.IndexRefine):  # trained: the IVF index skips k-means
                index = faiss.IndexIVFFlat(faiss.extract_index_ivf(codes).quantizer, codes.d, lists)
            else:
                index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, lists)
                index.cp.seed = 0
            with faiss_threads(1):  # k-means sums in a fixed order: the same lists every build
                rows_in = _padded(self.bank, index.d).numpy()
                if not index.is_trained:
                    index.train(rows_in)
                index.add(rows_in)
            index.nprobe = min(self.tighten_probe, lists)
            self._lists = index
        return self._lists

    @staticmethod
    def _bounds(index, flat: torch.Tensor, params=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q, C) -> a faiss index's upper bounds of the nearest distances and the rows that
        attain them; a query whose probed lists are empty (or, filtered by ``params``, hold
        no allowed row) gets inf."""
        with faiss_threads(torch.get_num_threads()):  # searching is deterministic in parallel
            d2, idx = index.search(_padded(flat, index.d).numpy(), 1, params=params)
        j = torch.from_numpy(idx[:, 0].astype(np.int64))
        d = torch.from_numpy(np.sqrt(np.maximum(d2[:, 0], 0))).masked_fill_(j < 0, float("inf"))
        return d, j

    def __call__(self, queries: torch.Tensor, exclude: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (N, P, C) -> (distances (N, P), bank indices (N, P)); per image, the
        largest distance and its index are exact. ``exclude`` (one index tensor per image):
        bank rows image k may not match, as if deleted from the bank (see ``Exclusion``)."""
        n, p, c = queries.shape
        if exclude is not None:
            return self._excluding(queries, exclude)
        if self.search == "exact":
            d, i = nearest(queries.reshape(-1, c), self.bank, self.bank_sq)
            return d.view(n, p), i.view(n, p)
        dist, index = self._bounds(self._approximate(), queries.reshape(-1, c))  # index built on first use
        dist, index = dist.view(n, p), index.view(n, p)
        for k in range(n):
            self._certify(queries[k].contiguous(), dist[k], index[k])
        return dist, index

    def _excluding(self, queries: torch.Tensor, exclude: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``__call__`` with rows left out, image by image (each image its own filter)."""
        n, p, _ = queries.shape
        if len(exclude) != n:
            raise ValueError(f"exclude holds {len(exclude)} row sets for {n} images")
        dist, index = torch.empty(n, p, dtype=self.bank.dtype), torch.empty(n, p, dtype=torch.long)
        for k in range(n):
            ex = Exclusion(self, exclude[k])
            q = queries[k].contiguous()
            if self.search == "exact":
                dist[k], index[k] = nearest(q, self.bank, ex.bank_sq)
                continue
            dist[k], index[k] = self._bounds(self._approximate(), q, ex.first)
            self._certify(q, dist[k], index[k], ex)
        return dist, index

    def _tighten(self, q: torch.Tensor, rows: torch.Tensor, dist: torch.Tensor, index: torch.Tensor,
                 ex: Exclusion | None = None) -> None:
        """Lower the bounds of ``rows`` (patch positions) to the inverted file's, where smaller."""
        d, j = self._bounds(self._inverted_file(), q[rows], ex.ivf if ex is not None else None)
        better = d < dist[rows]
        dist[rows[better]], index[rows[better]] = d[better], j[better]

    def _certify(self, q: torch.Tensor, dist: torch.Tensor, index: torch.Tensor, ex: Exclusion | None = None) -> None:
        """One image, in place: tighten the largest bounds, then search exactly until the
        largest exact distance found is >= every bound left (module doc). With ``ex`` every
        step searches the bank less its rows: the bounds stay bounds of that smaller
        bank's nearest distances, so the same argument makes its maximum exact."""
        bank_sq = ex.bank_sq if ex is not None else self.bank_sq
        tight = torch.zeros_like(dist, dtype=torch.bool)
        while not bool(tight.all()):
            loose = (~tight).nonzero()[:, 0]
            if bool(tight.any()) and float(dist[loose].max()) <= float(dist[tight].max()):
                break
            top = loose[torch.argsort(dist[loose], descending=True)[: self.tighten_top]]
            self._tighten(q, top, dist, index, ex)
            tight[top] = True
        exact = torch.zeros_like(tight)
        todo = dist.argmax().view(1)
        while todo.numel():
            dist[todo], index[todo] = nearest(q[todo], self.bank, bank_sq)
            exact[todo] = True
            largest = dist[exact].max()
            above = ((dist > largest) & ~exact).nonzero()[:, 0]
            loose = above[~tight[above]]
            if loose.numel():
                self._tighten(q, loose, dist, index, ex)
                tight[loose] = True
                above = above[dist[above] > largest]
            todo = above


class Exclusion:
    """Bank rows one query image may not match, in each search's terms: squared norms
    +inf for the exact passes (||q||^2 + inf - 2 q.b is never the minimum) and a faiss
    filter for the graph and the inverted file (their traversal still passes through
    the excluded rows, only results skip them, so the graph needs no rebuild). Faiss
    holds raw pointers to the bitmap and the selector: they live as long as this."""

    def __init__(self, search: BankSearch, rows: torch.Tensor):
        self.bank_sq = search.bank_sq.clone()
        self.bank_sq[rows] = float("inf")
        self.first = self.ivf = None
        if search.search != "exact":
            import faiss

            allowed = np.ones(search.bank.shape[0], dtype=bool)
            allowed[rows.numpy()] = False
            self._bitmap = np.packbits(allowed, bitorder="little")
            self._selector = faiss.IDSelectorBitmap(allowed.size, faiss.swig_ptr(self._bitmap))
            self.ivf = faiss.SearchParametersIVF(sel=self._selector, nprobe=search._inverted_file().nprobe)
            first = search._approximate()
            if search.search == "hnsw":
                self.first = faiss.SearchParametersHNSW(sel=self._selector, efSearch=search.ef)
            elif isinstance(first, faiss.IndexRefine):  # the filter acts on the candidates
                self._probe = faiss.SearchParametersIVF(sel=self._selector, nprobe=faiss.extract_index_ivf(first).nprobe)
                self.first = faiss.IndexRefineSearchParameters(k_factor=first.k_factor, base_index_params=self._probe)
            else:  # a small bank's flat index
                self.first = faiss.SearchParameters(sel=self._selector)


def _list_count(rows: int) -> int:
    """Inverted lists for a bank of ``rows``: ~sqrt(rows), at least 39 rows a list as
    faiss wants for training."""
    return max(1, min(round(rows**0.5), rows // 39))


def _padded(x: torch.Tensor, width: int) -> torch.Tensor:
    """(n, d) rows zero-padded to ``width`` coordinates (no distance changes), contiguous."""
    return torch.nn.functional.pad(x, (0, width - x.shape[1])).contiguous() if width > x.shape[1] else x.contiguous()
