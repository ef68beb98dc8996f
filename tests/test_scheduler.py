"""The active pair scheduler: targets, gain-weighted choice, caps, gold pairs, fresh pairs, concurrency."""

import math
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from collect import scheduler
from collect.review import skip
from collect.review_policy import ReviewPolicy
from collect.scheduler import Target, choose_target, next_assignment, one_vote_gain, read_targets
from db.errors import ConfigError
from db.models import Assignment, Choice, Pair, Vote
from db.session import session_scope
from tests.conftest import NO_GOLD, cast, lineage, load_mini, login_as, models_of, vote


@pytest.fixture(autouse=True)
def _fresh_cache():
    scheduler.clear_cache()
    yield
    scheduler.clear_cache()


def test_one_vote_gain_matches_the_formula():
    fresh = Target(1, 2, 1, "base")
    assert one_vote_gain(fresh) == pytest.approx(1.959963984540054 * 0.5 * (1 - 1 / math.sqrt(2)), abs=1e-12)
    judged = Target(1, 2, 1, "base", wins=30, ties=4, losses=10)
    w, t, n = 31, 4, 46
    score = (w + t / 2) / n
    sigma = math.sqrt((w + t / 4) / n - score * score)
    assert one_vote_gain(judged) == pytest.approx(1.959963984540054 * sigma * (1 / math.sqrt(45) - 1 / math.sqrt(46)))
    judged.pending = 5  # votes already on their way count as taken
    assert one_vote_gain(judged) < one_vote_gain(Target(1, 2, 1, "base", wins=30, ties=4, losses=10))


def test_choose_target_weights_by_gain_and_a_tenth_once_precise():
    wide = Target(1, 3, 1, "base", wins=3, losses=2)
    precise = Target(1, 3, 2, "parent", wins=600, ties=50, losses=350)
    assert precise.half_width() <= 0.05 < wide.half_width()
    rng = random.Random(7)
    picks = Counter(choose_target([wide, precise], rng).kind for _ in range(20000))
    expected = one_vote_gain(precise) * 0.1 / (one_vote_gain(wide) + one_vote_gain(precise) * 0.1)
    assert picks["parent"] / 20000 == pytest.approx(expected, abs=0.005)
    assert choose_target([], rng) is None


def test_targets_are_the_newest_version_vs_base_and_parent(loaded):
    ids = lineage(loaded)
    with session_scope(loaded) as s:
        targets = {(t.new_id, t.old_id, t.kind) for t in read_targets(s, ids["region"])}
    assert targets == {(ids["v2"], ids["v1"], "parent"), (ids["v2"], ids["base"], "base")}


def test_target_counts_are_from_the_new_versions_side(loaded):
    ids = lineage(loaded)
    rev = login_as(loaded, "rev", regions=["en-GB-leeds"])
    cast(loaded, rev, ids, "v2", "base", ["win", "win", "loss", "tie", "both_bad"])
    with session_scope(loaded) as s:
        by_kind = {t.kind: (t.wins, t.ties, t.losses) for t in read_targets(s, ids["region"])}
    assert by_kind == {"base": (2, 1, 1), "parent": (0, 0, 0)}


def test_reviewers_get_target_pairs_before_old_comparisons(loaded):
    ids = lineage(loaded)
    rev = login_as(loaded, "rev", regions=["en-GB-leeds"])
    targets = {frozenset((ids["v2"], ids["v1"])), frozenset((ids["v2"], ids["base"]))}
    seen = []
    for _ in range(36):
        with session_scope(loaded) as s:
            a = next_assignment(s, rev.id, rev.region_ids, rng=random.Random(len(seen)), policy=NO_GOLD)
            pair_id = a.pair_id
        seen.append(models_of(loaded, pair_id))
        vote(loaded, rev, pair_id, None)  # ties: no target is ever decided, so every pair is served
    assert all(m in targets for m in seen[:24])  # 12 prompts x 2 target comparisons first
    assert seen[24:] == [frozenset((ids["v1"], ids["base"]))] * 12  # then the old comparison, oldest first
    with session_scope(loaded) as s:
        assert next_assignment(s, rev.id, rev.region_ids, policy=NO_GOLD) is None
        assert s.scalar(select(func.count()).select_from(Assignment).where(Assignment.user_id == rev.id)) == 36


