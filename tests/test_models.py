"""The database itself protects the data: unique votes, foreign keys, per-region content hashes."""

from datetime import datetime, timezone

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from collect.accounts import create_user
from db.models import Choice, Generation, ModelVersion, Pair, Prompt, Region, Side, Split, TaskType, Vote
from db.session import session_scope


def _region(s, code="en-GB-leeds"):
    r = Region(code=code, name=code, locale="en-GB", country="GB", currency="GBP", hemisphere="north",
               timezone="Europe/London", profile="", climate_by_month={}, local_terms=[], avoid_terms=[])
    s.add(r)
    s.flush()
    return r


def _pair(s, region):
    p = Prompt(region_id=region.id, task_type=TaskType.ad_copy, text="brief", split=Split.train, content_hash="h1")
    v = ModelVersion(name="base", base_model="m")
    s.add_all([p, v])
    s.flush()
    g1 = Generation(prompt_id=p.id, model_version_id=v.id, text="one", params={}, seed=0)
    g2 = Generation(prompt_id=p.id, model_version_id=v.id, text="two", params={}, seed=0)
    s.add_all([g1, g2])
    s.flush()
    pair = Pair(prompt_id=p.id, region_id=region.id, generation_a_id=g1.id, generation_b_id=g2.id,
                model_a_id=v.id, model_b_id=v.id)
    s.add(pair)
    s.flush()
    return pair


def test_one_vote_per_pair_and_reviewer(any_engine):
    with session_scope(any_engine) as s:
        region = _region(s)
        pair = _pair(s, region)
        user = create_user(s, "rev", "a-long-password", ["reviewer"], [region.code])
        ids = {"pair_id": pair.id, "user_id": user.id, "region_id": region.id}
    vote = ids | {"choice": Choice.a, "shown_left": Side.a, "comment": ""}
    with session_scope(any_engine) as s:
        s.execute(insert(Vote), [vote])
    with pytest.raises(IntegrityError, match="votes_pair_id_user_id_uq|UNIQUE constraint failed: votes"):
        with session_scope(any_engine) as s:
            s.execute(insert(Vote), [vote | {"choice": Choice.b}])
    with session_scope(any_engine) as s:
        assert [v.choice for v in s.scalars(select(Vote))] == [Choice.a]


def test_foreign_keys_are_enforced(any_engine):
    with pytest.raises(IntegrityError):
        with session_scope(any_engine) as s:
            s.add(Prompt(region_id=9999, task_type=TaskType.ad_copy, text="x", split=Split.train, content_hash="h"))


def test_prompt_hash_unique_per_region_only(any_engine):
    with session_scope(any_engine) as s:
        a, b = _region(s, "en-GB-a"), _region(s, "en-GB-b")
        for r in (a, b):  # the same brief may exist in two regions
            s.add(Prompt(region_id=r.id, task_type=TaskType.ad_copy, text="x", split=Split.train, content_hash="same"))
    with pytest.raises(IntegrityError):
        with session_scope(any_engine) as s:
            s.add(Prompt(region_id=a.id, task_type=TaskType.ad_copy, text="x", split=Split.val, content_hash="same"))


def test_pair_needs_two_distinct_generations(any_engine):
    with session_scope(any_engine) as s:
        pair = _pair(s, _region(s))
        ids = {c: getattr(pair, c) for c in ("prompt_id", "region_id", "model_a_id", "model_b_id")}
        g = pair.generation_a_id
    with pytest.raises(IntegrityError):
        with session_scope(any_engine) as s:
            s.add(Pair(generation_a_id=g, generation_b_id=g, **ids))


def test_enum_values_are_checked(any_engine):
    with session_scope(any_engine) as s:
        rid = _region(s).id
    with pytest.raises(IntegrityError):
        with session_scope(any_engine) as s:
            s.execute(insert(Prompt.__table__), [{"region_id": rid, "task_type": "billboard", "text": "x",
                                                  "split": "train", "content_hash": "q", "source": "",
                                                  "created_at": datetime.now(timezone.utc)}])
