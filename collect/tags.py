"""The annotation tag vocabulary: used on gold examples and as reasons on votes."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.errors import NotFound, ValidationError
from db.models import Tag, example_tags, vote_tags

_SLUG = re.compile(r"[a-z][a-z0-9_]{1,62}")

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


def list_tags(session: Session) -> list[Tag]:
    return list(session.scalars(select(Tag).order_by(Tag.name)))


def add_tag(session: Session, name: str, label: str, description: str = "") -> Tag:
    """Add a tag to the vocabulary; the name must be a new lowercase slug."""
    name = name.strip()
    if not _SLUG.fullmatch(name):
        raise ValidationError(f"tag name {name!r} must be a lowercase slug (letters, digits, underscores)")
    if not label.strip():
        raise ValidationError(f"tag {name!r} needs a label")
    if session.scalar(select(Tag.id).where(Tag.name == name)) is not None:
        raise ValidationError(f"tag {name!r} already exists")
    tag = Tag(name=name, label=label.strip(), description=description.strip())
    session.add(tag)
    session.flush()
    return tag


def remove_tag(session: Session, name: str) -> None:
    """Remove a tag that no example or vote uses (used tags are history and stay)."""
    tag = session.scalar(select(Tag).where(Tag.name == name))
    if tag is None:
        raise NotFound(f"unknown tag {name!r}")
    used = session.scalar(select(func.count()).select_from(example_tags).where(example_tags.c.tag_id == tag.id))
    used += session.scalar(select(func.count()).select_from(vote_tags).where(vote_tags.c.tag_id == tag.id))
    if used:
        raise ValidationError(f"tag {name!r} is used {used} times and cannot be removed")
    session.delete(tag)
    session.flush()