def test_the_less_certain_target_is_served_first(loaded):
    ids = lineage(loaded)
    rev = login_as(loaded, "rev", regions=["en-GB-leeds"])
    cast(loaded, rev, ids, "v2", "v1", ["win"] * 10)  # far more certain than the untouched v2 vs base
    other = login_as(loaded, "other", regions=["en-GB-leeds"])
    with session_scope(loaded) as s:
        a = next_assignment(s, other.id, other.region_ids, rng=random.Random(0), policy=NO_GOLD)
        pair_id = a.pair_id
    assert models_of(loaded, pair_id) == frozenset((ids["v2"], ids["base"]))


def test_a_pair_gets_as_many_reviewers_as_it_wants_and_no_more(loaded):
    ids = lineage(loaded, prompts=1)
    with session_scope(loaded) as s:
        for pair in s.scalars(select(Pair)):
            pair.reviews_wanted = 3 if {pair.model_a_id, pair.model_b_id} == {ids["v2"], ids["base"]} else 1
    reviewers = [login_as(loaded, f"rev{i}", regions=["en-GB-leeds"]) for i in range(4)]
    got = {}
    for rev in reviewers:
        mine = []
        for _ in range(1000):  # bounded: a queue that never empties fails instead of hanging
            with session_scope(loaded) as s:
                a = next_assignment(s, rev.id, rev.region_ids, rng=random.Random(rev.id), policy=NO_GOLD)
                if a is None:
                    break
                mine.append(a.pair_id)
            vote(loaded, rev, mine[-1], None)  # ties keep every target undecided
        else:
            pytest.fail(f"{rev.username}'s queue never emptied")
        got[rev.username] = mine
    per_pair = Counter(p for mine in got.values() for p in mine)
    with session_scope(loaded) as s:
        wanted = dict(s.execute(select(Pair.id, Pair.reviews_wanted)).all())
    assert per_pair == Counter(wanted)  # every pair judged exactly as often as wanted
    assert all(len(set(mine)) == len(mine) for mine in got.values())  # never the same pair twice


def test_skipped_pairs_go_back_to_the_pool(loaded):
    lineage(loaded, prompts=1)
    first = login_as(loaded, "first", regions=["en-GB-leeds"])
    second = login_as(loaded, "second", regions=["en-GB-leeds"])
    with session_scope(loaded) as s:
        mine = next_assignment(s, first.id, first.region_ids, rng=random.Random(0), policy=NO_GOLD)
    with session_scope(loaded) as s:
        skip(s, first, mine.id)
        skip(s, first, mine.id)  # twice: the place is returned once
        assert s.get(Pair, mine.pair_id).assigned == 0
    handed = []
    with session_scope(loaded) as s:
        while (a := next_assignment(s, second.id, second.region_ids, policy=NO_GOLD)) is not None:
            handed.append(a.pair_id)
            s.add(Vote(pair_id=a.pair_id, user_id=second.id, region_id=s.get(Pair, a.pair_id).region_id,
                       choice=Choice.tie, shown_left=a.shown_left))
            s.flush()
    assert mine.pair_id in handed and len(handed) == 3
    with session_scope(loaded) as s:
        others = next_assignment(s, first.id, first.region_ids, policy=NO_GOLD)
    assert others is None  # the two other pairs are taken and the skipped one never comes back to them


def test_gold_pairs_are_mixed_in_at_the_configured_rate(loaded):
    ids = lineage(loaded, prompts=2)
    with session_scope(loaded) as s:
        gold = s.scalar(select(Pair).where(Pair.model_a_id.in_([ids["v1"], ids["base"]]),
                                           Pair.model_b_id.in_([ids["v1"], ids["base"]])).limit(1))
        gold.is_gold, gold.gold_choice = True, Choice.a
        gold_id = gold.id
    always = ReviewPolicy(gold_rate=1.0, agreement_share=0.0, stats_ttl=0)
    never = ReviewPolicy(gold_rate=0.0, agreement_share=0.0, stats_ttl=0)
    a_rev, b_rev, c_rev = (login_as(loaded, n, regions=["en-GB-leeds"]) for n in ("a", "b", "c"))
    with session_scope(loaded) as s:
        assert next_assignment(s, a_rev.id, a_rev.region_ids, policy=always).pair_id == gold_id
        assert next_assignment(s, b_rev.id, b_rev.region_ids, policy=always).pair_id == gold_id  # every reviewer
    served = []
    with session_scope(loaded) as s:
        while (a := next_assignment(s, c_rev.id, c_rev.region_ids, policy=never)) is not None:
            served.append(a.pair_id)
            s.add(Vote(pair_id=a.pair_id, user_id=c_rev.id, region_id=ids["region"], choice=Choice.tie,
                       shown_left=a.shown_left))
            s.flush()
    assert gold_id not in served and len(served) == 5


