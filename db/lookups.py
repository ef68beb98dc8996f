"""Rows by their public name, or a NotFound that names what exists: the one way every layer looks them up.

``align.registry.get_version`` does the same for model versions; regions live here, below ``collect``, because
imports, accounts and simulated reviewers need them as much as rounds and serving do.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import NotFound
from db.models import Region


def _known(session: Session) -> str:
    return ", ".join(session.scalars(select(Region.code).order_by(Region.code))) or "none"


def get_region(session: Session, code: str) -> Region:
    """The region with ``code``, or a NotFound listing the known codes."""
    region = session.scalar(select(Region).where(Region.code == code))
    if region is None:
        raise NotFound(f"unknown region {code!r}; known: {_known(session)}")
    return region


def get_regions(session: Session, codes: Iterable[str]) -> list[Region]:
    """The regions with ``codes``, in the order given (duplicates once), or a NotFound naming the first unknown."""
    wanted = list(dict.fromkeys(codes))
    found = {r.code: r for r in session.scalars(select(Region).where(Region.code.in_(wanted)))}
    for code in wanted:
        if code not in found:
            raise NotFound(f"unknown region {code!r}; known: {_known(session)}")
    return [found[code] for code in wanted]
