"""PatchCore's math (Roth et al., CVPR 2022), vectorised in torch.

* ``greedy_coreset``: exact greedy k-center selection (the paper's Algorithm 1),
  evaluated lazily (see its docstring): the same picks as the brute-force greedy,
  with most of the work done as a few large matrix products.
* ``nearest``: nearest-neighbour distances by ||a||^2 + ||b||^2 - 2ab in chunks.
* ``bank_neighbourhoods``, ``reweighted_score`` and ``image_scores``: the paper's
  image-score reweighting (eq. 7), the neighbourhoods precomputed once per bank
  (``row_neighbourhood``: one row's, in a bank with some rows left out).
"""

from __future__ import annotations

import math

import torch


def random_projection(x: torch.Tensor, dim: int, generator: torch.Generator) -> torch.Tensor:
    """Gaussian Johnson-Lindenstrauss projection to ``dim`` (identity when x is narrower)."""
    if dim <= 0 or x.shape[1] <= dim:
        return x
    w = torch.randn(x.shape[1], dim, generator=generator, dtype=x.dtype) / math.sqrt(dim)
    return x @ w


def _min_sq_dist(z: torch.Tensor, sq: torch.Tensor, centers: torch.Tensor, chunk: int = 32768) -> torch.Tensor:
    """min over ``centers`` of squared distances of each row of z, as blocked GEMMs."""
    csq = (centers * centers).sum(1)
    out = torch.empty(z.shape[0], dtype=z.dtype)
    for s in range(0, z.shape[0], chunk):
        d2 = torch.addmm(csq.unsqueeze(0), z[s : s + chunk], centers.T, alpha=-2)
        out[s : s + chunk] = d2.min(1).values.add_(sq[s : s + chunk])
    return out.clamp_min_(0)


def greedy_coreset(z: torch.Tensor, k: int, start: int = 0, hot: int = 4096, pool: int = 32768) -> torch.Tensor:
    """Indices of ``k`` rows of ``z`` chosen by greedy k-center (farthest-point) selection
    starting from row ``start``: each step adds the row farthest from the chosen ones.

    Exact, but lazy. A row's distance to the chosen centers only shrinks, so a stale
    value is an upper bound. Each row remembers how many centers its value accounts
    for. A "hot" set of the farthest rows is kept exact after every pick (hot x d
    work). When the hot set's best no longer beats the largest bound outside it, a sync
    brings the ``pool`` rows with the largest bounds up to date, as GEMMs against the
    centers each has not seen, and refills the hot set from them. Rows that are already
    close to some center are never looked at again, so the total work is far below the
    brute force's n x k x d, and nearly all of it runs as matrix products."""
    n = z.shape[0]
    k = max(1, min(int(k), n))
    sq = (z * z).sum(1)
    chosen = [int(start)]
    mind = torch.addmv(sq, z, z[start], alpha=-2).add_(sq[start]).clamp_min_(0)  # squared
    seen = torch.ones(n, dtype=torch.long)  # mind[i] accounts for chosen[:seen[i]]
    hot = max(1, min(hot, n))
    pool = max(hot, min(pool, n))
    hot_idx = hot_val = hot_z = hot_sq = None
    bound = -1.0
    while len(chosen) < k:
        if hot_idx is None:
            cur = len(chosen)
            top = torch.topk(mind, min(pool + 1, n))
            cand = top.indices[:pool]
            outside = float(top.values[pool]) if n > pool else -1.0
            groups = seen[cand]
            for s_ in torch.unique(groups).tolist():
                if s_ >= cur:
                    continue
                rows = cand[groups == s_]
                centers = z[torch.tensor(chosen[s_:], dtype=torch.long)]
                mind[rows] = torch.minimum(mind[rows], _min_sq_dist(z[rows], sq[rows], centers))
            seen[cand] = cur
            ex = mind[cand]
            top2 = torch.topk(ex, min(hot + 1, cand.numel()))
            hot_idx, hot_val = cand[top2.indices[:hot]], top2.values[:hot].clone()
            inner = float(top2.values[hot]) if cand.numel() > hot else -1.0
            bound = max(outside, inner)
            hot_z, hot_sq = z[hot_idx], sq[hot_idx]
        j = int(torch.argmax(hot_val))
        if float(hot_val[j]) < bound:  # a row outside the hot set may be farther: sync
            mind[hot_idx] = hot_val  # exact as of now
            seen[hot_idx] = len(chosen)
            hot_idx = None
            continue
        i = int(hot_idx[j])
        chosen.append(i)
        d = torch.addmv(hot_sq, hot_z, z[i], alpha=-2).add_(sq[i]).clamp_min_(0)
        torch.minimum(hot_val, d, out=hot_val)
        hot_val[j] = 0.0
    return torch.tensor(chosen, dtype=torch.long)


def brute_force_greedy(z: torch.Tensor, k: int, start: int = 0) -> torch.Tensor:
    """The textbook O(n k) greedy k-center, for tests."""
    chosen = [start]
    mind = ((z - z[start]) ** 2).sum(1)
    for _ in range(1, k):
        i = int(torch.argmax(mind))
        chosen.append(i)
        mind = torch.minimum(mind, ((z - z[i]) ** 2).sum(1))
    return torch.tensor(chosen)


