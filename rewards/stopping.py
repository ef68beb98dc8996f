"""The stopping rule: is a comparison decided, and if not, about how many more votes until it is ±5 points?

A comparison is *decided* when its interval excludes 50%: the new version wins when the lower bound is above it,
loses when the upper bound is below it. Otherwise the rule says how many more votes bring the half-width to the goal
(``PPIWinRate.more_votes`` for a prediction-powered interval, ``more_votes_human`` for a human-only one); once the
goal is reached and the interval still straddles 50%, the two versions are too close to call at that precision.

Example:
    >>> verdict(0.62, 0.57, 0.67, None, "v3", "v2", "parent").text
    'decided: v3 beats its parent v2 (95% lower bound 57% > 50%)'
    >>> verdict(0.53, 0.45, 0.61, 240, "v3", "base", "base").text
    '≈ 240 more votes to ±5 points'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rewards.ppi import GOAL_HALF_WIDTH
from rewards.winrate import _VAR_EPS, WinRate, _z

KINDS = ("parent", "base")


@dataclass(frozen=True)
class Verdict:
    """What a lead reads on a comparison's row: decided or not, who won, votes still needed, and one line of text."""

    decided: bool
    winner: str | None  # "new" or "old"; None while undecided
    more_votes: int | None  # None when decided, or when the goal is out of reach with these predictions
    text: str


def verdict(rate: float, low: float, high: float, more_votes: int | None, new_name: str, old_name: str, kind: str,
            *, goal: float = GOAL_HALF_WIDTH, confidence: float = 0.95) -> Verdict:
    """Verdict on ``new_name`` vs ``old_name`` (its ``kind``, "parent" or "base") from a win-rate and its interval;
    ``more_votes`` is the votes still needed for ±``goal`` (0 when reached, None when unreachable)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if more_votes is not None and more_votes < 0:
        raise ValueError(f"more_votes must be non-negative or None, got {more_votes}")
    bound = f"{confidence:.0%}"
    if low > 0.5:
        return Verdict(True, "new", None, f"decided: {new_name} beats its {kind} {old_name} "
                                          f"({bound} lower bound {_percent(low)} > 50%)")
    if high < 0.5:
        return Verdict(True, "old", None, f"decided: {new_name} loses to its {kind} {old_name} "
                                          f"({bound} upper bound {_percent(high)} < 50%)")
    points = f"±{goal * 100:g} points"
    if more_votes == 0:
        return Verdict(False, None, 0, f"within {points}: {_percent(rate)} (undecided, too close to call)")
    if more_votes is None:
        return Verdict(False, None, None, f"undecided at {_percent(rate)}: {points} out of reach with these "
                                          "predictions (human-only votes can still get there)")
    return Verdict(False, None, more_votes, f"≈ {more_votes} more votes to {points}")


def more_votes_human(wr: WinRate, goal: float = GOAL_HALF_WIDTH, confidence: float = 0.95) -> int:
    """More votes until ``wr``'s tie-aware Wilson half-width is ``goal`` or less, at today's rate and tie share.

    Solves the Wilson half-width ``z·sqrt(m·s(1−s) + z²/4) / (m + z²) = goal`` for the effective sample size m and
    divides by the current ratio m/n (above 1 with ties, see ``rewards.winrate``).
    """
    if not 0 < goal < 0.5:
        raise ValueError(f"goal must be a half-width in (0, 0.5), got {goal}")
    s = wr.rate
    bernoulli = s * (1 - s)
    var_hat = (wr.wins + wr.ties / 4) / wr.n - s * s
    per_vote = bernoulli / var_hat if var_hat > _VAR_EPS and bernoulli > 0 else 1.0  # n_eff / n, as the interval
    return max(0, math.ceil(_wilson_sample_size(bernoulli, goal, _z(confidence)) / per_vote - wr.n))


def _wilson_sample_size(bernoulli: float, goal: float, z: float) -> float:
    """The m at which the Wilson half-width equals ``goal``: the larger root of
    goal²·m² + z²(2·goal² − s(1−s))·m + z⁴(goal² − 1/4) = 0 (the constant term is negative, so it is the only
    positive one)."""
    a, b, c = goal**2, z**2 * (2 * goal**2 - bernoulli), z**4 * (goal**2 - 0.25)
    return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)


def _percent(x: float) -> str:
    """Whole percent, with up to two decimals where rounding would print a bound as exactly 50%."""
    for digits in (0, 1, 2):
        text = f"{x:.{digits}%}"
        if x == 0.5 or float(text[:-1]) != 50:
            break
    return text
