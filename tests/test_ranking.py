"""Ranking k outputs of one brief: the expansion and its weights, interval coverage, rank sets, and the same
idempotency, undo, skip and region rules as a vote; rankings in the totals, win-rates and preference datasets."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from collect import scheduler
from collect.datasets import DatasetFilter, preference_rows, rankings_at_their_weight
from collect.export import write_rows
from collect.ranking import make_rank_sets
from collect.review import (
    RankItem,
    ReviewItem,
    last_undoable,
    next_item,
    progress,
    skip,
    submit_ranking,
    submit_vote,
    undo_last_vote,
)
from collect.review_policy import ReviewPolicy
from collect.scheduler import next_assignment
from collect.simulate import simulate_reviews, taste_ranks
from db import migrate, queries, rollups
from db.errors import ConfigError, PermissionDenied, ValidationError
from db.models import (
    Assignment,
    Choice,
    ModelVersion,
    Pair,
    RankCandidate,
    Ranking,
    RankSet,
    RollupComparison,
    RollupReviewer,
    User,
    Vote,
    user_regions,
)
from db.session import session_scope
from rewards.ranking import (
    check_ranks,
    cross_counts,
    cross_outcomes,
    implied_outcomes,
    pair_weight,
    simulate,
    true_score,
)
from rewards.ratings import bradley_terry, version_win_rates
from rewards.winrate import score_intervals
from tests.conftest import lineage, load_mini, login_as, make_pairs

RANK3 = ReviewPolicy(gold_rate=0.0, agreement_share=0.0, stats_ttl=0, rank_k=3)
RANK4 = ReviewPolicy(gold_rate=0.0, agreement_share=0.0, stats_ttl=0, rank_k=4)


@pytest.fixture(autouse=True)
def _fresh_cache():
    scheduler.clear_cache()
    yield
    scheduler.clear_cache()


# --- the expansion (pure) ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [3, 4])
def test_a_ranking_of_k_weighs_k_minus_one_comparisons(k):
    outcomes = implied_outcomes(list(range(1, k + 1)))
    assert len(outcomes) == k * (k - 1) // 2
    assert all(o.weight == pytest.approx(2 / k) == pair_weight(k) for o in outcomes)
    assert sum(o.weight for o in outcomes) == pytest.approx(k - 1)
    assert all(o.outcome == "first" for o in outcomes)  # position order is rank order here


def test_ties_and_order_are_expanded_pair_by_pair():
    # candidate 1 best, 0 and 3 tied second, 2 last
    got = {(o.first, o.second): (o.outcome, o.gap) for o in implied_outcomes([2, 1, 4, 2])}
    assert got == {(0, 1): ("second", 1), (0, 2): ("first", 2), (0, 3): ("tie", 0), (1, 2): ("first", 3),
                   (1, 3): ("first", 1), (2, 3): ("second", 2)}
    assert check_ranks([1, 2, 2, 3], 4) == [1, 2, 2, 4]  # dense ranks become competition ranks: same order


@pytest.mark.parametrize("ranks, k, field", [
    ([1, 2], 3, "ranks: 2 given"), ([1, 2, 3, 4], 3, "ranks: 4 given"), ([0, 1, 2], 3, r"ranks\[0\]=0"),
    ([1, 2, 5, 3], 4, r"ranks\[2\]=5"), ([1, "2", 3], 3, r"ranks\[1\]='2'"), ([1.5, 1, 2], 3, r"ranks\[0\]=1.5"),
    ([1, 2], 2, "k=2"), ([1, 2, 3, 4, 5], 5, "k=5"),
])
def test_bad_rankings_name_the_field(ranks, k, field):
    with pytest.raises(ValidationError, match=field):
        check_ranks(ranks, k)


def _coverage(versions, gap, tie_width, weight, reps=4000, n=60, seed=1):
    """Share of ``reps`` simulated studies of ``n`` rankings whose 95% interval covers the true win-rate."""
    truth = true_score(gap, tie_width)
    ranks = simulate(np.random.default_rng(seed), reps * n, versions, gap, tie_width).reshape(reps, n, len(versions))
    counts = cross_outcomes(ranks.reshape(reps * n, -1), versions, weight).reshape(reps, n, 3).sum(axis=1)
    _, low, high = score_intervals(counts[:, 0], counts[:, 1], counts[:, 2])
    return float(((low <= truth) & (truth <= high)).mean())


@pytest.mark.parametrize("versions", [[1, 1, 0], [1, 1, 0, 0]], ids=["rank-3", "rank-4"])
@pytest.mark.parametrize("gap, tie_width", [(0.3, 0.5), (0.0, 0.8), (0.8, 0.0)],
                         ids=["close-with-ties", "level-many-ties", "apart-no-ties"])
def test_weighted_intervals_cover_and_unweighted_ones_do_not(versions, gap, tie_width):
    # simulated reviewers rank 2 samples of the new version and 1 or 2 of the old (what rank sets hold), from a
    # Thurstone model with ties; the interval the dashboard shows must cover the true P(new beats old) 95% +- 2
    weighted = _coverage(versions, gap, tie_width, weight=None)
    assert 0.93 <= weighted <= 0.97, weighted
    unweighted = _coverage(versions, gap, tie_width, weight=1.0)  # every implied pair as an independent vote
    assert unweighted < 0.93, unweighted
    assert unweighted < weighted - 0.03


def test_cross_counts_take_only_pairs_of_different_versions():
    ranks = np.array([[1, 2, 3, 4], [4, 3, 2, 1], [1, 1, 1, 1]])  # new, new, old, old
    assert cross_counts(ranks, [1, 1, 0, 0]).tolist() == [2.0, 2.0, 2.0]  # 4 cross pairs x 1/2 per ranking
    assert cross_counts(ranks, [1, 1, 0, 0], weight=1.0).tolist() == [4.0, 4.0, 4.0]


def test_pairwise_votes_are_the_k2_case_of_the_same_simulation():
    assert 0.93 <= _coverage([1, 0], 0.3, 0.5, weight=1.0) <= 0.97


# --- policy -------------------------------------------------------------------------------------------------------


def test_rank_k_comes_from_the_environment_and_defaults_to_pairwise():
    assert ReviewPolicy.from_env({}).rank_k == 2 and not ReviewPolicy.from_env({}).ranks
    assert ReviewPolicy.from_env({"GEOALIGN_RANK_K": "4"}).ranks
    for bad in ("5", "1", "x", "3.5"):
        with pytest.raises(ConfigError, match="GEOALIGN_RANK_K"):
            ReviewPolicy.from_env({"GEOALIGN_RANK_K": bad})


# --- rank sets in the database ------------------------------------------------------------------------------------


@pytest.fixture
def ranked(loaded):
    """base → v1 → v2 with two samples per brief and version on 3 Leeds prompts, and a Leeds reviewer."""
    ids = lineage(loaded, samples=2, prompts=3)
    return loaded, ids, login_as(loaded, "rita", regions=["en-GB-leeds"])


def _rank_best_first(item: RankItem, best: str | None = None) -> dict[str, int]:
    labels = [label for label, _ in item.candidates]
    if best is not None:
        labels.remove(best)
        labels.insert(0, best)
    return {label: i + 1 for i, label in enumerate(labels)}


def test_rank_mode_serves_blind_shuffled_rank_sets_of_a_watched_comparison(ranked):
    engine, ids, user = ranked
    with session_scope(engine) as s:
        item = next_item(s, user, policy=RANK3)
        assert next_item(s, user, policy=RANK3) == item  # a reload shows the same set
    assert isinstance(item, RankItem) and item.k == 3 and item.region_code == "en-GB-leeds"
    assert [label for label, _ in item.candidates] == ["A", "B", "C"]
    shown = repr(item)
    for _, text in item.candidates:
        shown = shown.replace(repr(text), "")
    assert not any(name in shown for name in ("v1", "v2", "base", "model"))  # nothing names a version
    with session_scope(engine) as s:
        assignment = s.get(Assignment, item.assignment_id)
        rank_set = s.get(RankSet, assignment.rank_set_id)
        versions = [c.model_version_id for c in rank_set.candidates]
        assert assignment.pair_id is None and sorted(assignment.display_order) == [0, 1, 2]
        # stored new, old, new: two samples of the newest version and one of its parent or base
        assert versions in ([ids["v2"], ids["v1"], ids["v2"]], [ids["v2"], ids["base"], ids["v2"]])
        implied = s.scalars(select(Pair).where(Pair.rank_set_id == rank_set.id)).all()
        assert len(implied) == 3 and all(p.reviews_wanted == 0 for p in implied)
        shown = [text for _, text in item.candidates]
        stored = {c.position: c.generation.text for c in rank_set.candidates}
        assert shown == [stored[p] for p in assignment.display_order]


def test_rank_mode_falls_back_to_pairs_when_nothing_can_be_ranked(loaded):
    make_pairs(loaded, "en-GB-leeds", 2)  # a fresh demo: base vs base, one sample each, no watched comparison
    user = login_as(loaded, "rita", regions=["en-GB-leeds"])
    with session_scope(loaded) as s:
        item = next_item(s, user, policy=RANK3)
        assert isinstance(item, ReviewItem)
        assert s.scalar(select(func.count()).select_from(RankSet)) == 0


def test_the_implied_pairs_are_never_offered_for_pairwise_review(ranked):
    engine, ids, user = ranked
    with session_scope(engine) as s:
        made = make_rank_sets(s, list(s.scalars(select(Pair.prompt_id).distinct())), [ids["v2"], ids["v1"]], 4,
                              policy=RANK4)
        assert made == 3
        rank_pairs = set(s.scalars(select(Pair.id).where(Pair.rank_set_id.is_not(None))))
    assert len(rank_pairs) == 18
    served = []
    while True:
        with session_scope(engine) as s:
            a = next_assignment(s, user.id, user.region_ids, policy=RANK4)
            if a is None:
                break
            served.append(a.pair_id)
            s.add(Vote(pair_id=a.pair_id, user_id=user.id, region_id=ids["region"], choice=Choice.tie,
                       shown_left=a.shown_left))
    assert served and not rank_pairs & set(served)


@pytest.mark.parametrize("policy", [RANK3, RANK4], ids=["k3", "k4"])
def test_a_ranking_is_stored_once_with_its_weighted_votes(any_engine, mini_data, policy):
    engine = load_mini(any_engine, mini_data, ("en-GB-leeds",))
    lineage(engine, samples=2, prompts=3)
    user = login_as(engine, "rita", regions=["en-GB-leeds"])
    k = policy.rank_k
    with session_scope(engine) as s:
        item = next_item(s, user, policy=policy)
        best = item.candidates[-1][0]  # the last one shown
        first = submit_ranking(s, user, item.assignment_id, _rank_best_first(item, best), seconds=31.5)
    with session_scope(engine) as s:
        again = submit_ranking(s, user, item.assignment_id, _rank_best_first(item))
    assert not first.duplicate and again.duplicate and again.vote_id == first.vote_id
    with session_scope(engine) as s:
        ranking = s.get(Ranking, first.vote_id)
        votes = s.scalars(select(Vote).where(Vote.ranking_id == ranking.id)).all()
        assert s.scalar(select(func.count()).select_from(Ranking)) == 1
        assert len(votes) == k * (k - 1) // 2 and sum(v.weight for v in votes) == pytest.approx(k - 1)
        assert ranking.seconds_taken == 31.5 and all(v.seconds_taken is None for v in votes)
        assignment = s.get(Assignment, item.assignment_id)
        best_generation = s.scalar(select(RankCandidate.generation_id).where(
            RankCandidate.rank_set_id == ranking.rank_set_id,
            RankCandidate.position == assignment.display_order[-1]))
        for v in votes:  # the output ranked first, shown last, wins every pair it is in
            pair = s.get(Pair, v.pair_id)
            if best_generation in (pair.generation_a_id, pair.generation_b_id):
                assert v.choice == (Choice.a if pair.generation_a_id == best_generation else Choice.b)
        assert assignment.voted


def test_bad_rankings_are_refused_naming_the_field_and_nothing_is_written(ranked):
    engine, ids, user = ranked
    with session_scope(engine) as s:
        item = next_item(s, user, policy=RANK3)
    for bad, field in [({"A": 1, "B": 2}, "ranks: rank exactly the outputs shown, A, B, C"),
                       ({"A": 1, "B": 2, "D": 3}, "ranks: rank exactly"), ({"A": 1, "B": 2, "C": 4}, r"ranks\[2\]=4"),
                       ({"A": 0, "B": 1, "C": 2}, r"ranks\[0\]=0"), ([1, 2, 3], "ranks: rank exactly")]:
        with session_scope(engine) as s, pytest.raises(ValidationError, match=field):
            submit_ranking(s, user, item.assignment_id, bad)
    with session_scope(engine) as s, pytest.raises(ValidationError, match="submit a ranking"):
        submit_vote(s, user, item.assignment_id, "left")
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Ranking)) == 0
        assert s.scalar(select(func.count()).select_from(Vote)) == 0
        pair_assignment = next_assignment(s, user.id, user.region_ids, policy=RANK3)
    with session_scope(engine) as s, pytest.raises(ValidationError, match="submit a vote, not a ranking"):
        submit_ranking(s, user, pair_assignment.id, {"A": 1, "B": 2, "C": 3})


def test_skip_and_undo_follow_the_vote_rules(ranked):
    engine, ids, user = ranked
    with session_scope(engine) as s:
        item = next_item(s, user, policy=RANK3)
        skip(s, user, item.assignment_id)
        rank_set_id = s.get(Assignment, item.assignment_id).rank_set_id
        assert s.get(RankSet, rank_set_id).assigned == 0  # its place went back to the pool
    with session_scope(engine) as s, pytest.raises(ValidationError, match="you skipped this ranking"):
        submit_ranking(s, user, item.assignment_id, {"A": 1, "B": 2, "C": 3})
    with session_scope(engine) as s:
        nxt = next_item(s, user, policy=RANK3)
        assert nxt.assignment_id != item.assignment_id  # a skipped set does not come back
        submit_ranking(s, user, nxt.assignment_id, {"A": 1, "B": 1, "C": 2})
    with session_scope(engine) as s, pytest.raises(ValidationError, match="already ranked"):
        skip(s, user, nxt.assignment_id)
    with session_scope(engine) as s:
        assert isinstance(last_undoable(s, user), Ranking)
        assert progress(s, user).votes_today == 1
        assert not undo_last_vote(s, user, now=datetime.now(timezone.utc) + timedelta(minutes=5))  # window passed
        assert undo_last_vote(s, user)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Ranking)) == 0
        assert s.scalar(select(func.count()).select_from(Vote)) == 0  # the implied votes went with it
        assert next_item(s, user, policy=RANK3).assignment_id == nxt.assignment_id  # it comes back first


def test_a_reviewer_moved_out_of_the_region_can_neither_rank_nor_undo(ranked):
    engine, ids, user = ranked
    with session_scope(engine) as s:
        item = next_item(s, user, policy=RANK3)
        submit_ranking(s, user, item.assignment_id, {"A": 1, "B": 2, "C": 3})
        second = next_item(s, user, policy=RANK3)
    with session_scope(engine) as s:
        s.execute(delete(user_regions).where(user_regions.c.user_id == user.id))
    with session_scope(engine) as s, pytest.raises(PermissionDenied, match="does not review this ranking's region"):
        submit_ranking(s, user, second.assignment_id, {"A": 1, "B": 2, "C": 3})
    with session_scope(engine) as s:
        assert not undo_last_vote(s, user)
        assert s.scalar(select(func.count()).select_from(Ranking)) == 1


def test_rankings_enter_totals_win_rates_and_ratings_at_their_weight(ranked):
    engine, ids, user = ranked
    old = datetime.now(timezone.utc) - timedelta(hours=1)  # past the undo window: the totals may sum them
    for _ in range(4):
        with session_scope(engine) as s:
            item = next_item(s, user, policy=RANK4)
            assert isinstance(item, RankItem)
            submit_ranking(s, user, item.assignment_id, {"A": 1, "B": 2, "C": 3, "D": 4}, seconds=40)
    with session_scope(engine) as s:
        for row in s.scalars(select(Ranking)):
            row.created_at = old
        for v in s.scalars(select(Vote)):
            v.created_at = old
        rollups.refresh(s)
    with session_scope(engine) as s:
        total = s.scalar(select(func.sum(RollupComparison.votes)))
        cross = s.scalar(select(func.count()).select_from(Vote).join(Pair, Vote.pair_id == Pair.id)
                         .where(Pair.model_a_id != Pair.model_b_id))
        assert total == pytest.approx(cross * 0.5)  # 2/k per implied outcome between two versions
        assert s.scalar(select(func.count()).select_from(RollupReviewer)) == 0  # no side shown left, no seconds
        daily = queries.votes_per_day(s)  # throughput: each ranking is one judgement, not its six implied votes
        assert daily[["user", "region", "votes"]].values.tolist() == [["rita", "en-GB-leeds", 4]]
        counts, versions = queries.comparison_counts(s), queries.versions_frame(s)
    rates = version_win_rates(counts, versions)
    mine = rates[(rates.region == "All regions") & (rates.version == "v2")]
    # 4 rankings of 2 + 2 outputs: 4 cross-version outcomes each at 1/2, split between v2's two watched comparisons
    assert mine["n"].sum() == pytest.approx(counts[["a_wins", "b_wins", "ties"]].to_numpy().sum()) == 8
    # which version wins depends on the shuffled display order; the interval holds the rate and has width
    assert ((0 <= mine["low"]) & (mine["low"] <= mine["rate"]) & (mine["rate"] <= mine["high"])
            & (mine["high"] <= 1) & (mine["low"] < mine["high"])).all()
    board = bradley_terry(counts, versions, n_boot=20)
    assert set(board["version"]) >= {"v2", "base"} and board["games"].dtype == float


def test_bradley_terry_on_weighted_counts_matches_the_same_evidence_counted_whole():
    import pandas as pd

    versions = pd.DataFrame({"id": [1, 2], "name": ["base", "v1"], "parent_id": pd.array([None, 1], "Int64"),
                             "base_id": [1, 1], "round_number": pd.array([None, 1], "Int64")})

    def counts(a, b, t):
        return pd.DataFrame({"region": ["r"], "week": [pd.Timestamp("2024-06-03")], "model_a": [1], "model_b": [2],
                             "a_wins": [a], "b_wins": [b], "ties": [t], "both_bad": [0.0]})
    whole = bradley_terry(counts(10, 30, 4), versions, n_boot=0)
    weighted = bradley_terry(counts(10 * 2 / 3 * 1.5, 30 * 2 / 3 * 1.5, 4 * 2 / 3 * 1.5), versions, n_boot=0)
    assert np.allclose(whole["rating"], weighted["rating"])


def test_preference_rows_carry_weight_and_ranking_id(ranked, tmp_path):
    engine, ids, user = ranked
    with session_scope(engine) as s:
        item = next_item(s, user, policy=RANK4)
        ranking = submit_ranking(s, user, item.assignment_id, {"A": 1, "B": 2, "C": 2, "D": 4})
        pair_item = next_assignment(s, user.id, user.region_ids, policy=RANK4)
    with session_scope(engine) as s:
        pair_id = s.get(Assignment, pair_item.id).pair_id
        s.add(Vote(pair_id=pair_id, user_id=user.id, region_id=ids["region"], choice=Choice.a,
                   shown_left=pair_item.shown_left))
    with session_scope(engine) as s:
        rows, stats = preference_rows(s, DatasetFilter(splits=("train", "val")), "text")
    from_ranking = [r for r in rows if r["kind"] == "ranking"]
    assert len(from_ranking) == 5 and stats.ranking_rows == 5 and stats.rankings == 1  # 6 pairs, one tie
    assert all(r["ranking_id"] == ranking.vote_id and r["weight"] == 0.5 for r in from_ranking)
    assert sorted(r["margin"] for r in from_ranking) == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 1.0], abs=1e-4)
    pairwise = [r for r in rows if r["kind"] == "vote"]
    assert len(pairwise) == 1 and pairwise[0]["weight"] == 1.0 and pairwise[0]["ranking_id"] is None
    for fmt in ("jsonl", "parquet"):
        out = write_rows(rows, tmp_path / f"prefs.{fmt}")
        assert out.exists()
    import json

    written = [json.loads(line) for line in (tmp_path / "prefs.jsonl").read_text().splitlines()]
    assert {r["ranking_id"] for r in written} == {ranking.vote_id, None}
    # what a round trains on: the ranking as k-1 = 3 of its 5 ordered pairs (same ones every time), the vote as is
    trained = rankings_at_their_weight(rows)
    kept = [r for r in trained if r["kind"] == "ranking"]
    assert len(kept) == 3 and all(r in from_ranking for r in kept)
    assert kept == [r for r in rankings_at_their_weight(rows) if r["kind"] == "ranking"]
    assert [r for r in trained if r["kind"] != "ranking"] == [r for r in rows if r["kind"] != "ranking"]


def test_migration_down_and_up_with_rankings_stored(ranked):
    engine, ids, user = ranked
    with session_scope(engine) as s:
        item = next_item(s, user, policy=RANK3)
        submit_ranking(s, user, item.assignment_id, {"A": 1, "B": 2, "C": 3})
    migrate.downgrade(engine, "0009")
    with engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT count(*) FROM votes")).scalar() == 0  # the implied votes only
        assert conn.execute(text("SELECT count(*) FROM pairs")).scalar() == 9  # the pairwise pairs stay
    migrate.upgrade(engine)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(ModelVersion)) == 3
        assert s.scalar(select(func.count()).select_from(User)) == 1


def test_taste_ranks_group_scores_within_the_tie_margin():
    assert taste_ranks([0.1, 0.5, 0.3], 0.05) == [3, 1, 2]
    assert taste_ranks([0.5, 0.49, 0.1, 0.1], 0.05) == [1, 1, 2, 2]


def test_simulated_reviewers_rank_in_rank_mode(ranked, monkeypatch):
    engine, ids, user = ranked
    monkeypatch.setenv("GEOALIGN_RANK_K", "3")
    monkeypatch.setenv("GEOALIGN_GOLD_RATE", "0")
    monkeypatch.setenv("GEOALIGN_SCHEDULER_TTL", "0")  # read the vote counts now, not from a background refresh
    with session_scope(engine) as s:
        judged = simulate_reviews(s, user, limit=1)
    assert judged == 1
    with session_scope(engine) as s:
        rankings = s.scalars(select(Ranking)).all()
        assert len(rankings) == 1 and rankings[0].source == "simulated" and min(rankings[0].ranks) == 1
        votes = s.scalars(select(Vote)).all()
        assert len(votes) == 3 and {v.source for v in votes} == {"simulated"}
        assert {v.ranking_id for v in votes} == {rankings[0].id}
        assert all(abs(v.weight - 2 / 3) < 1e-9 for v in votes)


def test_an_open_rank_set_comes_first_when_the_mode_goes_back_to_pairwise(ranked):
    engine, ids, user = ranked
    pairwise = ReviewPolicy(gold_rate=0.0, agreement_share=0.0, stats_ttl=0)
    with session_scope(engine) as s:
        handed = next_item(s, user, policy=RANK3)
    with session_scope(engine) as s:
        again = next_item(s, user, policy=pairwise)
        assert isinstance(again, RankItem) and again.assignment_id == handed.assignment_id
        submit_ranking(s, user, again.assignment_id, {"A": 1, "B": 2, "C": 3})
    with session_scope(engine) as s:
        assert isinstance(next_item(s, user, policy=pairwise), ReviewItem)
