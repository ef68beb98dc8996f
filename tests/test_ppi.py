"""Prediction-powered win-rates: coverage and width by simulation, agreement with ppi_py, guards, votes needed."""

from statistics import NormalDist

import numpy as np
import ppi_py
import pytest

from rewards.ppi import GOAL_HALF_WIDTH, agreement, human_win_rate, ppi_win_rate, votes_needed
from rewards.winrate import win_rate_counts

Z = NormalDist().inv_cdf(0.975)
TIE = 0.15  # share of votes that are ties
TRUE_RATE = 0.6  # E[Y] of the simulated comparison
MEAN_P = (TRUE_RATE - TIE / 2) / (1 - TIE)  # mean P(new preferred | not a tie) that gives TRUE_RATE
REPLICATIONS = 3000  # Monte-Carlo s.e. of a 95% coverage: sqrt(.95·.05/3000) = 0.4 points, well inside ±2
N_VOTED, N_SCORED = 200, 2000


def simulate(rng: np.random.Generator, shape: tuple[int, ...], rm: str) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes Y and the RM's predictions, each of ``shape`` (runs, pairs), for one of three reward models."""
    p = rng.beta(0.5 * MEAN_P, 0.5 * (1 - MEAN_P), shape)  # U-shaped: most pairs have a clear favourite
    y = np.where(rng.random(shape) < TIE, 0.5, (rng.random(shape) < p).astype(float))
    if rm == "good":  # close to each pair's true probability
        yhat = np.clip(p + rng.normal(0, 0.05, shape), 0, 1)
    elif rm == "poor":  # noise
        yhat = rng.random(shape)
    else:  # adversarial: anti-correlated and biased towards "new"
        yhat = np.clip(1.2 - p, 0, 1)
    return y, yhat


@pytest.fixture(scope="module", params=["good", "poor", "adversarial"])
def replications(request) -> tuple[str, list]:
    """``REPLICATIONS`` prediction-powered win-rates of n = 200 voted and N = 2000 scored pairs, drawn in blocks."""
    rng = np.random.default_rng(20231104)
    results = []
    for _ in range(REPLICATIONS // 500):
        y, yhat = simulate(rng, (500, N_VOTED + N_SCORED), request.param)
        results += [ppi_win_rate(y[i, :N_VOTED], yhat[i, :N_VOTED], yhat[i, N_VOTED:]) for i in range(500)]
    return request.param, results


# --- coverage and width -----------------------------------------------------------------------------------------


def test_the_95_percent_interval_covers_the_true_rate_95_percent_of_the_time(replications):
    rm, results = replications
    coverage = np.mean([r.low <= TRUE_RATE <= r.high for r in results])
    assert abs(coverage - 0.95) <= 0.02, f"{rm} RM: coverage {coverage:.3f}"


def test_the_interval_is_never_materially_wider_than_human_only(replications):
    rm, results = replications
    ratio = np.median([(r.high - r.low) / (r.human.high - r.human.low) for r in results])
    effective = np.median([r.effective_votes for r in results])
    if rm == "good":
        assert ratio < 0.8 and effective > 1.5 * N_VOTED and np.median([r.lam for r in results]) > 0.5
    else:  # λ falls to about 0: the classical interval, a hair wider than Wilson's, which shrinks towards ½
        assert ratio <= 1.02 and effective == pytest.approx(N_VOTED, rel=0.02)


def test_it_matches_ppi_py_with_its_own_power_tuning():
    y, yhat = simulate(np.random.default_rng(1), (N_VOTED + N_SCORED,), "good")
    r = ppi_win_rate(y[:N_VOTED], yhat[:N_VOTED], yhat[N_VOTED:], confidence=0.9)
    low, high = ppi_py.ppi_mean_ci(y[:N_VOTED], yhat[:N_VOTED], yhat[N_VOTED:], alpha=0.1)
    assert (r.low, r.high) == pytest.approx((low[0], high[0]), rel=1e-12)
    assert r.rate == pytest.approx(ppi_py.ppi_mean_pointestimate(y[:N_VOTED], yhat[:N_VOTED], yhat[N_VOTED:])[0])
    assert r.half_width == pytest.approx((r.high - r.low) / 2, rel=1e-12)
    classical = NormalDist().inv_cdf(0.95) * np.std(y[:N_VOTED]) / np.sqrt(N_VOTED)  # same votes, no predictions
    assert r.effective_votes == pytest.approx(N_VOTED * (classical / r.half_width) ** 2)


def test_without_unvoted_pairs_it_is_the_classical_interval():
    y = np.array([1, 1, 0.5, 0, 1, 0, 1, 1, 0.5, 1])
    r = ppi_win_rate(y, np.full(10, 0.7), [])
    half = Z * np.std(y) / np.sqrt(10)
    assert (r.lam, r.n, r.n_unlabelled, r.effective_votes) == (0.0, 10, 0, 10.0)
    assert (r.rate, r.low, r.high) == pytest.approx((0.7, 0.7 - half, 0.7 + half))
    assert r.more_votes() == votes_needed(np.var(y), 0.0, 0.0, 10, 0) == int(np.ceil(np.var(y) * (Z / 0.05) ** 2)) - 10


def test_identical_outcomes_fall_back_to_the_wilson_interval_instead_of_a_point():
    r = ppi_win_rate([1.0] * 6, [0.9, 0.8, 0.95, 0.7, 0.9, 0.6], np.linspace(0, 1, 50))
    wilson = win_rate_counts(6, 0, 0)
    assert (r.rate, r.low, r.high, r.lam, r.effective_votes) == (1.0, wilson.low, wilson.high, 0.0, 6.0)
    assert r.half_width == pytest.approx((wilson.high - wilson.low) / 2) and r.more_votes() > 0


def test_weights_are_relative():
    y, yhat = simulate(np.random.default_rng(2), (300,), "good")
    plain = ppi_win_rate(y[:50], yhat[:50], yhat[50:])
    assert ppi_win_rate(y[:50], yhat[:50], yhat[50:], weights=np.full(50, 3.0)) == plain
    w = np.r_[np.full(25, 2.0), np.ones(25)]
    weighted = ppi_win_rate(y[:50], yhat[:50], yhat[50:], weights=w)
    low, high = ppi_py.ppi_mean_ci(y[:50], yhat[:50], yhat[50:], alpha=0.05, w=w)
    assert (weighted.low, weighted.high) == pytest.approx((low[0], high[0]), rel=1e-12)
    assert weighted.human.n == pytest.approx(50)
    assert weighted.human.rate == pytest.approx(np.average(y[:50], weights=w))


# --- the human-only side, agreement ------------------------------------------------------------------------------


def test_human_win_rate_counts_single_votes_and_splits_vote_means():
    assert human_win_rate([1, 1, 0.5, 0, 1]) == win_rate_counts(3, 1, 1)
    means = human_win_rate([2 / 3, 0.25, 1.0, 0.5])  # 2/3 = 1/3 win + 2/3 tie; 0.25 = 1/2 tie + 1/2 loss
    assert (means.wins, means.ties, means.losses) == pytest.approx((4 / 3, 2 / 3 + 0.5 + 1, 0.5))
    assert means.rate == pytest.approx(np.mean([2 / 3, 0.25, 1.0, 0.5]))


def test_agreement_is_over_non_tie_votes_and_a_prediction_of_a_half_picks_no_side():
    assert agreement([1, 0, 0.5, 1, 0.75], [0.8, 0.6, 0.1, 0.5, 0.9]) == pytest.approx(2 / 4)
    assert agreement([0.5, 0.5], [0.9, 0.1]) is None
    assert ppi_win_rate([1, 0, 0.5], [0.8, 0.2, 0.9], [0.4, 0.7]).agreement == 1.0


# --- input errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("y", "yhat", "unlabelled", "weights", "message"), [
    ([1, 0, 1], [0.5, 0.5], [0.5], None, r"y and yhat differ in length \(3 vs 2\)"),
    ([1, 0, 1.5], [0.5] * 3, [0.5], None, r"y has 1 value\(s\) outside \[0, 1\], e.g. 1.5"),
    ([1, 0, 1], [0.5, -0.1, 0.5], [0.5], None, r"yhat has 1 value\(s\) outside \[0, 1\]"),
    ([1, 0, 1], [0.5] * 3, [0.5, float("nan")], None, r"yhat_unlabelled has 1 NaN"),
    ([float("nan"), 0, 1], [0.5] * 3, [0.5], None, r"y has 1 NaN"),
    ([1], [0.5], [0.5], None, r"at least 2 voted pairs, got 1"),
    ([1, 0, 1], [0.5] * 3, [0.5], [1, 1], r"weights has shape \(2,\), expected \(3,\)"),
    ([1, 0, 1], [0.5] * 3, [0.5], [1, -1, 1], r"weights must be finite, non-negative"),
    ([[1, 0]], [[0.5, 0.5]], [0.5], None, r"y must be one-dimensional"),
])
def test_bad_input_raises_a_value_error_naming_the_problem(y, yhat, unlabelled, weights, message):
    with pytest.raises(ValueError, match=message):
        ppi_win_rate(y, yhat, unlabelled, weights=weights)


