"""Running totals: votes are summed once final, the tail is added live, nothing is counted twice, rebuilds."""

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from sqlalchemy import func, select

from collect.gold import mark_gold
from db import queries, rollups
from db.models import Pair, RollupComparison, Vote
from db.session import session_scope
from tests.conftest import MONDAY, cast, lineage, load_mini, login_as

LATER = MONDAY + timedelta(days=1)


@pytest.fixture
def world(any_engine, mini_data):
    load_mini(any_engine, mini_data, ("en-GB-leeds",))
    ids = lineage(any_engine)
    rev = login_as(any_engine, "rev", regions=["en-GB-leeds"])
    cast(any_engine, rev, ids, "v2", "base", ["win", "win", "loss", "both_bad"], tags=["local_idiom"])
    cast(any_engine, rev, ids, "v2", "v1", ["tie", "win"], when=LATER)
    return any_engine, ids, rev


def snapshot(session) -> dict[str, pd.DataFrame]:
    frames = {"counts": queries.comparison_counts(session), "daily": queries.votes_per_day(session),
              "activity": queries.reviewer_activity(session), "seconds": queries.seconds_medians(session),
              "tags": queries.reason_tag_counts(session)}
    return {k: v.sort_values(list(v.columns)).reset_index(drop=True) for k, v in frames.items()}


def assert_same(a: dict, b: dict) -> None:
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_dtype=False, obj=name)


def test_totals_plus_tail_equal_the_live_aggregates(world):
    engine, ids, rev = world
    with session_scope(engine) as s:
        live = snapshot(s)  # nothing summed yet: everything comes from the tail
        assert rollups.watermark(s) == 0
    now = LATER + timedelta(days=1)
    with session_scope(engine) as s:
        high = rollups.refresh(s, now=now)
        assert high == s.scalar(select(func.max(Vote.id)))
        assert s.scalar(select(func.sum(RollupComparison.votes))) == 6
    recent = datetime.now(timezone.utc)  # cast now: inside the undo window, so left in the tail
    cast(engine, rev, ids, "v2", "base", ["loss"], when=recent)
    with session_scope(engine) as s:
        assert rollups.refresh(s) == high
        both = snapshot(s)
    assert int(both["counts"][["a_wins", "b_wins", "ties", "both_bad"]].sum().sum()) == 7
    with session_scope(engine) as s:
        s.execute(RollupComparison.__table__.delete())  # prove the first six come from the totals now
        rollups.request_rebuild(s)
    with session_scope(engine) as s:
        rollups.refresh(s, now=now)
        assert_same(snapshot(s), both)
    assert live["counts"]["a_wins"].sum() + live["counts"]["b_wins"].sum() == 4


def test_a_second_refresh_of_the_same_range_adds_nothing(world):
    engine, _, _ = world
    now = LATER + timedelta(days=1)
    with session_scope(engine) as s:
        rollups.refresh(s, now=now)
        before = snapshot(s)
    with session_scope(engine) as s:
        rollups.refresh(s, now=now)
        assert_same(snapshot(s), before)
    with session_scope(engine) as first, session_scope(engine) as second:
        rollups.request_rebuild(first)
        first.commit()
        rollups.refresh(first, now=now)
        first.commit()
        rollups.refresh(second, now=now)  # saw the old watermark? its claim fails and it adds nothing
    with session_scope(engine) as s:
        assert_same(snapshot(s), before)


def test_marking_a_voted_pair_gold_takes_its_votes_out_of_the_win_rates(world):
    engine, ids, _ = world
    now = LATER + timedelta(days=1)
    with session_scope(engine) as s:
        rollups.refresh(s, now=now)
        voted = s.scalar(select(Vote.pair_id).join(Pair, Vote.pair_id == Pair.id)
                         .where(Pair.model_a_id.in_([ids["v2"], ids["v1"]]),
                                Pair.model_b_id.in_([ids["v2"], ids["v1"]])).limit(1))
    engineer = login_as(engine, "eng", roles=("engineer",))
    with session_scope(engine) as s:
        mark_gold(s, engineer, voted, "a")
    with session_scope(engine) as s:
        rollups.refresh(s, now=now)
        counts = queries.comparison_counts(s)
    v1_v2 = counts[(counts["model_a"] == ids["v1"]) & (counts["model_b"] == ids["v2"])]
    assert int(v1_v2[["a_wins", "b_wins", "ties", "both_bad"]].sum().sum()) == 1
