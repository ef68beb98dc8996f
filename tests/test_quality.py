"""Reviewer quality on hand-built vote frames: Krippendorff's alpha, gold accuracy, position bias, speed, flags."""

import math
from itertools import count

import krippendorff
import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from rewards.quality import ALL_REGIONS, QUALITY_COLUMNS, agreement, position_bias, reviewer_quality

_ids = count(1)


def vote(pair_id: int, user: str, choice: str, shown_left: str = "a", seconds: float | None = 10.0,
         region: str = "r1", gold: str | None = None, source: str = "review") -> dict:
    """One row of the ``db.queries.vote_records`` frame."""
    return {"vote_id": next(_ids), "pair_id": pair_id, "region": region, "user": user, "choice": choice,
            "shown_left": shown_left, "seconds_taken": np.nan if seconds is None else seconds,
            "is_gold": gold is not None, "gold_choice": gold, "created_at": pd.Timestamp("2025-01-06"),
            "source": source, "model_a": 1, "model_b": 2}


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------- agreement


def test_krippendorff_is_one_for_perfect_agreement():
    data = np.array([[0, 1, 2, 3, 0], [0, 1, 2, 3, 0], [0, 1, np.nan, 3, np.nan]])
    assert krippendorff.alpha(reliability_data=data, level_of_measurement="nominal") == 1.0


def test_alpha_per_region_matches_a_hand_computation():
    rows = [
        # r1: ann a a b b, bob a b b b on pairs 1-4; pair 5 has one reviewer and does not count
        *[vote(p, "ann", c) for p, c in zip([1, 2, 3, 4], "aabb", strict=True)],
        *[vote(p, "bob", c) for p, c in zip([1, 2, 3, 4], "abbb", strict=True)],
        vote(5, "ann", "a"),
        vote(1, "import", "b", source="import"),  # would change alpha if it counted
        # r2: perfect agreement with variation
        vote(6, "ann", "a", region="r2"), vote(6, "bob", "a", region="r2"),
        vote(7, "ann", "tie", region="r2"), vote(7, "bob", "tie", region="r2"),
    ]
    result = agreement(frame(rows)).set_index("region")
    assert list(result.index) == ["r1", "r2", ALL_REGIONS]

    # r1 coincidence matrix (each pair of 2 values adds 1 to o[c,k] and o[k,c]; n = 8 values):
    #   o_aa = 2 (pair 1), o_ab = o_ba = 1 (pair 2), o_bb = 4 (pairs 3, 4); n_a = 3, n_b = 5
    #   alpha = 1 - (n - 1) * sum_{c!=k} o_ck / sum_{c!=k} n_c n_k = 1 - 7 * 2 / (2 * 3 * 5) = 8/15
    assert result.loc["r1", "alpha"] == pytest.approx(8 / 15, abs=1e-12)
    assert result.loc["r2", "alpha"] == 1.0
    # all regions: n = 12, n_a = 5, n_b = 5, n_tie = 2, disagreement 2 → 1 - 11 * 2 / (2 * (25 + 10 + 10)) = 34/45
    assert result.loc[ALL_REGIONS, "alpha"] == pytest.approx(34 / 45, abs=1e-12)
    assert result[["pairs", "votes", "reviewers"]].to_dict("index") == {
        "r1": {"pairs": 4, "votes": 8, "reviewers": 2},
        "r2": {"pairs": 2, "votes": 4, "reviewers": 2},
        ALL_REGIONS: {"pairs": 6, "votes": 12, "reviewers": 2},
    }


def test_alpha_is_nan_without_two_pairs_or_without_variation():
    rows = [
        vote(1, "ann", "a", region="one-pair"), vote(1, "bob", "b", region="one-pair"),
        vote(2, "ann", "b", region="all-same"), vote(2, "bob", "b", region="all-same"),
        vote(3, "ann", "b", region="all-same"), vote(3, "bob", "b", region="all-same"),
        vote(4, "ann", "a", region="alone"),
    ]
    result = agreement(frame(rows)).set_index("region")
    assert math.isnan(result.loc["one-pair", "alpha"]) and result.loc["one-pair", "pairs"] == 1
    assert math.isnan(result.loc["all-same", "alpha"]) and result.loc["all-same", "pairs"] == 2
    assert math.isnan(result.loc["alone", "alpha"]) and result.loc["alone", "pairs"] == 0
    assert result.loc[ALL_REGIONS, "pairs"] == 3  # three pairs, choices vary across them: alpha is defined
    assert not math.isnan(result.loc[ALL_REGIONS, "alpha"])


# ------------------------------------------------------------------------------------------------ reviewers


