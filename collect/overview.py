"""Counts per region for the home page and ``geoalign status``: what data there is and what awaits review."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Example, ModelVersion, Pair, Prompt, Region, Vote


def region_overview(session: Session) -> list[dict]:
    """One row per region: prompts, gold examples, pairs, votes and pairs still without a vote."""
    def per_region(stmt) -> dict[int, int]:
        return dict(session.execute(stmt).all())

    prompts = per_region(select(Prompt.region_id, func.count()).group_by(Prompt.region_id))
    examples = per_region(select(Example.region_id, func.count()).group_by(Example.region_id))
    pairs = per_region(select(Pair.region_id, func.count()).group_by(Pair.region_id))
    votes = per_region(select(Vote.region_id, func.count()).group_by(Vote.region_id))
    unvoted = per_region(
        select(Pair.region_id, func.count()).where(~select(Vote.id).where(Vote.pair_id == Pair.id).exists())
        .group_by(Pair.region_id)
    )
    return [
        {"region": r.code, "name": r.name, "prompts": prompts.get(r.id, 0), "examples": examples.get(r.id, 0),
         "pairs": pairs.get(r.id, 0), "votes": votes.get(r.id, 0), "pairs_waiting": unvoted.get(r.id, 0)}
        for r in session.scalars(select(Region).order_by(Region.code))
    ]


def model_version_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ModelVersion)) or 0


def region_codes(session: Session) -> list[str]:
    return list(session.scalars(select(Region.code).order_by(Region.code)))
