"""The threshold for a false-alarm budget, and the false-alarm rate of a threshold, from
calibration scores of good images, each with an interval that says how far to trust it.

A line sets a budget ``rate`` (0.01: one good part in a hundred flagged) and needs the
threshold t with P(good score > t) = rate. Two regimes:

- **Inside the data** (n * rate >= 10, about ten calibration scores above the target):
  the empirical (1 - rate)-quantile, ``np.quantile``'s default (linear interpolation,
  Hyndman & Fan 1996 type 7, the rule ``quantile:Q`` already uses). Its interval needs
  no model: the number of scores below the true quantile is Binomial(n, 1 - rate), so the
  order statistics X(l) and X(u) whose ranks hold that count with the requested
  probability bound it (David & Nagaraja 2003, "Order Statistics", 7.1). With a discrete
  binomial it covers at least the requested confidence, a little more at small n.
- **Beyond the data** (n * rate < 10): the target lies among the few largest scores or
  above them, where counting says nothing. The upper tail is modelled instead, by peaks
  over threshold (Coles 2001, "An Introduction to Statistical Modeling of Extreme Values",
  ch. 4): above a high threshold u the excesses of almost any continuous score follow a
  generalized Pareto distribution (GPD; Pickands 1975). Here u is the (k+1)-th largest score,
  so exactly k scores exceed it, with k = max(20, ceil(n / 10)) (at most n - 1): at
  least twenty excesses, as fewer leave the shape undetermined, and a tenth of the
  scores beyond that, the usual compromise between a threshold too low for the GPD to
  hold (bias) and too few excesses (variance). The GPD is fitted by maximum likelihood
  (``scipy.stats.genpareto``, location fixed at 0) with its shape held within
  [-0.5, 1]: below -0.5 maximum likelihood loses its usual behaviour (Smith 1985) and a
  score with a shape of 1 or more would have no mean. The threshold is
  u + the GPD's quantile at conditional probability rate * n / k.
- **Too few scores** for a tail fit (n < MIN_TAIL_SCORES = 20; from 20 scores on, the
  tail interval still covered 86-92% in simulation, so more would be caution without
  evidence) with the target beyond the data: the largest score, method ``max``, no
  interval, and a note saying how many calibration scores the budget needs. The same
  where the top scores are too tied to fit (fewer than 10 distinct values above u:
  saturated or coarsely rounded scores), with the note saying so.

The tail interval is a credible interval under a reference prior, chosen because of
three candidates it is the one whose frequentist coverage came out right in simulation
(gamma, Gumbel, lognormal, exponential and GPD scores, n = 30 to 300, rates 0.005 and
0.01, 100 to 400 calibration sets each):

- profile likelihood (Coles 2001, ch. 4), with zeta's binomial likelihood joined to
  the GPD's, covered only 76-88% of true quantiles at a nominal 90%, missing high two
  to four times as often as low: with 20 to 30 excesses the maximum likelihood
  extrapolation runs low (by 1-4% here) and the chi-square cut-off is too tight;
- a bootstrap resamples the few largest scores and cannot see past them, and is slow;
- integrating the likelihood over the GPD parameters under the maximal data
  information (MDI) prior for the GPD, 1/scale * exp(-shape) (Northrop & Attalides
  2016, Statistica Sinica 26:721; as in R's revdbayes), covered 86.5-92.5%
  (89% on average) of gamma, Gumbel and lognormal quantiles and 88.5-92% (90%) of
  exponential and GPD ones, 400 sets each. Its misses fall below the interval about
  twice as often as above: when it errs, it is towards a threshold set too high.

The posterior is computed on a grid, so nothing is random: the shape in steps of 0.025
over its bounds; at each shape, the log scale at 49 points a quarter of a conditional
standard deviation apart, centred on its conditional mode. The share zeta of scores
above u is not a parameter of the GPD but is known exactly in distribution: it is the
survival probability at the (k+1)-th largest of n scores, Beta(k + 1, n - k) whatever
the score distribution. The posterior probability that the rate-quantile lies below
u + e is then the posterior mean of P(zeta <= rate / S(e)), S the GPD survival function,
a sum of regularized incomplete beta functions over the grid; the interval's ends are
where it crosses (1 - confidence) / 2 and (1 + confidence) / 2, found by Brent's method.
The point estimate stays the maximum likelihood one (zeta = k / n).

``rate_above`` is the converse: where at least ten scores exceed the threshold, the
empirical fraction with a Clopper-Pearson interval (exact binomial, Clopper & Pearson
1934); beyond that, the same tail fit's survival probability at the threshold times
k / n. Its interval reads the same posterior the other way: P(rate at t <= r) is the
very probability P(r-quantile <= t) above, so ``rate_above(s, threshold_for_rate(s,
r).value)`` is r and the rate at a threshold interval's upper end has r as its upper
end. With fewer than MIN_TAIL_SCORES scores the count above the threshold is all there
is: Clopper-Pearson on it, method ``empirical``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from scipy import optimize, special, stats

from iadbench.errors import InputError, UndefinedThreshold

#: Fewer calibration scores than this and no tail is fitted.
MIN_TAIL_SCORES = 20
#: The fewest excesses a tail fit uses; beyond it a tenth of the scores (TAIL_FRACTION).
MIN_EXCEEDANCES = 20
TAIL_FRACTION = 0.10
#: Scores tied at the tail's threshold do not count as excesses; with fewer distinct
#: excesses than this (saturated or coarsely rounded scores) no tail is fitted.
MIN_DISTINCT_EXCESSES = 10
#: Scores above the target from which counting them is trusted over the tail model.
EMPIRICAL_EXCEEDANCES = 10
#: The GPD shape is held within these bounds (see the module docstring).
SHAPE_BOUNDS = (-0.5, 1.0)

_SHAPES = np.round(np.linspace(SHAPE_BOUNDS[0], SHAPE_BOUNDS[1], 61), 12)  # 0 exactly on the grid
_TINY_SHAPE = 1e-9
_ROW_CUT = 40.0  # shapes whose best log-likelihood is this far below the top carry no weight
_ROW_POINTS = 49  # log-scale points per shape, +-6 conditional standard deviations
_MDI_A = 1.0  # the MDI prior's exp(-a * shape), a = 1 (Northrop & Attalides 2016)


@dataclass(frozen=True)
class Estimate:
    """A threshold or a false-alarm rate with its interval and how it was obtained."""

    value: float  # point estimate (a threshold, or a rate)
    low: float  # interval at the confidence given at the call; NaN where none can be given
    high: float
    method: str  # "empirical" | "tail" | "max"
    n: int  # calibration scores used
    tail_n: int | None = None  # excesses the generalized Pareto fit used (method "tail")
    note: str | None = None  # one line for a record, e.g. why "max" was used

    def to_dict(self) -> dict:
        """JSON-able: NaN becomes None."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            out[f.name] = v
        return out