def test_new_pairs_are_made_from_stored_generations_when_a_target_runs_out(loaded):
    ids = lineage(loaded, samples=2, prompts=3)  # 2 samples each: 4 possible pairs per prompt and comparison
    rev = login_as(loaded, "rev", regions=["en-GB-leeds"])
    with session_scope(loaded) as s:
        before = s.scalar(select(func.count()).select_from(Pair))
    served = []
    for _ in range(27):
        with session_scope(loaded) as s:
            a = next_assignment(s, rev.id, rev.region_ids, rng=random.Random(len(served)), policy=NO_GOLD)
            served.append(a.pair_id)
        vote(loaded, rev, served[-1], None)  # ties keep both targets undecided
    kinds = Counter(models_of(loaded, p) for p in served)
    assert kinds[frozenset((ids["v2"], ids["v1"]))] + kinds[frozenset((ids["v2"], ids["base"]))] == 24
    assert kinds[frozenset((ids["v1"], ids["base"]))] == 3  # the old comparison: only its stored pairs
    assert served[24:] == sorted(served[24:])  # and those last, oldest first
    with session_scope(loaded) as s:
        assert next_assignment(s, rev.id, rev.region_ids, policy=NO_GOLD) is None
        assert s.scalar(select(func.count()).select_from(Pair)) == before + 18  # 3 prompts x 2 targets x 3 more


def test_concurrent_reviewers_never_share_a_single_review_pair(pg_engine, mini_data):
    load_mini(pg_engine, mini_data, ("en-GB-leeds",))
    lineage(pg_engine)
    reviewers = [login_as(pg_engine, f"rev{i}", regions=["en-GB-leeds"]) for i in range(8)]

    def work(rev):
        mine = []
        for _ in range(6):
            with session_scope(pg_engine) as s:
                a = next_assignment(s, rev.id, rev.region_ids, policy=NO_GOLD)
                if a is None:
                    break
                mine.append(a.pair_id)
                s.add(Vote(pair_id=a.pair_id, user_id=rev.id, region_id=s.get(Pair, a.pair_id).region_id,
                           choice=Choice.tie, shown_left=a.shown_left))
        return mine

    with ThreadPoolExecutor(8) as pool:
        got = [p for mine in pool.map(work, reviewers, timeout=120) for p in mine]
    assert len(got) == 36 and len(set(got)) == 36  # all 36 pairs, each to exactly one reviewer
    with session_scope(pg_engine) as s:
        assert s.scalar(select(func.count()).select_from(Pair).where(Pair.assigned != 1)) == 0


def test_review_policy_from_env():
    policy = ReviewPolicy.from_env({"GEOALIGN_GOLD_RATE": "0.2", "GEOALIGN_AGREEMENT_REVIEWS": "5"})
    assert (policy.gold_rate, policy.agreement_reviews, policy.reviews_per_pair) == (0.2, 5, 1)
    with pytest.raises(ConfigError, match="GEOALIGN_GOLD_RATE='lots' is not a number"):
        ReviewPolicy.from_env({"GEOALIGN_GOLD_RATE": "lots"})
    with pytest.raises(ConfigError, match="GEOALIGN_AGREEMENT_SHARE=1.5 is out of range"):
        ReviewPolicy.from_env({"GEOALIGN_AGREEMENT_SHARE": "1.5"})
    rng = random.Random(3)
    wanted = Counter(ReviewPolicy(agreement_share=0.25).reviews_for_new_pair(rng) for _ in range(4000))
    assert set(wanted) == {1, 3} and wanted[3] / 4000 == pytest.approx(0.25, abs=0.02)


def test_cached_counts_are_read_in_the_background(loaded):
    ids = lineage(loaded)
    cached = ReviewPolicy(gold_rate=0.0, agreement_share=0.0, stats_ttl=60)
    with session_scope(loaded) as s:
        assert scheduler._targets(s, ids["region"], cached) == []  # nobody waits: the oldest open pair serves
    deadline = time.monotonic() + 20
    while not scheduler._VIEWS and time.monotonic() < deadline:
        time.sleep(0.05)
    with session_scope(loaded) as s:
        assert {t.kind for t in scheduler._targets(s, ids["region"], cached)} == {"base", "parent"}
