"""Tie-aware win-rate intervals, per-version win-rates from vote counts, and Bradley–Terry ratings."""

import math
import statistics
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from rewards.ratings import ALL_REGIONS, RATING_COLUMNS, WIN_RATE_COLUMNS, bradley_terry, version_win_rates
from rewards.winrate import half_width, score_intervals, win_rate, win_rate_counts

Z = NormalDist().inv_cdf(0.975)
ELO = 400 * math.log10(math.e)
W1, W2 = pd.Timestamp("2024-06-03"), pd.Timestamp("2024-06-10")
MAN, AUS = "en-GB-manchester", "en-US-austin"


def textbook_wilson(p: float, m: float) -> tuple[float, float]:
    """Wilson (1927) score interval for proportion ``p`` at sample size ``m``, written out as in the textbooks."""
    denom = 1 + Z**2 / m
    centre = p + Z**2 / (2 * m)
    spread = Z * math.sqrt(p * (1 - p) / m + Z**2 / (4 * m**2))
    return (centre - spread) / denom, (centre + spread) / denom


# --- win_rate_counts --------------------------------------------------------------------------------------------


def test_ties_shrink_the_wilson_interval_through_the_effective_sample_size():
    wr = win_rate_counts(wins=7, ties=2, losses=1)
    assert wr.rate == 0.8 and (wr.n, wr.wins, wr.ties, wr.losses) == (10, 7, 2, 1)
    outcomes = [1.0] * 7 + [0.5] * 2 + [0.0]
    s, var = statistics.fmean(outcomes), statistics.pvariance(outcomes)
    assert var == pytest.approx(0.11)  # (7 * 0.2^2 + 2 * 0.3^2 + 0.8^2) / 10
    low, high = textbook_wilson(s, 10 * s * (1 - s) / var)  # n_eff = 10 * 0.16 / 0.11 = 14.545...
    assert wr.low == pytest.approx(low, rel=1e-12) and wr.high == pytest.approx(high, rel=1e-12)
    assert (round(wr.low, 10), round(wr.high, 10)) == (0.5440454770, 0.9306004058)
    no_ties = win_rate_counts(8, 0, 2)
    assert no_ties.low < wr.low and wr.high < no_ties.high


def test_without_ties_it_is_the_textbook_wilson_interval():
    wr = win_rate_counts(8, 0, 2)
    low, high = textbook_wilson(0.8, 10)
    assert wr.rate == 0.8
    assert wr.low == pytest.approx(low, rel=1e-12) and wr.high == pytest.approx(high, rel=1e-12)
    assert (round(wr.low, 4), round(wr.high, 4)) == (0.4902, 0.9433)


def test_constant_samples_keep_a_plain_wilson_interval():
    all_wins = win_rate_counts(3, 0, 0)
    assert all_wins.rate == 1.0 and all_wins.high == 1.0
    assert all_wins.low == pytest.approx(3 / (3 + Z**2), rel=1e-12)  # Wilson's lower bound at p = 1
    all_losses = win_rate_counts(0, 0, 5)
    assert (all_losses.rate, all_losses.low) == (0.0, 0.0)
    assert all_losses.high == pytest.approx(Z**2 / (5 + Z**2), rel=1e-12)
    all_ties = win_rate_counts(0, 4, 0)
    assert all_ties.rate == 0.5
    assert (all_ties.low, all_ties.high) == pytest.approx(textbook_wilson(0.5, 4), rel=1e-12)


def test_bad_counts_raise():
    with pytest.raises(ValueError, match="at least one comparison"):
        win_rate_counts(0, 0, 0)
    with pytest.raises(ValueError, match="non-negative"):
        win_rate_counts(-1, 2, 3)
    with pytest.raises(ValueError, match="confidence"):
        win_rate_counts(1, 2, 3, confidence=1.5)


def test_half_width_and_vectorised_intervals_agree_with_the_scalar_one():
    wr = win_rate_counts(70, 20, 10)
    assert half_width(70, 20, 10) == (wr.high - wr.low) / 2
    assert half_width(700, 200, 100) < half_width(70, 20, 10) < half_width(7, 2, 1)
    rate, low, high = score_intervals([7, 8, 3, 0], [2, 0, 0, 0], [1, 2, 0, 0])
    for k, counts in enumerate([(7, 2, 1), (8, 0, 2), (3, 0, 0)]):
        expected = win_rate_counts(*counts)
        assert (rate[k], low[k], high[k]) == pytest.approx((expected.rate, expected.low, expected.high), rel=1e-12)
    assert np.isnan(rate[3]) and np.isnan(low[3]) and np.isnan(high[3])