FEW_QUERIES = 256  # up to here nearest() multiplies bank-major (faster for few queries, slower beyond ~512)


def nearest(
    queries: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor | None = None, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance of each query row to its nearest bank row, and that row's index."""
    if bank_sq is None:
        bank_sq = (bank * bank).sum(1)
    dists, index = [], []
    for s in range(0, queries.shape[0], chunk):
        q = queries[s : s + chunk]
        if q.shape[0] <= FEW_QUERIES:
            # bank-major: for a handful of queries (HNSW's exact re-check) MKL's GEMM with
            # the bank on the left and a contiguous (C, n) right side is ~1.3-1.6x faster
            # than q @ bank.T (measured, 32 queries on 19k / 77k rows, 2 threads)
            m, j = torch.addmm(bank_sq[:, None], bank, q.T.contiguous(), alpha=-2).min(0)
        else:
            m, j = torch.addmm(bank_sq.unsqueeze(0), q, bank.T, alpha=-2).min(1)
        dists.append(m.add_((q * q).sum(1)).clamp_min_(0).sqrt_())  # ||q||^2 is constant along the min
        index.append(j)
    return torch.cat(dists), torch.cat(index)


def bank_neighbourhoods(bank: torch.Tensor, bank_sq: torch.Tensor, b: int, chunk: int = 1024) -> torch.Tensor:
    """(M, b) bank row indices: each row itself, then its b - 1 nearest other rows.

    Eq. 7 needs the neighbourhood of m*, the nearest bank row of an image's most
    anomalous patch. Found per image it is one pass over the whole bank, and at
    prediction time on a 2-core machine that pass is bound by memory bandwidth (~7 ms
    for 77k x 152 rows), so the fit computes every row's neighbourhood once (M^2 d
    flops as blocked GEMMs: ~2 s for bottle's 19k-row bank) and prediction gathers b rows."""
    m = bank.shape[0]
    b = max(1, min(int(b), m))
    out = torch.empty(m, b, dtype=torch.long)
    for s in range(0, m, chunk):
        rows = bank[s : s + chunk]
        d2 = torch.addmm(bank_sq.unsqueeze(0), rows, bank.T, alpha=-2).add_(bank_sq[s : s + chunk, None]).clamp_min_(0)
        d2[torch.arange(rows.shape[0]), torch.arange(s, s + rows.shape[0])] = -1.0  # the row itself first, even with duplicates
        out[s : s + chunk] = torch.topk(d2, b, dim=1, largest=False).indices
    return out


def row_neighbourhood(bank: torch.Tensor, bank_sq: torch.Tensor, row: int, b: int) -> torch.Tensor:
    """(b,) one row of ``bank_neighbourhoods``: ``row`` itself, then its b - 1 nearest other
    rows, by the same arithmetic. Rows whose ``bank_sq`` is +inf are never neighbours
    (how out-of-fold scoring leaves an image's own rows out; b must not exceed the rest)."""
    d2 = torch.addmm(bank_sq.unsqueeze(0), bank[row : row + 1], bank.T, alpha=-2)[0].add_(bank_sq[row]).clamp_min_(0)
    d2[row] = -1.0
    return torch.topk(d2, b, largest=False).indices


def reweighted_score(patch: torch.Tensor, support: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """patch (..., C), support (..., b) -> score (...). Eq. 7 of the paper:
    s = (1 - softmax_b(||m_test - m||)[m*]) * ||m_test - m*||, with the softmax over ``support``: m* (the most anomalous patch's nearest memory feature)
    then its b - 1 nearest neighbours in the bank (a row of ``bank_neighbourhoods``).
    With b = 1 (asked for, or a one-row bank) there is no neighbourhood to weigh by: the
    score is the plain distance, as in anomalib (a softmax over one element would make
    every score 0)."""
    dist = torch.linalg.vector_norm(bank[support] - patch.unsqueeze(-2), dim=-1)  # batched: (N, b)
    if support.shape[-1] == 1:
        return dist[..., 0]
    weight = 1.0 - torch.softmax(dist, -1)[..., 0]
    return weight * dist[..., 0]


def image_scores(q: torch.Tensor, dist: torch.Tensor, index: torch.Tensor, neighbourhoods: torch.Tensor,
                 bank: torch.Tensor) -> torch.Tensor:
    """(N,) image scores from patch features q (N, P, C), their nearest-row distances and
    indices (N, P) and the bank's neighbourhood table: eq. 7 on each image's most
    anomalous patch. Gathers only, so eager prediction and the export graph share it."""
    p = dist.argmax(1, keepdim=True)  # (N, 1) the most anomalous patch
    nn_index = index.gather(1, p)[:, 0]  # (N,) its nearest bank row m*
    patch = q.gather(1, p.unsqueeze(-1).expand(-1, 1, q.shape[-1]))[:, 0]  # (N, C)
    return reweighted_score(patch, neighbourhoods[nn_index], bank)
