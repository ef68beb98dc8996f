"""Logging in, sessions and role checks. Page functions call ``require`` so authorization never rests on hidden pages.

Failed logins are rate-limited per account: after ``MAX_FAILURES`` in a row the account is locked for
``LOCK_MINUTES``. Every refusal (unknown user, wrong password, locked, deactivated or system account) gives the same
message after the same argon2 work, so neither the error nor its timing says whether a username exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import case, literal, or_, select, update
from sqlalchemy.orm import Session

from collect.accounts import dummy_hash, verify_password
from db.errors import AuthError, PermissionDenied
from db.models import AuditEvent, User
from db.settings import get_settings

MAX_FAILURES = 5
LOCK_MINUTES = 15
LOGIN_FAILED = (f"invalid username or password, or the account is locked or deactivated (after {MAX_FAILURES} "
                f"failed attempts an account is locked for {LOCK_MINUTES} minutes; an admin can reset it)")
SESSION_ENDED = "your session ended because your password or access changed: please log in again"


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class CurrentUser:
    """The logged-in user as plain data (no ORM row lives in the Streamlit session)."""

    id: int
    username: str
    roles: frozenset[str]
    regions: tuple[str, ...]  # region codes, sorted
    region_ids: tuple[int, ...]
    expires_at: datetime
    session_epoch: int = 0  # the user's epoch at login: a credential change bumps it and ends this session

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def expired(self) -> bool:
        return _now() >= self.expires_at


def _current(user: User, now: datetime) -> CurrentUser:
    regions = sorted(user.regions, key=lambda r: r.code)
    return CurrentUser(id=user.id, username=user.username, roles=frozenset(user.role_names),
                       regions=tuple(r.code for r in regions), region_ids=tuple(r.id for r in regions),
                       expires_at=now + timedelta(minutes=get_settings().session_minutes),
                       session_epoch=user.session_epoch)


def act_as_system(user: User) -> CurrentUser:
    """A CurrentUser for a system account (importer, simulated reviewer), which can never log in itself."""
    if not user.is_system:
        raise PermissionDenied(f"{user.username} is a person's account; it must log in")
    return _current(user, _now())


def _claim_attempt(session: Session, username: str, now: datetime) -> tuple[int, bool] | None:
    """Count one login attempt before its password is checked: (user id, whether this attempt locked the account),
    or None when no person has that name or the account is locked.

    One UPDATE, so concurrent attempts cannot lose counts: at most ``MAX_FAILURES`` attempts per lock period
    get a password check, however many arrive at once. A success resets the count.
    """
    reached = User.failed_logins + 1 >= MAX_FAILURES
    until = literal(now + timedelta(minutes=LOCK_MINUTES), User.locked_until.type)
    row = session.execute(
        update(User)
        .where(User.username == username, User.is_system.is_(False),
               or_(User.locked_until.is_(None), User.locked_until <= now))
        .values(failed_logins=case((reached, 0), else_=User.failed_logins + 1),
                locked_until=case((reached, until), else_=None))
        .returning(User.id, User.locked_until)
        .execution_options(synchronize_session=False)
    ).first()
    # committed before the slow password check, so concurrent attempts see it (and SQLite's write lock is free)
    session.commit()
    return None if row is None else (row.id, row.locked_until is not None)


def login(session: Session, username: str, password: str, now: datetime | None = None) -> CurrentUser:
    """Check credentials and return the session's user; any refusal raises AuthError(LOGIN_FAILED)."""
    now = now or _now()
    username = username.strip()
    claim = _claim_attempt(session, username, now)
    user = session.scalar(select(User).where(User.username == username, User.is_system.is_(False)))
    # always exactly one argon2 check: an unknown name costs what a wrong password does
    password_ok = verify_password(user.password_hash if user is not None else dummy_hash(), password)
    if claim is None or user is None or not password_ok or not user.is_active:
        if claim is not None and claim[1]:
            session.add(AuditEvent(user_id=claim[0], action="login_locked", entity="user", entity_id=claim[0]))
            session.commit()  # the caller's transaction ends in the error below
        raise AuthError(LOGIN_FAILED)
    session.execute(update(User).where(User.id == user.id).values(failed_logins=0, locked_until=None)
                    .execution_options(synchronize_session=False))
    session.add(AuditEvent(user_id=user.id, action="login", entity="user", entity_id=user.id))
    session.flush()
    return _current(user, now)


def refresh(session: Session, current: CurrentUser) -> CurrentUser:
    """Re-read roles and regions (an admin may have changed them); the session's expiry is kept.

    Refuses a session from before the user's last credential change (password reset, deactivation).
    """
    user = session.get(User, current.id)
    if user is None or not user.is_active:
        raise AuthError("this account no longer exists or is deactivated")
    if user.session_epoch != current.session_epoch:
        raise AuthError(SESSION_ENDED)
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
