"""Running totals of votes, so the leads' dashboard reads thousands of rows instead of millions.

Votes are summed per day into the ``rollup_*`` tables once they are older than the undo window (a vote that can
still be withdrawn is never summed). ``refresh`` adds the votes between the last summed id and the newest such
vote with one ``INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE`` per table; the same SELECTs, over the votes
after the watermark, give the live tail that ``db.queries`` adds to the totals. Claiming a range is a conditional
update of the watermark, so two dashboards refreshing at once never sum a vote twice.

Votes a ranking implies (``Vote.ranking_id``) enter the comparison totals at their weight (2/k each, see
``rewards.ranking``), so ``votes`` there is a sum of weights. The reviewer, seconds and tag totals describe how a
person votes pairwise (which side they pick, how long one vote takes, why they preferred a side) and leave those
votes out: a ranking has no left side, one time for all its implied pairs, and no reasons.

Changes that rewrite history (a pair marked or unmarked gold after it was voted on) call ``request_rebuild``: the
next refresh recomputes every total from the votes.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Date, Select, and_, case, cast, delete, func, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import (
    Choice,
    Pair,
    RollupComparison,
    RollupReviewer,
    RollupSeconds,
    RollupState,
    RollupTag,
    Vote,
    vote_tags,
)

GRACE = timedelta(minutes=3)  # longer than collect.review.UNDO_SECONDS: summed votes are final


def day_of(session: Session, column):
    """The UTC calendar day of a timestamp column, as the backend spells it."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


def _range(lo: int, hi: int | None):
    return and_(Vote.id > lo, Vote.id <= hi) if hi is not None else Vote.id > lo


def _pairwise():
    """Votes cast on a pair shown as a pair (not implied by a ranking)."""
    return Vote.ranking_id.is_(None)


def _count_if(condition):
    return func.sum(case((condition, 1), else_=0))


def comparisons(session: Session, lo: int, hi: int | None) -> Select:
    """Summed vote weights between two different versions on non-gold pairs, per (day, region, model_a, model_b,
    choice): a pairwise vote counts 1, each outcome a ranking of k implies 2/k."""
    day = day_of(session, Vote.created_at).label("day")
    return (select(day, Vote.region_id, Pair.model_a_id, Pair.model_b_id, Vote.choice,
                   func.sum(Vote.weight).label("votes"))
            .join(Pair, Vote.pair_id == Pair.id)
            .where(_range(lo, hi), ~Pair.is_gold, Pair.model_a_id != Pair.model_b_id)
            .group_by(day, Vote.region_id, Pair.model_a_id, Pair.model_b_id, Vote.choice))


def reviewers(session: Session, lo: int, hi: int | None) -> Select:
    """Per (day, region, reviewer, source): votes, decisive (a/b) ones, left-side picks, gold votes, correct ones."""
    day = day_of(session, Vote.created_at).label("day")
    decisive = Vote.choice.in_([Choice.a, Choice.b])
    gold = and_(Pair.is_gold, Pair.gold_choice.is_not(None))
    return (select(day, Vote.region_id, Vote.user_id, Vote.source, func.count().label("votes"),
                   _count_if(decisive).label("decisive_votes"),
                   _count_if(and_(decisive, Vote.choice == Vote.shown_left)).label("left_picks"),
                   _count_if(gold).label("gold_votes"),
                   _count_if(and_(gold, Vote.choice == Pair.gold_choice)).label("gold_correct"))
            .join(Pair, Vote.pair_id == Pair.id).where(_range(lo, hi), _pairwise())
            .group_by(day, Vote.region_id, Vote.user_id, Vote.source))


def seconds(session: Session, lo: int, hi: int | None) -> Select:
    """Per reviewer: a histogram of seconds per vote in tenths of a second, to the tenth below 10 s and to the
    second above (where no quality threshold lives), so a reviewer has a couple of hundred buckets at most.
    Import votes have no time."""
    taken = Vote.seconds_taken
    tenths = cast(case((taken < 10, func.round(taken * 10)), else_=func.round(taken) * 10),
                  RollupSeconds.tenths.type).label("tenths")
    return (select(Vote.user_id, tenths, func.count().label("votes"))
            .where(_range(lo, hi), Vote.seconds_taken.is_not(None), Vote.source != "import", _pairwise())
            .group_by(Vote.user_id, tenths))