# --- validation ------------------------------------------------------------------------


def checked_scores(scores) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise UndefinedThreshold("no calibration scores to fix a threshold on")
    bad = x.size - int(np.isfinite(x).sum())
    if bad:
        raise UndefinedThreshold(f"{bad} of {x.size} calibration scores are NaN or infinite")
    return np.sort(x)


def _confidence(confidence: float) -> float:
    try:
        c = float(confidence)
    except (TypeError, ValueError):
        c = math.nan
    if not 0.0 < c < 1.0:
        raise InputError(f"confidence {confidence!r} is outside (0, 1) (e.g. 0.90, not 90)")
    return c


def _scores_needed(rate: float) -> int:
    """Calibration scores for the empirical (1 - rate)-quantile: about ten above it."""
    return math.ceil(round(EMPIRICAL_EXCEEDANCES / rate, 9))


def _tail_size(n: int) -> int:
    return min(n - 1, max(MIN_EXCEEDANCES, math.ceil(TAIL_FRACTION * n)))


# --- the generalized Pareto tail ---------------------------------------------------------


def _gpd_loglik(y: np.ndarray, scale, shape) -> np.ndarray:
    """Log-likelihood of the excesses y at each (scale, shape) of two broadcastable arrays;
    -inf outside the support (1 + shape * y / scale > 0 for every excess)."""
    scale, shape = np.broadcast_arrays(np.asarray(scale, dtype=np.float64), np.asarray(shape, dtype=np.float64))
    with np.errstate(all="ignore"):
        theta = shape / scale
        ok = (scale > 0) & np.isfinite(scale) & (1.0 + theta * y.max() > 0)
        near0 = np.abs(shape) < _TINY_SHAPE
        logs = np.log1p(np.where(ok, theta, 0.0)[..., None] * y).sum(axis=-1)
        xi = np.where(near0, 1.0, shape)
        ll = -y.size * np.log(scale) - np.where(near0, y.sum() / scale, (1.0 + 1.0 / xi) * logs)
    return np.where(ok, ll, -np.inf)