def test_win_rate_of_outcomes_delegates_to_counts():
    assert win_rate([1, 0.5, 0, 1, 1, 0], seed=123) == win_rate_counts(3, 1, 2)
    with pytest.raises(ValueError, match="0, 0.5 or 1"):
        win_rate([1, 0.3])


@pytest.mark.parametrize("probs", [(0.45, 0.2, 0.35), (0.8, 0.1, 0.1), (0.85, 0.0, 0.15)])
def test_interval_covers_the_true_score_at_the_nominal_rate(probs):
    truth = probs[0] + probs[1] / 2
    samples = np.random.default_rng(2024).multinomial(150, probs, size=2000)
    hits = [(wr := win_rate_counts(*map(int, row))).low <= truth <= wr.high for row in samples]
    assert abs(np.mean(hits) - 0.95) <= 0.02


# --- version_win_rates ------------------------------------------------------------------------------------------

VERSIONS = pd.DataFrame({
    "id": [1, 2, 3, 4], "name": ["base", "r1", "r2", "r3"], "parent_id": pd.array([None, 1, 2, 3], "Int64"),
    "base_id": [1, 1, 1, 1], "round_number": pd.array([None, 1, 2, 3], "Int64"),
    "created_at": pd.to_datetime(["2024-05-01", "2024-05-20", "2024-06-05", "2024-06-20"]),
    "region": [None, None, AUS, None]})
COUNT_COLUMNS = ["region", "week", "model_a", "model_b", "a_wins", "b_wins", "ties", "both_bad"]
COUNTS = pd.DataFrame([
    (AUS, W1, 1, 2, 3, 5, 2, 1),  # r1 vs base: r1 is model_b
    (AUS, W2, 1, 2, 1, 2, 0, 0),
    (MAN, W2, 1, 2, 0, 0, 0, 4),  # only "both bad": no win-rate row in Manchester, but counted in All regions
    (MAN, W1, 1, 3, 2, 4, 0, 2),
    (MAN, W1, 3, 2, 6, 1, 1, 0),  # reversed orientation: a_wins are r2's
    (AUS, W2, 2, 3, 2, 1, 0, 3),
], columns=COUNT_COLUMNS)


def rows_of(frame: pd.DataFrame, keys: list[str]) -> list[tuple]:
    return [tuple(r) for r in frame[[*keys, "version_id", "opponent", "opponent_id", "wins", "ties", "losses",
                                     "both_bad"]].itertuples(index=False)]


def test_version_win_rates_against_base_and_parent_per_region():
    out = version_win_rates(COUNTS, VERSIONS)
    assert list(out.columns) == WIN_RATE_COLUMNS
    assert rows_of(out, ["region"]) == [
        (ALL_REGIONS, 2, "base", 1, 7, 2, 4, 5),
        (ALL_REGIONS, 2, "parent", 1, 7, 2, 4, 5),  # first round: the parent is the base
        (ALL_REGIONS, 3, "base", 1, 4, 0, 2, 2),
        (ALL_REGIONS, 3, "parent", 2, 7, 1, 3, 3),
        (MAN, 3, "base", 1, 4, 0, 2, 2),
        (MAN, 3, "parent", 2, 6, 1, 1, 0),
        (AUS, 2, "base", 1, 7, 2, 4, 1),
        (AUS, 2, "parent", 1, 7, 2, 4, 1),
        (AUS, 3, "parent", 2, 1, 0, 2, 3),
    ]
    assert out["n"].tolist() == [13, 13, 6, 11, 6, 8, 13, 13, 3]
    assert out["rate"].tolist() == [8 / 13, 8 / 13, 4 / 6, 7.5 / 11, 4 / 6, 6.5 / 8, 8 / 13, 8 / 13, 1 / 3]
    assert out["both_bad_share"].tolist() == [5 / 18, 5 / 18, 2 / 8, 3 / 14, 2 / 8, 0.0, 1 / 14, 1 / 14, 3 / 6]
    first = out.iloc[0]
    expected = win_rate_counts(7, 2, 4)
    assert (first["low"], first["high"]) == pytest.approx((expected.low, expected.high), rel=1e-12)
    assert out["version"].tolist()[:4] == ["r1", "r1", "r2", "r2"]
    assert out["opponent_version"].tolist()[:4] == ["base", "base", "base", "r1"]
    assert out["round_number"].tolist()[:4] == [1, 1, 2, 2]


