"""The stopping rule: verdict texts, and the human-only votes-needed prediction against a simulation."""

import numpy as np
import pytest

from rewards.stopping import GOAL_HALF_WIDTH, Verdict, more_votes_human, verdict
from rewards.winrate import score_intervals, win_rate_counts

# --- verdict -----------------------------------------------------------------------------------------------------


def test_a_lower_bound_above_half_decides_a_win():
    assert verdict(0.62, 0.57, 0.67, 120, "v3", "v2", "parent") == Verdict(
        True, "new", None, "decided: v3 beats its parent v2 (95% lower bound 57% > 50%)")


def test_an_upper_bound_below_half_decides_a_loss():
    assert verdict(0.39, 0.34, 0.44, None, "v3", "v0", "base") == Verdict(
        True, "old", None, "decided: v3 loses to its base v0 (95% upper bound 44% < 50%)")


def test_an_undecided_comparison_says_how_many_more_votes():
    assert verdict(0.53, 0.45, 0.61, 240, "v3", "v2", "parent") == Verdict(
        False, None, 240, "≈ 240 more votes to ±5 points")


def test_at_the_goal_but_straddling_half_it_is_too_close_to_call():
    assert verdict(0.51, 0.46, 0.56, 0, "v3", "v2", "parent") == Verdict(
        False, None, 0, "within ±5 points: 51% (undecided, too close to call)")


def test_an_unreachable_goal_says_so():
    v = verdict(0.52, 0.40, 0.64, None, "v3", "v2", "parent", goal=0.03)
    assert (v.decided, v.winner, v.more_votes) == (False, None, None)
    assert v.text.startswith("undecided at 52%: ±3 points out of reach with these predictions")


def test_a_bound_that_rounds_to_50_percent_keeps_its_decimals():
    assert verdict(0.55, 0.5004, 0.6, None, "v3", "v2", "parent", confidence=0.9).text.endswith(
        "(90% lower bound 50.04% > 50%)")


def test_verdict_refuses_an_unknown_kind_or_negative_votes():
    with pytest.raises(ValueError, match="kind must be one of"):
        verdict(0.5, 0.4, 0.6, 10, "v3", "v2", "grandparent")
    with pytest.raises(ValueError, match="more_votes must be non-negative"):
        verdict(0.5, 0.4, 0.6, -1, "v3", "v2", "base")


# --- human-only votes still needed --------------------------------------------------------------------------------


def test_more_votes_human_solves_the_wilson_half_width():
    wr = win_rate_counts(30, 8, 22)
    more = more_votes_human(wr)
    grown = [win_rate_counts(*(c * (60 + extra) / 60 for c in (30, 8, 22))) for extra in (more - 1, more)]
    assert [(g.high - g.low) / 2 <= GOAL_HALF_WIDTH for g in grown] == [False, True]
    assert more_votes_human(win_rate_counts(300, 80, 220)) == 0
    assert more_votes_human(win_rate_counts(5, 0, 0)) == 30  # all wins: plain Wilson, 35 votes to ±5 points


def test_more_votes_human_predicts_the_votes_a_simulated_comparison_needed():
    """At 60 votes (ties 15%, true rate 0.6) predict the extra votes to ±5 points; then keep voting and count."""
    n0, runs, horizon = 60, 200, 1500
    votes = np.random.default_rng(11).choice([1.0, 0.5, 0.0], p=[0.525, 0.15, 0.325], size=(runs, horizon))
    counts = [np.cumsum(votes == outcome, axis=1) for outcome in (1.0, 0.5, 0.0)]  # (runs, horizon) each
    _, low, high = score_intervals(*counts)
    reached = (high - low) / 2 <= GOAL_HALF_WIDTH
    reached[:, :n0] = False
    assert reached.any(axis=1).all()
    actual = reached.argmax(axis=1) + 1 - n0
    predicted = [more_votes_human(win_rate_counts(*(c[i, n0 - 1] for c in counts))) for i in range(runs)]
    assert np.median(actual) == pytest.approx(np.median(predicted), rel=0.15)
