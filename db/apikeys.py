"""API keys for the generation API: stored as SHA-256 hashes, each scoped to regions (or to all of them)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import NotFound, ValidationError
from db.models import ApiKey, Region

PREFIX = "ga_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Scope:
    name: str
    regions: frozenset[str]
    all_regions: bool

    def allows(self, region: str) -> bool:
        return self.all_regions or region in self.regions


def create_key(session: Session, name: str, regions: list[str], all_regions: bool = False) -> str:
    """A new key for ``regions`` (or all); returns the secret, which is shown once and stored only as a hash."""
    if not name.strip():
        raise ValidationError("name: a key needs a name")
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise ValidationError(f"name: a key called {name!r} exists already")
    if not regions and not all_regions:
        raise ValidationError("regions: give at least one --region, or --all-regions")
    known = set(session.scalars(select(Region.code).where(Region.code.in_(regions))))
    if unknown := sorted(set(regions) - known):
        raise NotFound(f"regions: {', '.join(unknown)} do not exist")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, key_hash=_hash(token), prefix=token[:10], regions=sorted(set(regions)),
                       all_regions=all_regions))
    session.flush()
    return token


def authenticate(session: Session, token: str) -> Scope | None:
    """The scope of an active key, or None for an unknown or revoked one."""
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == _hash(token), ApiKey.revoked_at.is_(None)))
    if key is None:
        return None
    return Scope(key.name, frozenset(key.regions or []), key.all_regions)


def revoke_key(session: Session, name: str) -> None:
    key = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if key is None:
        raise NotFound(f"no API key called {name!r}")
    key.revoked_at = key.revoked_at or datetime.now(timezone.utc)
    session.flush()


def list_keys(session: Session) -> list[dict]:
    return [{"name": k.name, "prefix": k.prefix, "regions": "all" if k.all_regions else ", ".join(k.regions or []),
             "revoked": k.revoked_at is not None} for k in session.scalars(select(ApiKey).order_by(ApiKey.id))]