def test_version_win_rates_by_week_splits_the_same_votes():
    out = version_win_rates(COUNTS, VERSIONS, by="week")
    assert list(out.columns) == ["region", "week", *WIN_RATE_COLUMNS[1:]]
    assert rows_of(out, ["region", "week"]) == [
        (ALL_REGIONS, W1, 2, "base", 1, 5, 2, 3, 1),
        (ALL_REGIONS, W1, 2, "parent", 1, 5, 2, 3, 1),
        (ALL_REGIONS, W1, 3, "base", 1, 4, 0, 2, 2),
        (ALL_REGIONS, W1, 3, "parent", 2, 6, 1, 1, 0),
        (ALL_REGIONS, W2, 2, "base", 1, 2, 0, 1, 4),
        (ALL_REGIONS, W2, 2, "parent", 1, 2, 0, 1, 4),
        (ALL_REGIONS, W2, 3, "parent", 2, 1, 0, 2, 3),
        (MAN, W1, 3, "base", 1, 4, 0, 2, 2),
        (MAN, W1, 3, "parent", 2, 6, 1, 1, 0),
        (AUS, W1, 2, "base", 1, 5, 2, 3, 1),
        (AUS, W1, 2, "parent", 1, 5, 2, 3, 1),
        (AUS, W2, 2, "base", 1, 2, 0, 1, 0),
        (AUS, W2, 2, "parent", 1, 2, 0, 1, 0),
        (AUS, W2, 3, "parent", 2, 1, 0, 2, 3),
    ]
    weekly = out.groupby(["region", "version_id", "opponent"])[["wins", "ties", "losses", "both_bad"]].sum()
    total = version_win_rates(COUNTS, VERSIONS).set_index(["region", "version_id", "opponent"])
    assert weekly.loc[total.index, ["wins", "ties", "losses"]].equals(total[["wins", "ties", "losses"]])


def test_version_win_rates_edge_cases():
    with pytest.raises(ValueError, match="by must be"):
        version_win_rates(COUNTS, VERSIONS, by="month")
    empty = version_win_rates(COUNTS.iloc[:0], VERSIONS)
    assert empty.empty and list(empty.columns) == WIN_RATE_COLUMNS
    pd.testing.assert_frame_equal(version_win_rates(COUNTS.iloc[::-1], VERSIONS), version_win_rates(COUNTS, VERSIONS))


# --- bradley_terry ----------------------------------------------------------------------------------------------


def counts_frame(rows: list[tuple]) -> pd.DataFrame:
    """``(region, model_a, model_b, a_wins, b_wins, ties, both_bad)`` rows in week W1."""
    return pd.DataFrame([(r[0], W1, *r[1:]) for r in rows], columns=COUNT_COLUMNS)


def test_bradley_terry_three_to_one_is_log10_3_times_400_points():
    counts = counts_frame([(AUS, 1, 2, 10, 30, 0, 7)])
    out = bradley_terry(counts, VERSIONS, n_boot=100)
    assert list(out.columns) == RATING_COLUMNS
    assert out["region"].tolist() == [ALL_REGIONS, ALL_REGIONS, AUS, AUS]
    for region in (ALL_REGIONS, AUS):
        new, base = out[out.region == region].itertuples(index=False)
        assert (new.version, new.rank, base.version, base.rank) == ("r1", 1, "base", 2)
        assert base.rating == 1000.0 and base.low == 1000.0 and base.high == 1000.0
        assert new.rating - 1000 == pytest.approx(400 * math.log10(3), abs=1.0)
        assert new.low < new.rating < new.high
        assert (new.games, base.games) == (40, 40)  # both_bad left out
    swapped = counts_frame([(AUS, 2, 1, 30, 10, 0, 7)])
    pd.testing.assert_frame_equal(bradley_terry(swapped, VERSIONS, n_boot=100), out)