def test_bad_confidence_or_goal_is_refused():
    with pytest.raises(ValueError, match="confidence"):
        ppi_win_rate([1, 0], [0.5, 0.5], [0.5], confidence=95)
    with pytest.raises(ValueError, match="goal"):
        votes_needed(0.2, 0.1, 0.5, 100, 1000, goal=0)


# --- votes still needed ------------------------------------------------------------------------------------------


def test_votes_needed_solves_the_variance_for_n_and_says_none_when_the_predictions_alone_are_too_noisy():
    budget = (0.05 / Z) ** 2 - 0.5**2 * 0.1 / 1000  # V_r/n' must fit in what the N-term leaves
    assert votes_needed(0.2, 0.1, 0.5, 100, 1000) == int(np.ceil(0.2 / budget)) - 100
    assert votes_needed(0.2, 0.1, 0.5, 10_000, 1000) == 0  # already there
    assert votes_needed(0.2, 0.1, 1.0, 100, 10) is None  # λ²·V_p/N = 0.01 > (0.05/1.96)² = 0.00065


def test_more_votes_predicts_the_votes_a_simulated_comparison_needed():
    """At 60 votes, predict the extra votes to ±5 points; then keep voting (pairs leave the scored pool) and count."""
    n0, runs, step = 60, 200, 2
    y, yhat = simulate(np.random.default_rng(7), (runs, n0 + N_SCORED), "good")
    predicted, actual = [], []
    for i in range(runs):
        r = ppi_win_rate(y[i, :n0], yhat[i, :n0], yhat[i, n0:])
        predicted.append(r.more_votes())
        n = n0
        while r.half_width > GOAL_HALF_WIDTH:
            n += step
            r = ppi_win_rate(y[i, :n], yhat[i, :n], yhat[i, n:])
        actual.append(n - n0)
    assert None not in predicted
    assert np.median(actual) == pytest.approx(np.median(predicted), rel=0.15)
