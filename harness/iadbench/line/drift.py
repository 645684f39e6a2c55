"""A drift signal on a stream of image scores, against the model's calibration.

The cutoff is the calibration's high quantile: with n calibration scores and
``quantile`` q, k = max(1, round(n (1 - q))) of them lie above the (k+1)-th largest,
the cutoff. A new score from the calibration's own distribution exceeds the (k+1)-th
largest of n exchangeable scores with probability (k+1)/(n+1) exactly (its rank among
the n+1 is uniform): that is the expected share. Over a sliding window of the last W
scores, the observed share above the cutoff is tested against it.

The test is the beta-binomial, the exact law of the count above the cutoff in W new
scores given that the cutoff came from n calibration scores: a plain binomial test
takes the expected share as known, but with a few hundred calibration scores the
cutoff's own sampling error is about as large as the window's, and the binomial test
then flags a stream that is exactly calibration-like several times as often as its
alpha says. The binomial p-value (scipy's ``binomtest``) is reported beside it.
Two-sided: scores drifting low (a dimmer lamp, a lens cap) is drift too. The window is
tested after every score, so ``alpha`` is small (0.001) and a flag needs a full
``min_count``.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

DEFAULT_WINDOW = 200
DEFAULT_QUANTILE = 0.95
DEFAULT_ALPHA = 0.001
DEFAULT_MIN_COUNT = 50


def _two_sided(pmf: np.ndarray, observed: int) -> float:
    """Two-sided p-value: the probability of counts no more likely than the observed
    one (the rule of scipy's binomtest), with a relative tolerance for ties."""
    p_obs = pmf[observed]
    return float(min(1.0, pmf[pmf <= p_obs * (1 + 1e-7)].sum()))


class DriftMonitor:
    """Feed scores with ``add``; ``state()`` is the signal (the /health ``drift``)."""

    def __init__(self, calibration_scores, window: int = DEFAULT_WINDOW, quantile: float = DEFAULT_QUANTILE,
                 alpha: float = DEFAULT_ALPHA, min_count: int = DEFAULT_MIN_COUNT):
        if not 0.5 <= quantile < 1:
            raise ValueError(f"drift quantile must be in [0.5, 1), got {quantile}")
        if window < 1:
            raise ValueError(f"drift window must be >= 1, got {window}")
        cal = np.asarray(calibration_scores, dtype=np.float64).ravel()
        cal = np.sort(cal[np.isfinite(cal)])[::-1]
        self.window, self.quantile, self.alpha = int(window), float(quantile), float(alpha)
        self.min_count = max(1, min(int(min_count), self.window))
        self.n = len(cal)
        self._above: deque[bool] = deque(maxlen=self.window)
        self._lock = threading.Lock()
        if self.n >= 2:
            self.k = int(min(self.n - 1, max(1, round(self.n * (1 - self.quantile)))))
            self.cutoff = float(cal[self.k])  # the (k+1)-th largest
            self.expected = (self.k + 1) / (self.n + 1)
        else:
            self.k, self.cutoff, self.expected = 0, float("nan"), float("nan")

    @property
    def available(self) -> bool:
        return self.n >= 2

    def add(self, score: float) -> None:
        if self.available and np.isfinite(score):
            with self._lock:
                self._above.append(bool(score > self.cutoff))

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return sum(self._above), len(self._above)

    def p_values(self, above: int, count: int) -> tuple[float, float]:
        """(beta-binomial, binomial) two-sided p-values of ``above`` of ``count``."""
        from scipy.stats import betabinom, binomtest

        support = np.arange(count + 1)
        # the exceedance probability given the calibration is Beta(k+1, n-k)
        pmf = betabinom.pmf(support, count, self.k + 1, self.n - self.k)
        return _two_sided(pmf, above), float(binomtest(above, count, self.expected).pvalue)

    def state(self) -> dict[str, Any]:
        if not self.available:
            return {"available": False, "reason": "the model has no calibration scores (fitted before they were kept)"}
        above, count = self.counts()
        out: dict[str, Any] = {
            "available": True, "window": self.window, "count": count, "above": above,
            "observed": above / count if count else None, "expected": self.expected, "cutoff": self.cutoff,
            "quantile": self.quantile, "calibration_scores": self.n, "alpha": self.alpha,
            "p_value": None, "p_binomial": None, "flagged": False,
        }
        if count:
            p, p_binom = self.p_values(above, count)
            out.update(p_value=p, p_binomial=p_binom, flagged=bool(count >= self.min_count and p < self.alpha))
        return out