def reviewers_frame() -> pd.DataFrame:
    rows = []
    # majority: good and ally always "a" on pairs 1-10; contrarian "b" on 1-7 and "a" on 8-10.
    for p in range(1, 11):
        side = "a" if p % 2 else "b"
        rows += [vote(p, "good", "a", shown_left=side), vote(p, "ally", "a", shown_left=side),
                 vote(p, "contrarian", "b" if p <= 7 else "a", shown_left=side)]
    # gold: good gets 5/5 right (and also votes in r2); gold_bad 2/5 on its own gold pairs
    rows += [vote(100 + i, "good", "a", gold="a", region="r2", shown_left="b") for i in range(5)]
    rows += [vote(105 + i, "gold_bad", c, gold="b", shown_left="a") for i, c in enumerate(["b", "b", "a", "a", "tie"])]
    # position: lefty picks the left side 18 of 20 times, righty 2 of 20 (and is fast), few 19 of 19
    rows += [vote(200 + i, "lefty", side if i < 18 else {"a": "b", "b": "a"}[side], shown_left=side)
             for i, side in enumerate("ab" * 10)]
    rows += [vote(300 + i, "righty", "b" if i < 18 else "a", shown_left="a", seconds=2.0) for i in range(20)]
    rows += [vote(400 + i, "few", "a", shown_left="a") for i in range(19)]
    # speed: ten ties, median 1.5 s; slowpoke has no timings at all
    rows += [vote(500 + i, "fast", "tie", seconds=1.0 if i < 5 else 2.0) for i in range(10)]
    rows += [vote(600 + i, "slowpoke", "both_bad", seconds=None) for i in range(3)]
    # the import account: every vote "a" shown left, no time; it must not appear at all
    rows += [vote(700 + i, "import", "a", shown_left="a", seconds=None, source="import") for i in range(30)]
    return frame(rows)


def test_reviewer_quality_measures():
    quality = reviewer_quality(reviewers_frame())
    assert list(quality.columns) == QUALITY_COLUMNS
    assert list(quality["user"]) == ["ally", "contrarian", "fast", "few", "gold_bad", "good", "lefty", "righty",
                                     "slowpoke"]
    q = quality.set_index("user")
    assert q.loc["good", "votes"] == 15 and q.loc["good", "regions"] == "r1, r2"
    assert (q.loc["good", "gold_votes"], q.loc["good", "gold_accuracy"]) == (5, 1.0)
    assert (q.loc["gold_bad", "gold_votes"], q.loc["gold_bad", "gold_correct"]) == (5, 2)
    assert q.loc["gold_bad", "gold_accuracy"] == 0.4
    assert q.loc["ally", "gold_votes"] == 0 and math.isnan(q.loc["ally", "gold_accuracy"])

    assert (q.loc["lefty", "decisive_votes"], q.loc["lefty", "left_share"]) == (20, 0.9)
    assert q.loc["lefty", "position_p"] == pytest.approx(binomtest(18, 20, 0.5).pvalue, rel=1e-12)
    assert q.loc["lefty", "position_p"] == pytest.approx(2 * 211 / 2**20, rel=1e-12)
    assert q.loc["righty", "left_share"] == 0.1
    assert q.loc["righty", "position_p"] == pytest.approx(binomtest(2, 20, 0.5).pvalue, rel=1e-12)
    # good: pairs 1-10 alternate the side shown left while always choosing "a" → 5 of 10 left; gold: 0 of 5
    assert (q.loc["good", "decisive_votes"], q.loc["good", "left_share"]) == (15, 5 / 15)
    assert q.loc["fast", "decisive_votes"] == 0 and math.isnan(q.loc["fast", "left_share"])
    assert math.isnan(q.loc["fast", "position_p"])

    assert (q.loc["fast", "timed_votes"], q.loc["fast", "median_seconds"]) == (10, 1.5)
    assert q.loc["righty", "median_seconds"] == 2.0 and q.loc["good", "median_seconds"] == 10.0
    assert q.loc["slowpoke", "timed_votes"] == 0 and math.isnan(q.loc["slowpoke", "median_seconds"])

    # contrarian: the others (good, ally) agree on "a" everywhere → 3 of 10.
    # good: on pairs 1-7 the others split (ally a, contrarian b): no majority; on 8-10 it agrees → 3 of 3.
    assert (q.loc["contrarian", "compared_votes"], q.loc["contrarian", "majority_agreement"]) == (10, 0.3)
    assert (q.loc["good", "compared_votes"], q.loc["good", "majority_agreement"]) == (3, 1.0)
    assert q.loc["lefty", "compared_votes"] == 0 and math.isnan(q.loc["lefty", "majority_agreement"])


