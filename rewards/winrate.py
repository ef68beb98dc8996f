"""Win-rates with confidence intervals.

A comparison's outcome is 1 (win), 0.5 (tie) or 0 (loss) and the win-rate (score) is their mean. The interval is
analytic, so a scheduler or a dashboard can compute thousands of them per refresh: a Wilson score interval whose
sample size is the *effective* one, ``n_eff = n * s(1-s) / var_hat``. Ties pull outcomes towards 0.5, so the sample
variance ``var_hat`` is below the Bernoulli ``s(1-s)`` of the same mean and the interval narrows accordingly; without
ties ``n_eff == n`` and this is the textbook Wilson interval, which also stays non-degenerate for all-win samples.

Counts may be weighted (floats): the outcomes a ranking of k implies weigh 2/k each (``rewards.ranking``), so ``n``
is the evidence in comparisons' worth, and the same formulas apply to the weighted mean and variance.

Example:
    >>> wr = win_rate_counts(wins=7, ties=2, losses=1)
    >>> wr.rate, round(wr.low, 3), round(wr.high, 3)
    (0.8, 0.544, 0.931)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class WinRate:
    """Mean outcome with its interval over ``n`` comparisons (wins + ties + losses; weighted counts are floats)."""

    rate: float
    low: float
    high: float
    n: float
    wins: float
    ties: float
    losses: float

    def as_dict(self) -> dict:
        return asdict(self)


_VAR_EPS = 1e-12  # a non-constant sample's var_hat is at least about 1/(8n), far above rounding noise


@lru_cache(maxsize=32)
def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(stats.norm.ppf(0.5 + confidence / 2))


def _wilson(s, n_eff, z: float):
    """Wilson bounds for score ``s`` at sample size ``n_eff``; plain arithmetic, so floats and arrays both work."""
    z2n = z * z / n_eff
    centre = (s + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * (s * (1 - s) / n_eff + z2n / (4 * n_eff)) ** 0.5
    return centre - half, centre + half


def score_intervals(wins, ties, losses, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised ``(rate, low, high)`` for arrays of counts of equal shape; entries with n == 0 give NaN."""
    w, t, loss = (np.asarray(x, dtype=float) for x in (wins, ties, losses))
    n = w + t + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (w + t / 2) / n
        var_hat = (w + t / 4) / n - s * s  # population variance of outcomes in {0, 0.5, 1}
        bernoulli = s * (1 - s)
        n_eff = np.where((var_hat > _VAR_EPS) & (bernoulli > 0), n * bernoulli / var_hat, n)
        low, high = _wilson(s, n_eff, _z(confidence))
    return s, np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)


def win_rate_counts(wins: float, ties: float, losses: float, confidence: float = 0.95) -> WinRate:
    """Win-rate ``(wins + ties/2) / n`` with a tie-aware Wilson interval (see the module docstring)."""
    if min(wins, ties, losses) < 0:
        raise ValueError(f"counts must be non-negative, got wins={wins} ties={ties} losses={losses}")
    n = wins + ties + losses
    if n == 0:
        raise ValueError("win_rate_counts needs at least one comparison (wins + ties + losses == 0)")
    s = (wins + ties / 2) / n
    var_hat = (wins + ties / 4) / n - s * s
    bernoulli = s * (1 - s)
    # an all-win or all-tie sample has var_hat == 0: plain Wilson keeps its interval from collapsing to a point
    n_eff = n * bernoulli / var_hat if var_hat > _VAR_EPS and bernoulli > 0 else n
    low, high = _wilson(s, n_eff, _z(confidence))
    return WinRate(s, max(0.0, low), min(1.0, high), n, wins, ties, losses)


def half_width(wins: float, ties: float, losses: float, confidence: float = 0.95) -> float:
    """Half the interval's width: how uncertain a matchup still is (a scheduler samples the widest first)."""
    wr = win_rate_counts(wins, ties, losses, confidence)
    return (wr.high - wr.low) / 2


def outcomes_from_scores(new: Sequence[float], old: Sequence[float], tie_tol: float = 1e-6) -> np.ndarray:
    """Per-comparison outcome of ``new`` vs ``old`` scores: shape (n,), values in {0, 0.5, 1}."""
    diff = np.asarray(new, dtype=float) - np.asarray(old, dtype=float)
    return np.where(diff > tie_tol, 1.0, np.where(diff < -tie_tol, 0.0, 0.5))


def win_rate(outcomes: Sequence[float], confidence: float = 0.95, seed: int = 0) -> WinRate:
    """Win-rate of outcomes in {0, 0.5, 1}; ``seed`` is still accepted for callers but unused (analytic interval)."""
    x = np.asarray(outcomes, dtype=float)
    if x.size == 0:
        raise ValueError("win_rate needs at least one comparison")
    if not np.isin(x, (0.0, 0.5, 1.0)).all():
        raise ValueError("win_rate outcomes must be 0, 0.5 or 1")
    return win_rate_counts(int((x == 1).sum()), int((x == 0.5).sum()), int((x == 0).sum()), confidence)
