"""Blind review: assignment, sides, idempotent votes, skip, undo, progress and authorization."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from collect import review
from collect.review import Progress, last_undoable, next_item, progress, skip, submit_vote, undo_last_vote
from collect.scheduler import next_assignment
from db.errors import AuthError, PermissionDenied, ValidationError
from db.models import Assignment, Choice, Example, Pair, Side, User, Vote
from db.session import session_scope
from tests.conftest import login_as, make_pairs


@pytest.fixture
def leeds(loaded):
    make_pairs(loaded, "en-GB-leeds", 6)
    make_pairs(loaded, "en-AU-perth", 4)
    return loaded, login_as(loaded, "lee", regions=["en-GB-leeds"])


def test_next_item_is_blind_and_stable_until_voted(leeds):
    engine, user = leeds
    with session_scope(engine) as s:
        item = next_item(s, user)
        again = next_item(s, user)
    assert item == again  # reload shows the same pair
    assert item.region_code == "en-GB-leeds" and item.brief and item.task
    assert "Leeds copy" in item.left and "Leeds copy" in item.right
    assert "base" not in repr(item)  # no model or version name reaches the page


def test_left_right_maps_through_shown_left(leeds):
    engine, user = leeds
    for _ in range(6):
        with session_scope(engine) as s:
            item = next_item(s, user)
            submit_vote(s, user, item.assignment_id, "left", "clear")
    with session_scope(engine) as s:
        rows = s.execute(select(Vote, Pair).join(Pair, Vote.pair_id == Pair.id)).all()
        assert len(rows) == 6
        for vote, pair in rows:
            shown = pair.generation_a if vote.shown_left == Side.a else pair.generation_b
            chosen = pair.generation_a if vote.choice == Choice.a else pair.generation_b
            assert chosen.id == shown.id  # "left" always means the output shown left
        assert {v.shown_left for v, _ in rows} <= {Side.a, Side.b}
    with session_scope(engine) as s:
        assert next_item(s, user) is None  # queue empty; Perth pairs are not this reviewer's


def _reviewers(engine, n: int, regions: list[str]) -> list:
    """``n`` reviewers of ``regions`` as system accounts (no password hashing: only the scheduler is under test)."""
    from collect.auth import act_as_system
    from db.models import Region, Role, User, UserRole

    with session_scope(engine) as s:
        rows = s.scalars(select(Region).where(Region.code.in_(regions))).all()
        users = [User(username=f"sim-{i}", password_hash="!", is_system=True, roles=[UserRole(role=Role.reviewer)],
                      regions=list(rows)) for i in range(n)]
        s.add_all(users)
        s.flush()
        return [act_as_system(u) for u in users]


def test_sides_are_randomised_by_the_scheduler(loaded):
    """About 200 real assignments through next_item: the side shown left is a fair coin per assignment."""
    make_pairs(loaded, "en-GB-leeds", 12)
    make_pairs(loaded, "en-AU-perth", 12)
    with session_scope(loaded) as s:
        s.execute(update(Pair).values(reviews_wanted=9))
    for user in _reviewers(loaded, 9, ["en-GB-leeds", "en-AU-perth"]):
        for _ in range(100):  # bounded: 24 pairs, so a queue that never empties fails instead of hanging
            with session_scope(loaded) as s:
                item = next_item(s, user)
                if item is None:
                    break
                submit_vote(s, user, item.assignment_id, "tie")
        else:
            pytest.fail(f"{user.username}'s queue never emptied")
    with session_scope(loaded) as s:
        sides = s.scalars(select(Assignment.shown_left)).all()
    assert len(sides) == 9 * 24
    shown_a = sum(side == Side.a for side in sides)
    assert 70 <= shown_a <= 146, shown_a  # mean 108, sd 7.3: five sd either way fails about once in 3 million runs


def test_double_submit_records_one_vote(leeds):
    engine, user = leeds
    with session_scope(engine) as s:
        item = next_item(s, user)
        first = submit_vote(s, user, item.assignment_id, "right", "slight", tags=["local_idiom"], comment="ok")
    with session_scope(engine) as s:
        second = submit_vote(s, user, item.assignment_id, "left", "clear")
    assert (first.duplicate, second.duplicate, first.vote_id) == (False, True, second.vote_id)
    with session_scope(engine) as s:
        vote = s.scalar(select(Vote))
        assert s.scalar(select(func.count()).select_from(Vote)) == 1
        assert [t.name for t in vote.tags] == ["local_idiom"] and vote.strength.value == "slight"


def test_both_bad_with_rewrite_becomes_a_gold_example(leeds):
    engine, user = leeds
    with session_scope(engine) as s:
        item = next_item(s, user)
        submit_vote(s, user, item.assignment_id, "both_bad", "clear", rewrite="Ey up! Call 0113 496 0000.",
                    rewrite_side="right", seconds=12.5)
    with session_scope(engine) as s:
        vote = s.scalar(select(Vote))
        assert vote.choice == Choice.both_bad and vote.strength is None and vote.seconds_taken == 12.5
        assert vote.rewrite == "Ey up! Call [PHONE]." and vote.rewrite_of == (Side.b if vote.shown_left == Side.a
                                                                            else Side.a)
        example = s.scalar(select(Example).where(Example.vote_id == vote.id))
        assert example.text == vote.rewrite and example.source == "rewrite"


def test_skip_and_undo(leeds):
    engine, user = leeds
    with session_scope(engine) as s:
        first = next_item(s, user)
        skip(s, user, first.assignment_id)
        second = next_item(s, user)
        assert second.assignment_id != first.assignment_id
        submit_vote(s, user, second.assignment_id, "tie", rewrite="A better line")
    with session_scope(engine) as s:
        assert progress(s, user).votes_today == 1
        assert undo_last_vote(s, user)
        assert not undo_last_vote(s, user)  # only the latest vote
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Vote)) == 0
        assert s.scalar(select(func.count()).select_from(Example).where(Example.source == "rewrite")) == 0
        assert next_item(s, user).assignment_id == second.assignment_id  # the undone pair comes back first
        assert progress(s, user) == Progress(votes_today=0, pairs_left=5)  # 6 pairs, one skipped


def test_undo_window(leeds):
    engine, user = leeds
    with session_scope(engine) as s:
        submit_vote(s, user, next_item(s, user).assignment_id, "left")
    with session_scope(engine) as s:
        assert not undo_last_vote(s, user, now=datetime.now(timezone.utc) + timedelta(minutes=10))


def test_authorization_is_enforced_in_the_functions(leeds):
    engine, user = leeds
    perth = login_as(engine, "pia", regions=["en-AU-perth"])
    lead = login_as(engine, "leo", roles=["lead"])
    with session_scope(engine) as s:
        item = next_item(s, user)
        with pytest.raises(PermissionDenied, match="another reviewer"):
            submit_vote(s, perth, item.assignment_id, "left")
        with pytest.raises(PermissionDenied, match="reviewer"):
            next_item(s, lead)
        with pytest.raises(AuthError, match="log in"):
            next_item(s, None)
        with pytest.raises(ValidationError):
            submit_vote(s, user, item.assignment_id, "middle")
        perth_item = next_item(s, perth)
        assert perth_item.region_code == "en-AU-perth"
    expired = type(user)(**{**user.__dict__, "expires_at": datetime.now(timezone.utc) - timedelta(seconds=1)})
    with session_scope(engine) as s:
        with pytest.raises(AuthError, match="expired"):
            next_item(s, expired)


def test_concurrent_assignment_on_postgres(pg_engine, mini_data):
    """Four tabs of one reviewer asking for a pair at the same moment on PostgreSQL: no errors, no duplicates."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from collect.ingest import import_examples, import_regions
    from collect.tags import ensure_default_tags

    with session_scope(pg_engine) as s:
        ensure_default_tags(s)
        import_regions(s, mini_data / "en-GB-leeds" / "region.json")
        s.flush()
        import_examples(s, mini_data / "en-GB-leeds" / "examples.jsonl", region="en-GB-leeds")
    make_pairs(pg_engine, "en-GB-leeds", 3)
    user = login_as(pg_engine, "lee", regions=["en-GB-leeds"])
    barrier = Barrier(4)

    def tab(_):
        with session_scope(pg_engine) as s:
            barrier.wait()
            return next_assignment(s, user.id, user.region_ids).pair_id

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(tab, range(4), timeout=60))
    assert all(got)
    with session_scope(pg_engine) as s:
        pairs = s.scalars(select(Assignment.pair_id).where(Assignment.user_id == user.id)).all()
        assert len(pairs) == len(set(pairs)) and set(got) <= set(pairs)


