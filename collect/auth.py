"""Logging in, sessions and role checks. Page functions call ``require`` so authorization never rests on hidden pages.

Failed logins are rate-limited per account: after ``MAX_FAILURES`` in a row the account is locked for
``LOCK_MINUTES``; the error never says whether the username exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from collect.accounts import verify_password
from db.errors import AuthError, PermissionDenied
from db.models import AuditEvent, User

MAX_FAILURES = 5
LOCK_MINUTES = 15
SESSION_MINUTES = int(os.environ.get("GEOALIGN_SESSION_MINUTES", "480"))  # a working day, then log in again


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes for timezone-aware columns; they were stored as UTC.
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True)
class CurrentUser:
    """The logged-in user as plain data (no ORM row lives in the Streamlit session)."""

    id: int
    username: str
    roles: frozenset[str]
    regions: tuple[str, ...]  # region codes, sorted
    region_ids: tuple[int, ...]
    expires_at: datetime

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def expired(self) -> bool:
        return _now() >= self.expires_at


def _current(user: User, now: datetime) -> CurrentUser:
    regions = sorted(user.regions, key=lambda r: r.code)
    return CurrentUser(id=user.id, username=user.username, roles=frozenset(user.role_names),
                       regions=tuple(r.code for r in regions), region_ids=tuple(r.id for r in regions),
                       expires_at=now + timedelta(minutes=SESSION_MINUTES))


def act_as_system(user: User) -> CurrentUser:
    """A CurrentUser for a system account (importer, simulated reviewer), which can never log in itself."""
    if not user.is_system:
        raise PermissionDenied(f"{user.username} is a person's account; it must log in")
    return _current(user, _now())


def login(session: Session, username: str, password: str, now: datetime | None = None) -> CurrentUser:
    """Check credentials and return the session's user; raises AuthError with a message fit for the page."""
    now = now or _now()
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None or user.is_system:
        raise AuthError("invalid username or password")
    locked_until = _aware(user.locked_until)
    if locked_until is not None and locked_until > now:
        minutes = max(1, int((locked_until - now).total_seconds() // 60) + 1)
        raise AuthError(f"too many failed attempts: try again in {minutes} minutes or ask an admin to reset")
    if not verify_password(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILURES:
            user.locked_until = now + timedelta(minutes=LOCK_MINUTES)
            user.failed_logins = 0
            session.add(AuditEvent(user_id=user.id, action="login_locked", entity="user", entity_id=user.id))
        session.commit()  # the failure must count even though the caller's transaction ends in an error
        raise AuthError("invalid username or password")
    if not user.is_active:
        raise AuthError("this account is deactivated: ask an admin")
    user.failed_logins = 0
    user.locked_until = None
    session.add(AuditEvent(user_id=user.id, action="login", entity="user", entity_id=user.id))
    session.flush()
    return _current(user, now)


def refresh(session: Session, current: CurrentUser) -> CurrentUser:
    """Re-read roles and regions (an admin may have changed them); the session's expiry is kept."""
    user = session.get(User, current.id)
    if user is None or not user.is_active:
        raise AuthError("this account no longer exists or is deactivated")
    fresh = _current(user, _now())
    return CurrentUser(**{**fresh.__dict__, "expires_at": current.expires_at})


def require(user: CurrentUser | None, *roles: str) -> CurrentUser:
    """The user, if logged in, not expired, and holding one of ``roles``; otherwise PermissionDenied/AuthError."""
    if user is None:
        raise AuthError("please log in")
    if user.expired:
        raise AuthError("your session has expired: please log in again")
    if roles and not any(user.has(r) for r in roles):
        raise PermissionDenied(f"{user.username} lacks the role {' or '.join(roles)}")
    return user