def test_exactly_the_right_reviewers_are_flagged_with_reasons():
    q = reviewer_quality(reviewers_frame()).set_index("user")
    assert q.loc[q["flagged"], "reasons"].to_dict() == {
        "contrarian": "agrees with other reviewers 30% of the time (3/10)",
        "fast": "median 1.5 s per vote, under 3 s",
        "gold_bad": "gold accuracy 40% (2/5) below 60%",
        "lefty": "picks the left side 90% of the time (p=0.0004)",
        "righty": "picks the right side 90% of the time (p=0.0004); median 2.0 s per vote, under 3 s",
    }
    # few picked left 19 of 19 times but that is under the 20 decisive votes the test needs
    assert set(q.index[~q["flagged"]]) == {"ally", "few", "good", "slowpoke"}
    assert (q.loc[~q["flagged"], "reasons"] == "").all()
    assert q["flagged"].dtype == bool


def test_thresholds_are_keyword_arguments():
    votes = reviewers_frame()
    strict = reviewer_quality(votes, min_gold=6, min_decisive=19, min_median_seconds=1.0,
                              min_majority_agreement=0.25).set_index("user")
    assert "gold_bad" not in set(strict.index[strict["flagged"]])  # 5 gold votes are now too few
    assert strict.loc["few", "reasons"] == "picks the left side 100% of the time (p=3.8e-06)"
    assert not strict.loc["fast", "flagged"] and not strict.loc["contrarian", "flagged"]
    lenient = reviewer_quality(votes, max_position_p=1e-6).set_index("user")
    assert not lenient.loc["lefty", "flagged"]


def test_position_bias_overall():
    rows = [vote(1, "ann", "a", shown_left="a"), vote(2, "ann", "b", shown_left="b"), vote(3, "bob", "a"),
            vote(4, "bob", "a", shown_left="b"), vote(5, "bob", "tie"),
            *[vote(10 + i, "import", "a", source="import") for i in range(5)]]
    assert position_bias(frame(rows)) == {"left_share": 0.75, "n": 4, "p_value": pytest.approx(0.625, rel=1e-12)}
    assert binomtest(3, 4, 0.5).pvalue == 0.625
    empty = position_bias(frame(rows[4:]))
    assert empty["n"] == 0 and math.isnan(empty["left_share"]) and math.isnan(empty["p_value"])


def test_empty_frame():
    empty = frame([vote(1, "import", "a", source="import")])
    assert reviewer_quality(empty).empty
    assert agreement(empty).to_dict("records")[0]["pairs"] == 0


def test_the_database_sums_up_votes_as_summarize_does(any_engine, mini_data):
    """reviewer_activity / seconds_medians / shared_votes give reviewer_quality_from what summarize gives it."""
    import random

    from db import queries
    from db.models import Choice, Pair, Side, Vote
    from db.session import session_scope
    from rewards.quality import reviewer_quality_from, summarize
    from tests.conftest import load_mini, login_as, make_pairs

    load_mini(any_engine, mini_data)
    pairs = make_pairs(any_engine, "en-GB-leeds", 12) + make_pairs(any_engine, "en-AU-perth", 12)
    users = [login_as(any_engine, f"r{i}", regions=["en-GB-leeds", "en-AU-perth"]) for i in range(4)]
    importer = login_as(any_engine, "importer", roles=("engineer",))
    rng = random.Random(5)
    with session_scope(any_engine) as s:
        for pid in pairs[:6]:
            pair = s.get(Pair, pid)
            pair.is_gold, pair.gold_choice = True, Choice.a
        for pid in pairs:
            region = s.get(Pair, pid).region_id
            s.get(Pair, pid).reviews_wanted = s.get(Pair, pid).assigned = 3 if pid % 2 else 1
            for user in rng.sample(users, 3 if pid % 2 else 1):
                s.add(Vote(pair_id=pid, user_id=user.id, region_id=region, choice=rng.choice(list(Choice)),
                           shown_left=rng.choice(list(Side)), seconds_taken=rng.choice([None, 1.5, 2.0, 7.3, 12.0]),
                           source=rng.choice(["review", "simulated"])))
        s.add(Vote(pair_id=pairs[1], user_id=importer.id, region_id=s.get(Pair, pairs[1]).region_id,
                   choice=Choice.b, shown_left=Side.a, source="import"))  # left out by both ways
    with session_scope(any_engine) as s:
        from_db = (queries.reviewer_activity(s), queries.seconds_medians(s), queries.shared_votes(s))
        from_frame = summarize(queries.vote_records(s))
    key = ["user", "region"]
    pd.testing.assert_frame_equal(from_db[0].sort_values(key).reset_index(drop=True),
                                  from_frame[0].sort_values(key).reset_index(drop=True), check_dtype=False)
    quality_db = reviewer_quality_from(*from_db, min_gold=1, min_decisive=1, min_timed=1, min_compared=1)
    quality_frame = reviewer_quality_from(*from_frame, min_gold=1, min_decisive=1, min_timed=1, min_compared=1)
    pd.testing.assert_frame_equal(quality_db, quality_frame, check_dtype=False)
    assert quality_db["compared_votes"].sum() > 0 and quality_db["gold_votes"].sum() > 0
