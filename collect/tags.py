"""The annotation tag vocabulary: used on gold examples and as reasons on votes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Tag

DEFAULT_TAGS: dict[str, tuple[str, str]] = {
    "local_idiom": ("Local idiom", "Uses a phrase or word people here actually say"),
    "cultural_reference": ("Cultural reference", "Refers to a local event, tradition, team, food or custom"),
    "place_name": ("Place name", "Names a local neighbourhood, street, landmark or nearby destination"),
    "seasonal": ("Seasonal", "Right for the month, hemisphere and climate"),
    "positive_local_sentiment": ("Positive local sentiment", "Shows warmth and pride about the place"),
    "wrong_region_reference": ("Wrong-region reference", "Mentions something that belongs to another market"),
    "tone_off": ("Tone off", "Register or voice does not fit the audience"),
}


def ensure_default_tags(session: Session) -> int:
    """Add any missing default tags (existing ones, possibly edited, are left alone); returns how many were added."""
    have = set(session.scalars(select(Tag.name)))
    missing = [Tag(name=n, label=lbl, description=d) for n, (lbl, d) in DEFAULT_TAGS.items() if n not in have]
    session.add_all(missing)
    session.flush()
    return len(missing)