def test_comments_are_stored_pii_scrubbed(leeds):
    engine, user = leeds
    with session_scope(engine) as s:
        item = next_item(s, user)
        submit_vote(s, user, item.assignment_id, "left", comment="Ring Jo on 0113 496 0000 or jo@example.com")
    with session_scope(engine) as s:
        comment = s.scalar(select(Vote.comment))
    assert comment == "Ring Jo on [PHONE] or [EMAIL]"


@pytest.mark.parametrize("bad", [
    {"tags": ["local_idiom", "no_such_tag"]},
    {"strength": "huge"},
    {"rewrite_side": "middle"},  # refused even where the choice decides the side
    {"choice": "tie", "rewrite": "A better line", "rewrite_side": "up"},
])
def test_bad_input_is_rejected_and_nothing_is_written(leeds, bad):
    engine, user = leeds
    with session_scope(engine) as s:
        item = next_item(s, user)
    with session_scope(engine) as s:
        with pytest.raises(ValidationError):
            submit_vote(s, user, item.assignment_id, **({"choice": "left"} | bad))
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Vote)) == 0
        assert s.scalar(select(func.count()).select_from(Example).where(Example.source == "rewrite")) == 0
        assert not s.get(Assignment, item.assignment_id).voted
        assert next_item(s, user).assignment_id == item.assignment_id  # still waiting for a vote