def tags(session: Session, lo: int, hi: int | None) -> Select:
    """Reason tags per (region, version, tag): a decisive vote's tags explain its winner, a tie's or "both bad"
    vote's tags go to both versions."""
    sides = [select(Vote.region_id, model.label("model_id"), vote_tags.c.tag_id)
             .join(Pair, Vote.pair_id == Pair.id).join(vote_tags, vote_tags.c.vote_id == Vote.id)
             .where(_range(lo, hi), Vote.choice != loser, ~Pair.is_gold, _pairwise())
             for model, loser in ((Pair.model_a_id, Choice.b), (Pair.model_b_id, Choice.a))]
    both = union_all(*sides).subquery()
    return (select(both.c.region_id, both.c.model_id, both.c.tag_id, func.count().label("votes"))
            .group_by(both.c.region_id, both.c.model_id, both.c.tag_id))


ROLLUPS = [  # table, its SELECT, the columns that are summed
    (RollupComparison, comparisons, ["votes"]),
    (RollupReviewer, reviewers, ["votes", "decisive_votes", "left_picks", "gold_votes", "gold_correct"]),
    (RollupSeconds, seconds, ["votes"]),
    (RollupTag, tags, ["votes"]),
]


def _add(session: Session, table, query: Select, summed: list[str]) -> None:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    columns = [c.name for c in query.selected_columns]
    stmt = insert(table.__table__).from_select(columns, query)
    keys = [c.name for c in table.__table__.primary_key.columns]
    stmt = stmt.on_conflict_do_update(index_elements=keys,
                                      set_={c: table.__table__.c[c] + stmt.excluded[c] for c in summed})
    session.execute(stmt)


def _state(session: Session) -> RollupState:
    state = session.get(RollupState, 1)
    if state is None:
        try:
            with session.begin_nested():
                session.add(RollupState(id=1, last_vote_id=0, rebuild=False))
        except IntegrityError:
            pass  # another process created it a moment ago
        state = session.get(RollupState, 1)
    return state


def watermark(session: Session) -> int:
    """The highest vote id already in the totals (0 before the first refresh, or while a rebuild is pending)."""
    state = session.get(RollupState, 1)
    return 0 if state is None or state.rebuild else state.last_vote_id


def request_rebuild(session: Session) -> None:
    """Recompute every total from the votes at the next refresh (after history changed)."""
    _state(session).rebuild = True
    session.flush()


def refresh(session: Session, now: datetime | None = None) -> int:
    """Sum the votes that became final since the last refresh; returns the new watermark (highest summed id)."""
    now = now or datetime.now(timezone.utc)
    state = _state(session)
    if state.rebuild:
        claimed = session.execute(update(RollupState).where(RollupState.id == 1, RollupState.rebuild.is_(True))
                                  .values(rebuild=False, last_vote_id=0, updated_at=now)).rowcount
        if claimed == 1:
            for table, _, _ in ROLLUPS:
                session.execute(delete(table))
        session.refresh(state)
    low = state.last_vote_id
    high = session.scalar(select(func.max(Vote.id)).where(Vote.id > low, Vote.created_at <= now - GRACE))
    if high is None:
        return low
    claimed = session.execute(update(RollupState).where(RollupState.id == 1, RollupState.last_vote_id == low)
                              .values(last_vote_id=high, updated_at=now)).rowcount
    if claimed != 1:
        session.refresh(state)
        return state.last_vote_id  # another refresh took this range
    for table, query, summed in ROLLUPS:
        _add(session, table, query(session, low, high), summed)
    session.flush()
    session.refresh(state)
    return high


def comparison_totals(session: Session, region_id: int, versions: list[tuple[int, int]]) -> list[tuple]:
    """(model_a, model_b, choice, weighted votes) for the given comparisons (either orientation) in one region: the
    running totals plus the votes after the watermark.
    What the scheduler needs, in milliseconds at millions of votes."""
    if not versions:
        return []
    wanted = {frozenset(c) for c in versions}
    ids = sorted({m for c in versions for m in c})
    t = RollupComparison
    rolled = session.execute(
        select(t.model_a_id, t.model_b_id, t.choice, func.sum(t.votes))
        .where(t.region_id == region_id, t.model_a_id.in_(ids), t.model_b_id.in_(ids))
        .group_by(t.model_a_id, t.model_b_id, t.choice)).all()
    tail = comparisons(session, watermark(session), None).where(Vote.region_id == region_id)
    fresh = session.execute(tail).all()
    rows = [(a, b, c, float(n)) for a, b, c, n in rolled]
    rows += [(a, b, getattr(c, "value", c), float(n)) for _, _, a, b, c, n in fresh]
    return [r for r in rows if frozenset(r[:2]) in wanted]