def _excess_quantile(shape, q):
    """The GPD excess with conditional exceedance probability q, per unit scale:
    (q**-shape - 1) / shape, and -log q at shape 0."""
    shape = np.asarray(shape, dtype=np.float64)
    logq = np.log(q)
    near0 = np.abs(shape) < _TINY_SHAPE
    xi = np.where(near0, 1.0, shape)
    return np.where(near0, -logq, np.expm1(-xi * logq) / xi)


def _log_survival(excess: float, scale, shape):
    """log P(Y > excess) of a GPD, elementwise over scale and shape; -inf past its end."""
    with np.errstate(all="ignore"):
        z = excess / scale
        near0 = np.abs(shape) < _TINY_SHAPE
        xi = np.where(near0, 1.0, shape)
        arg = 1.0 + xi * z
        out = np.where(near0, -z, -np.log1p(np.where(arg > 0, xi * z, 0.0)) / xi)
    return np.where(near0 | (arg > 0), out, -np.inf)


def _posterior_cells(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The GPD posterior on a grid: (shape, scale, weight) per cell, weights summing to 1.

    Prior: MDI, flat in log scale and exp(-shape) in shape on SHAPE_BOUNDS. The shape
    grid is fixed; along log scale each shape's row is centred on its conditional mode
    (found on a coarse grid, refined by a parabola) and spans +-6 conditional standard
    deviations in 49 steps, so the grid follows the ridge of the likelihood whatever n.
    """
    coarse = math.log(float(y.mean())) + np.linspace(-7.0, 3.0, 101)
    step = coarse[1] - coarse[0]
    ll = _gpd_loglik(y, np.exp(coarse)[None, :], _SHAPES[:, None])
    row_max = ll.max(axis=1)
    rows = np.nonzero(row_max > row_max.max() - _ROW_CUT)[0]
    centre, spread = np.empty(rows.size), np.empty(rows.size)
    for r, i in enumerate(rows):
        j = int(np.argmax(ll[i]))
        centre[r], spread[r] = coarse[j], step
        if 0 < j < coarse.size - 1:
            a, b, c = ll[i, j - 1], ll[i, j], ll[i, j + 1]
            curv = a - 2.0 * b + c
            if np.isfinite(a) and np.isfinite(c) and curv < 0:
                centre[r] = coarse[j] + 0.5 * step * (a - c) / curv
                spread[r] = min(max(step / math.sqrt(-curv), 1e-4), 1.0)
    offsets = np.linspace(-6.0, 6.0, _ROW_POINTS)
    log_scale = centre[:, None] + spread[:, None] * offsets[None, :]
    shape = np.broadcast_to(_SHAPES[rows][:, None], log_scale.shape)
    ll = _gpd_loglik(y, np.exp(log_scale), shape)
    ends = np.where((rows == 0) | (rows == _SHAPES.size - 1), 0.5, 1.0)  # trapezoid rule in shape
    log_w = ll - np.nanmax(ll) + np.log(spread * ends)[:, None] - _MDI_A * shape  # the MDI prior
    w = np.exp(log_w)
    keep = w > 1e-12 * w.max()
    w = w[keep]
    return shape[keep], np.exp(log_scale[keep]), w / w.sum()


@dataclass(frozen=True)
class _Tail:
    """A GPD fitted to the k excesses over u, the (k+1)-th largest of n scores: the maximum
    likelihood fit for point estimates, the posterior grid for intervals."""

    u: float
    n: int
    k: int
    shape: float
    scale: float
    cell_shape: np.ndarray
    cell_scale: np.ndarray
    cell_weight: np.ndarray

    def threshold(self, rate: float) -> float:
        return self.u + float(self.scale * _excess_quantile(self.shape, rate * self.n / self.k))

    def rate(self, threshold: float) -> float:
        return self.k / self.n * math.exp(float(_log_survival(max(threshold - self.u, 0.0), self.scale, self.shape)))

    def cdf(self, excess: float, rate: float) -> float:
        """Posterior P(P(score > u + excess) <= rate), which is also the posterior
        P(the rate-quantile <= u + excess): the rate at a threshold is zeta times the
        GPD's survival there, and zeta, the share of scores above u, is Beta(k+1, n-k)."""
        if rate <= 0.0:
            return float(self.cell_weight[np.isneginf(_log_survival(excess, self.cell_scale, self.cell_shape))].sum())
        with np.errstate(divide="ignore", over="ignore"):
            zeta_max = np.exp(np.minimum(math.log(rate) - _log_survival(excess, self.cell_scale, self.cell_shape), 0.0))
        return float(self.cell_weight @ special.betainc(self.k + 1, self.n - self.k, zeta_max))


def _fit_tail(x: np.ndarray) -> _Tail | str:
    """Fit the upper tail of sorted scores x, or say in one line why it cannot be."""
    n = x.size
    u = float(x[n - _tail_size(n) - 1])
    y = x[x > u] - u  # fewer than k where scores tie at u
    k = y.size
    distinct = np.unique(y).size
    if distinct < MIN_DISTINCT_EXCESSES:
        return (f"only {distinct} distinct calibration scores above {u:.6g} among the top {_tail_size(n) + 1}: "
                f"too tied for a tail fit (needs {MIN_DISTINCT_EXCESSES})")
    lo, hi = SHAPE_BOUNDS
    try:
        shape, _, scale = stats.genpareto.fit(y, floc=0)
    except Exception as exc:  # noqa: BLE001 - reported in the note, the caller falls back
        shape, scale = math.nan, math.nan
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    else:
        why = "no finite likelihood"
    if not (lo <= shape <= hi and scale > 0 and np.isfinite(_gpd_loglik(y, scale, shape))):
        # the maximum with the shape held at the nearer bound: a 1-D search over the
        # scale, kept above the largest excess times -shape where the support needs it
        shape = float(np.clip(shape, lo, hi)) if np.isfinite(shape) else 0.0
        top = float(y.max())
        floor = -shape * top * (1 + 1e-9) if shape < 0 else top * 1e-6
        res = optimize.minimize_scalar(lambda s: -float(_gpd_loglik(y, math.exp(s), shape)),
                                       bounds=(math.log(floor), math.log(top * 1e3)), method="bounded",
                                       options={"xatol": 1e-10})
        scale = math.exp(res.x)
        if not np.isfinite(_gpd_loglik(y, scale, shape)):
            return f"the generalized Pareto fit to the top {k} scores failed: {why}"
    cells = _posterior_cells(y)
    return _Tail(u, n, k, float(shape), float(scale), *cells)


def _solve(h, s0: float, reach: float = 60.0) -> float | None:
    """The root of an increasing function h of s, searched from s0 with doubling steps;
    None when h keeps its sign within ``reach``."""
    h0 = h(s0)
    if h0 == 0:
        return s0
    direction = -1.0 if h0 > 0 else 1.0
    step, a = 0.25, s0
    while True:
        b = s0 + direction * min(step, reach)
        if (h(b) > 0) != (h0 > 0):
            return optimize.brentq(h, min(a, b), max(a, b), xtol=1e-12, rtol=1e-12)
        if step >= reach:
            return None
        a, step = b, step * 2


def _note_tail(tail: _Tail) -> str:
    return (f"generalized Pareto fit to the {tail.k} of {tail.n} calibration scores above {tail.u:.6g} "
            f"(shape {tail.shape:.3g}, scale {tail.scale:.3g})")


# --- public -------------------------------------------------------------------------------


def threshold_for_rate(scores, rate: float, *, confidence: float = 0.90) -> Estimate:
    """The threshold t with P(good score > t) = ``rate``, from calibration scores of good
    images, with its ``confidence`` interval (see the module docstring for the method).

    Raises InputError for a rate outside (0, 1) and UndefinedThreshold for no scores or
    non-finite ones.
    """
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise InputError(f"false-alarm rate {rate!r} is not a number") from None
    if not 0.0 < r < 1.0:
        raise InputError(f"false-alarm rate {rate!r} is outside (0, 1) (e.g. 0.01, not 1)")
    conf = _confidence(confidence)
    x = checked_scores(scores)
    n = x.size

    if n * r >= EMPIRICAL_EXCEEDANCES - 1e-9:
        p = 1.0 - r
        alpha = 1.0 - conf
        lo_rank = int(stats.binom.ppf(alpha / 2, n, p))  # P(Binom < lo_rank) < alpha / 2
        hi_rank = int(stats.binom.ppf(1 - alpha / 2, n, p)) + 1  # P(Binom >= hi_rank) <= alpha / 2
        low = float(x[lo_rank - 1]) if lo_rank >= 1 else math.nan
        high = float(x[hi_rank - 1]) if hi_rank <= n else math.nan
        return Estimate(float(np.quantile(x, p)), low, high, "empirical", n)

    need = _scores_needed(r)
    if n < MIN_TAIL_SCORES:
        return _max(x, f"only {n} calibration scores, too few for a tail fit (needs {MIN_TAIL_SCORES}); "
                       f"{need} would give the empirical {1 - r:g}-quantile")
    tail = _fit_tail(x)
    if isinstance(tail, str):
        return _max(x, tail)

    value = tail.threshold(r)
    alpha = 1.0 - conf
    s0 = math.log(value - tail.u)
    lo = _solve(lambda s: tail.cdf(math.exp(s), r) - alpha / 2, s0)
    hi = _solve(lambda s: tail.cdf(math.exp(s), r) - (1 - alpha / 2), s0)
    low = tail.u + math.exp(lo) if lo is not None else math.nan
    high = tail.u + math.exp(hi) if hi is not None else math.nan
    return Estimate(value, low, high, "tail", n, tail_n=tail.k, note=_note_tail(tail))


def rate_above(scores, threshold: float, *, confidence: float = 0.90) -> Estimate:
    """The estimated P(good score > ``threshold``) with its ``confidence`` interval.

    Counted (Clopper-Pearson) where at least ten calibration scores exceed the threshold
    or there are too few scores for a tail fit, else from the tail fit that
    ``threshold_for_rate`` uses, so the two agree.
    """
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise InputError(f"threshold {threshold!r} is not a number") from None
    if not math.isfinite(t):
        raise InputError(f"threshold {threshold!r} is not a finite number")
    conf = _confidence(confidence)
    x = checked_scores(scores)
    n = x.size
    count = int(n - np.searchsorted(x, t, side="right"))

    note = None
    if count < EMPIRICAL_EXCEEDANCES:
        if n < MIN_TAIL_SCORES:
            note = f"only {n} calibration scores, too few for a tail fit (needs {MIN_TAIL_SCORES}); counted"
        else:
            tail = _fit_tail(x)
            if isinstance(tail, str):
                note = tail + "; counted"
            elif t > tail.u:
                return _tail_rate(tail, t, conf)
    low, high = clopper_pearson(count, n, conf)
    return Estimate(count / n, low, high, "empirical", n, note=note)


# --- helpers ---------------------------------------------------------------------------------


def _max(x: np.ndarray, note: str) -> Estimate:
    return Estimate(float(x[-1]), math.nan, math.nan, "max", int(x.size), note=note)


def clopper_pearson(count: int, n: int, confidence: float) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a binomial proportion count / n."""
    alpha = 1.0 - confidence
    low = float(stats.beta.ppf(alpha / 2, count, n - count + 1)) if count > 0 else 0.0
    high = float(stats.beta.ppf(1 - alpha / 2, count + 1, n - count)) if count < n else 1.0
    return low, high


def _tail_rate(tail: _Tail, t: float, confidence: float) -> Estimate:
    excess = t - tail.u
    value = tail.rate(t)
    alpha = 1.0 - confidence
    s0 = math.log(value) if value > 0 else math.log(tail.k / tail.n) - 30.0
    if tail.cdf(excess, 0.0) >= alpha / 2:
        low = 0.0  # the tail may well end below the threshold: no false alarm at all is credible
    else:
        lo = _solve(lambda s: tail.cdf(excess, math.exp(s)) - alpha / 2, s0, reach=700.0)
        low = math.exp(lo) if lo is not None else 0.0
    hi = _solve(lambda s: tail.cdf(excess, math.exp(s)) - (1 - alpha / 2), s0, reach=700.0)
    high = min(math.exp(hi), 1.0) if hi is not None else math.nan
    return Estimate(value, low, high, "tail", tail.n, tail_n=tail.k, note=_note_tail(tail))
