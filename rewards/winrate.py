"""Win-rates with 95% confidence intervals.

A comparison's outcome is 1 (win), 0.5 (tie) or 0 (loss); the win-rate is their mean and the interval a
percentile bootstrap over comparisons (scipy), which stays valid with ties, unlike a plain binomial interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class WinRate:
    """Mean outcome with a 95% interval over ``n`` comparisons."""

    rate: float
    low: float
    high: float
    n: int
    wins: int
    ties: int
    losses: int

    def as_dict(self) -> dict:
        return asdict(self)


def outcomes_from_scores(new: Sequence[float], old: Sequence[float], tie_tol: float = 1e-6) -> np.ndarray:
    """Per-comparison outcome of ``new`` vs ``old`` scores: shape (n,), values in {0, 0.5, 1}."""
    diff = np.asarray(new, dtype=float) - np.asarray(old, dtype=float)
    return np.where(diff > tie_tol, 1.0, np.where(diff < -tie_tol, 0.0, 0.5))


def win_rate(outcomes: Sequence[float], confidence: float = 0.95, seed: int = 0) -> WinRate:
    """Win-rate of outcomes in {0, 0.5, 1} with a bootstrap interval (degenerate samples get a zero-width one)."""
    x = np.asarray(outcomes, dtype=float)
    if x.size == 0:
        raise ValueError("win_rate needs at least one comparison")
    counts = dict(wins=int((x == 1).sum()), ties=int((x == 0.5).sum()), losses=int((x == 0).sum()))
    rate = float(x.mean())
    if x.size < 2 or np.all(x == x[0]):
        return WinRate(rate, rate, rate, int(x.size), **counts)
    res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=2000, method="percentile",
                          rng=np.random.default_rng(seed))
    return WinRate(rate, float(res.confidence_interval.low), float(res.confidence_interval.high), int(x.size),
                   **counts)
