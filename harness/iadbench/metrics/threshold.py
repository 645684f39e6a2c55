"""The decision threshold, fixed on held-out good training images (never the test set).

Rules, written as a string in a run plan:

- ``quantile:Q``  the Q-quantile of the held-out scores, 0 <= Q <= 1 (default 0.99)
- ``sigma:K``     mean + K * standard deviation (sample std, ddof=1)
- ``max``         the highest held-out score

An image is then predicted defective when its score is strictly above the threshold,
so under ``max`` no held-out good image would have been flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from iadbench.errors import InputError, UndefinedMetric

DEFAULT_RULE = "quantile:0.99"
RULE_FORMS = "quantile:Q (0<=Q<=1), sigma:K or max"


class UndefinedThreshold(UndefinedMetric):
    """No threshold can be fitted (e.g. no held-out scores); the metrics that need
    one are then undefined for the same reason."""


@dataclass(frozen=True)
class ThresholdRule:
    kind: str  # "quantile", "sigma" or "max"
    param: float | None = None

    def __str__(self) -> str:
        return self.kind if self.param is None else f"{self.kind}:{self.param:g}"

    def describe(self) -> str:
        if self.kind == "quantile":
            return f"{self.param:g}-quantile of held-out good training image scores"
        if self.kind == "sigma":
            return f"mean + {self.param:g} std of held-out good training image scores"
        return "maximum of held-out good training image scores"


def parse_rule(rule: str | ThresholdRule) -> ThresholdRule:
    """Parse a rule string; a malformed one raises InputError naming it."""
    if isinstance(rule, ThresholdRule):
        return rule
    if not isinstance(rule, str):
        raise InputError(f"threshold rule {rule!r} is not a string; use {RULE_FORMS}")
    text = rule.strip().lower()
    kind, sep, arg = text.partition(":")
    kind, arg = kind.strip(), arg.strip()

    def bad(why: str) -> InputError:
        return InputError(f"bad threshold rule '{rule}': {why}; use {RULE_FORMS}")

    if kind == "max":
        if sep:
            raise bad("'max' takes no parameter")
        return ThresholdRule("max")
    if kind not in ("quantile", "sigma"):
        raise bad(f"unknown rule '{kind}'")
    if not arg:
        raise bad(f"'{kind}' needs a number after ':'")
    try:
        value = float(arg)
    except ValueError:
        raise bad(f"'{arg}' is not a number") from None
    if not math.isfinite(value):
        raise bad(f"'{arg}' is not a finite number")
    if kind == "quantile" and not 0.0 <= value <= 1.0:
        raise bad(f"quantile {value:g} is outside [0, 1] (e.g. 0.99, not 99)")
    return ThresholdRule(kind, value)


def describe_rule(rule: str | ThresholdRule) -> str:
    """One line saying how the threshold is chosen, for reports and leaderboards."""
    return parse_rule(rule).describe()


def fit_threshold(holdout_scores: np.ndarray, rule: str | ThresholdRule = DEFAULT_RULE) -> float:
    """The threshold the rule picks from held-out good images' scores.

    Raises InputError for a malformed rule, UndefinedThreshold when the scores
    cannot support one (none, non-finite, or a single score for ``sigma``).
    """
    parsed = parse_rule(rule)
    scores = np.asarray(holdout_scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise UndefinedThreshold("no held-out good images to fix a threshold on")
    n_bad = scores.size - int(np.isfinite(scores).sum())
    if n_bad:
        raise UndefinedThreshold(f"{n_bad} held-out scores are NaN or infinite")
    if parsed.kind == "max":
        return float(scores.max())
    if parsed.kind == "quantile":
        return float(np.quantile(scores, parsed.param))
    if scores.size < 2:
        raise UndefinedThreshold(f"rule '{parsed}' needs at least 2 held-out scores")
    return float(scores.mean() + parsed.param * scores.std(ddof=1))
