"""rewards.decisions without a database: the across-regions prediction-powered rate is a stratified one."""

import numpy as np
import pandas as pd

from rewards.decisions import comparison_ppi, prediction_powered_win_rates, stratified
from rewards.ratings import ALL_REGIONS

VERSIONS = pd.DataFrame({"id": [1, 2], "name": ["base", "v1"], "parent_id": pd.array([None, 1], "Int64"),
                         "base_id": [1, 1], "round_number": pd.array([None, 1], "Int64")})


def _region(rng, code: str, size: int, voted: int, p_new: float, rm_bias: float) -> pd.DataFrame:
    """``size`` pairs of v1 (model_a) vs base, ``voted`` of them with one vote (v1 wins with ``p_new``); the reward
    model's guess is each pair's truth blurred, shifted by ``rm_bias``."""
    truth = rng.random(size) < p_new
    guess = np.clip(np.where(truth, 0.7, 0.3) + rm_bias + rng.normal(0, 0.1, size), 0, 1)
    won = np.where(np.arange(size) < voted, truth.astype(float), 0.0)
    lost = np.where(np.arange(size) < voted, 1.0 - truth, 0.0)
    return pd.DataFrame({"region": code, "pair_id": np.arange(size), "model_a": 2, "model_b": 1,
                         "predicted_a": guess, "a": won, "b": lost, "tie": 0.0, "both_bad": 0.0})


def test_all_regions_weighs_each_region_by_its_pairs_not_by_its_votes():
    """Leeds votes on 80% of its pairs and v1 wins there; Perth, ten times larger, votes on 3% and v1 loses there,
    with a reward model biased differently in each. Pooling the pairs would let Leeds' votes speak for Perth's
    pairs; the stratified estimate covers the mean over all pairs at about 95%."""
    rng = np.random.default_rng(0)
    covered, pooled_errors, errors = 0, [], []
    for _ in range(300):
        leeds, perth = _region(rng, "leeds", 100, 80, 0.8, -0.2), _region(rng, "perth", 1000, 30, 0.4, 0.15)
        truth = (100 * 0.8 + 1000 * 0.4) / 1100
        row = stratified([comparison_ppi(leeds, 2), comparison_ppi(perth, 2)])
        covered += row["low"] <= truth <= row["high"]
        errors.append(row["rate"] - truth)
        pooled_errors.append(comparison_ppi(pd.concat([leeds, perth]), 2).rate - truth)
    assert abs(covered / 300 - 0.95) <= 0.04
    assert abs(np.mean(errors)) < 0.01 < abs(np.mean(pooled_errors))


def test_the_all_regions_row_waits_for_every_region_and_copies_a_single_one():
    rng = np.random.default_rng(1)
    leeds, perth = _region(rng, "leeds", 60, 30, 0.7, 0.0), _region(rng, "perth", 60, 5, 0.7, 0.0)
    both = prediction_powered_win_rates(pd.concat([leeds, perth]), VERSIONS)
    both = both[both["opponent"] == "parent"]  # a first round's parent is its base: the same row twice
    assert list(both["region"]) == ["leeds"]  # Perth has 5 voted pairs: no Perth row, so no across-regions row
    alone = prediction_powered_win_rates(leeds, VERSIONS)
    alone = alone[alone["opponent"] == "parent"].set_index("region")
    assert list(alone.index) == [ALL_REGIONS, "leeds"]
    assert alone.loc[ALL_REGIONS].drop("region", errors="ignore").equals(alone.loc["leeds"])
