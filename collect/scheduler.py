"""Which pair a reviewer sees next. One function, ``next_assignment``, so a smarter policy replaces only this module.

Current policy: first any pair already assigned to the reviewer and still open (so a reload or a second tab shows
the same pair), else the oldest pair in the reviewer's regions that they have never been assigned.
"""

from __future__ import annotations

import random

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Assignment, Pair, Side, Vote


def open_assignment(session: Session, user_id: int, region_ids: tuple[int, ...]) -> Assignment | None:
    """The reviewer's oldest assignment that is neither voted nor skipped, in one of their current regions."""
    voted = exists().where(Vote.pair_id == Assignment.pair_id, Vote.user_id == user_id)
    return session.scalar(
        select(Assignment).join(Pair, Assignment.pair_id == Pair.id)
        .where(Assignment.user_id == user_id, Assignment.skipped.is_(False), ~voted, Pair.region_id.in_(region_ids))
        .order_by(Assignment.created_at, Assignment.id).limit(1)
    )


def unseen_pairs(user_id: int, region_ids: tuple[int, ...]):
    """A query of the pairs in ``region_ids`` never assigned to the reviewer, oldest first."""
    seen = exists().where(Assignment.pair_id == Pair.id, Assignment.user_id == user_id)
    return select(Pair.id).where(Pair.region_id.in_(region_ids), ~seen).order_by(Pair.created_at, Pair.id)


def next_assignment(session: Session, user_id: int, region_ids: tuple[int, ...],
                    rng: random.Random | None = None) -> Assignment | None:
    """The assignment to show now, creating one (with a random side shown left) if needed; None when done."""
    if not region_ids:
        return None
    current = open_assignment(session, user_id, region_ids)
    if current is not None:
        return current
    rng = rng or random.SystemRandom()
    for _ in range(3):  # a concurrent request (second tab) may claim the same pair: then take the next one
        pair_id = session.scalar(unseen_pairs(user_id, region_ids).limit(1))
        if pair_id is None:
            break  # all taken, possibly by a concurrent tab that just created this reviewer's open assignment
        assignment = Assignment(pair_id=pair_id, user_id=user_id, shown_left=rng.choice([Side.a, Side.b]))
        try:
            with session.begin_nested():
                session.add(assignment)
            return assignment
        except IntegrityError:
            continue
    return open_assignment(session, user_id, region_ids)