def test_skip_refuses_a_voted_assignment(loaded):
    """Skipping a voted pair would free its place: a second reviewer would get a pair that has its one vote."""
    (pair_id,) = make_pairs(loaded, "en-GB-leeds", 1)
    first, second = (login_as(loaded, name, regions=["en-GB-leeds"]) for name in ("lee", "lou"))
    with session_scope(loaded) as s:
        item = next_item(s, first)
        submit_vote(s, first, item.assignment_id, "left")
    with session_scope(loaded) as s:
        with pytest.raises(ValidationError, match="already voted"):
            skip(s, first, item.assignment_id)
    with session_scope(loaded) as s:
        assert s.get(Pair, pair_id).assigned == 1 and not s.get(Assignment, item.assignment_id).skipped
        assert next_item(s, second) is None


def test_a_skipped_assignment_cannot_be_voted(leeds):
    """A stale tab's vote on a pair skipped in another tab: its place went back to the pool, so it is refused."""
    engine, user = leeds
    with session_scope(engine) as s:
        item = next_item(s, user)
        skip(s, user, item.assignment_id)
    with session_scope(engine) as s:
        with pytest.raises(ValidationError, match="skipped"):
            submit_vote(s, user, item.assignment_id, "left")
        assert s.scalar(select(func.count()).select_from(Vote)) == 0


def test_a_reviewer_moved_out_of_a_region_can_neither_vote_nor_undo_there(leeds):
    engine, user = leeds  # ``user`` keeps the regions it logged in with, as a session that has not refreshed
    with session_scope(engine) as s:
        voted = next_item(s, user)
        submit_vote(s, user, voted.assignment_id, "left")
        waiting = next_item(s, user)
    with session_scope(engine) as s:
        s.scalar(select(User).where(User.id == user.id)).regions = []  # an admin takes Leeds away
    with session_scope(engine) as s:
        assert last_undoable(s, user) is None
        assert not undo_last_vote(s, user)
        with pytest.raises(PermissionDenied, match="does not review this pair's region"):
            submit_vote(s, user, waiting.assignment_id, "right")
        with pytest.raises(PermissionDenied, match="does not review this pair's region"):
            skip(s, user, waiting.assignment_id)
    with session_scope(engine) as s:
        assert s.scalars(select(Vote.pair_id)).all() == [s.get(Assignment, voted.assignment_id).pair_id]
        assert not s.get(Assignment, waiting.assignment_id).skipped


def test_racing_submits_on_postgres_record_one_vote(pg_engine, mini_data):
    """Two tabs submitting the same assignment at the same moment: one vote, and both are told its id."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from tests.conftest import load_mini

    load_mini(pg_engine, mini_data, ("en-GB-leeds",))
    make_pairs(pg_engine, "en-GB-leeds", 1)
    user = login_as(pg_engine, "lee", regions=["en-GB-leeds"])
    with session_scope(pg_engine) as s:
        assignment_id = next_item(s, user).assignment_id
    barrier = Barrier(2)

    def tab(choice):
        with session_scope(pg_engine) as s:
            barrier.wait()
            return submit_vote(s, user, assignment_id, choice, tags=["local_idiom"])

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(tab, ["left", "right"], timeout=60))
    assert results[0].vote_id == results[1].vote_id
    assert sorted(r.duplicate for r in results) == [False, True]
    with session_scope(pg_engine) as s:
        assert s.scalar(select(func.count()).select_from(Vote)) == 1
        assert s.get(Assignment, assignment_id).voted


def test_pairs_left_is_counted_up_to_the_cap(leeds, monkeypatch):
    engine, user = leeds
    monkeypatch.setattr(review, "PROGRESS_CAP", 4)
    with session_scope(engine) as s:
        capped = progress(s, user)
    assert (capped.pairs_left, capped.more, capped.pairs_left_text) == (4, True, "4+")
    monkeypatch.setattr(review, "PROGRESS_CAP", 6)
    with session_scope(engine) as s:
        exact = progress(s, user)
    assert (exact.pairs_left, exact.more, exact.pairs_left_text) == (6, False, "6")