def test_bradley_terry_recovers_known_strengths_with_calibrated_intervals():
    theta = np.array([0.0, 0.4, 0.8])  # versions 1 (base), 2, 3 in natural units
    rng = np.random.default_rng(7)
    rows = []
    for sim in range(100):  # each simulated data set is its own region
        for a, b in [(0, 1), (0, 2), (1, 2)]:
            a_wins = int(rng.binomial(400, 1 / (1 + math.exp(theta[b] - theta[a]))))
            rows.append((f"sim{sim:03d}", a + 1, b + 1, a_wins, 400 - a_wins, 0, 5))
    out = bradley_terry(counts_frame(rows), VERSIONS, n_boot=200, seed=3)
    sims = out[out.region != ALL_REGIONS]
    assert len(sims) == 300 and (sims["games"] == 800).all()
    assert ((sims["low"] <= sims["rating"]) & (sims["rating"] <= sims["high"])).all()
    assert (sims.loc[sims.version_id == 1, ["rating", "low", "high"]] == 1000.0).all().all()
    truth = 1000 + ELO * theta[sims["version_id"] - 1]
    new = sims["version_id"] != 1
    covered = ((sims["low"] <= truth) & (truth <= sims["high"]))[new]
    assert abs(covered.mean() - 0.95) <= 0.07
    pooled = out[out.region == ALL_REGIONS].set_index("version_id")["rating"]
    assert pooled.loc[[2, 3]].to_numpy() == pytest.approx(1000 + ELO * theta[1:], abs=5)


def test_ties_count_half_a_win_for_each_side():
    tie_only = bradley_terry(counts_frame([(AUS, 1, 2, 0, 0, 20, 0)]), VERSIONS, n_boot=50)
    assert tie_only["rating"].to_numpy() == pytest.approx(1000.0, abs=1e-9)
    assert tie_only["rank"].tolist() == [1, 1, 1, 1]
    with_ties = bradley_terry(counts_frame([(AUS, 1, 2, 10, 0, 10, 0)]), VERSIONS, n_boot=0)
    as_wins = bradley_terry(counts_frame([(AUS, 1, 2, 15, 5, 0, 0)]), VERSIONS, n_boot=0)
    assert with_ties["rating"].to_numpy() == pytest.approx(as_wins["rating"].to_numpy(), abs=1e-6)
    assert with_ties["low"].isna().all() and (with_ties["games"] == 20).all()


def test_anchoring_separation_and_regions():
    counts = counts_frame([
        (AUS, 1, 2, 0, 10, 0, 0),  # r1 won every vote: the penalty keeps it finite
        (AUS, 3, 4, 6, 2, 0, 0),  # not connected to the base
        (MAN, 2, 3, 5, 5, 0, 0),  # no base in Manchester: the mean sits at 1000
    ])
    out = bradley_terry(counts, VERSIONS, n_boot=50)
    assert out["region"].drop_duplicates().tolist() == [ALL_REGIONS, MAN, AUS]
    assert np.isfinite(out[["rating", "low", "high"]].to_numpy()).all()
    aus = out[out.region == AUS].set_index("version_id")
    assert aus.loc[1, "rating"] == 1000.0 and aus.loc[2, "rating"] > 1500
    man = out[out.region == MAN]
    assert sorted(man["version_id"]) == [2, 3] and man["rating"].mean() == pytest.approx(1000.0, abs=1e-9)
    assert (out.groupby("region")["rank"].apply(lambda r: r.is_monotonic_increasing)).all()
    pd.testing.assert_frame_equal(bradley_terry(counts, VERSIONS, n_boot=50), out)
    assert bradley_terry(counts.iloc[:0], VERSIONS).empty


def test_ties_with_bootstrap_resamples_on():
    out = bradley_terry(counts_frame([(AUS, 1, 2, 0, 10, 10, 0)]), VERSIONS, n_boot=200)  # r1 (2) wins 10, ties 10
    new = out[(out.region == AUS) & (out.version == "r1")].iloc[0]
    assert np.isfinite([new.low, new.high]).all() and new.low < new.rating < new.high
    assert new.rating - 1000 == pytest.approx(400 * math.log10(3), abs=1.0)  # ten ties are five wins each side
    tie_only = bradley_terry(counts_frame([(AUS, 1, 2, 0, 0, 20, 0)]), VERSIONS, n_boot=200)
    assert (tie_only[["rating", "low", "high"]].to_numpy() == 1000.0).all()  # every resample is all ties too
