"""Accounts: creating users with argon2-hashed passwords, roles and regions."""

from __future__ import annotations

import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.errors import NotFound, ValidationError
from db.lookups import get_regions
from db.models import AuditEvent, Region, Role, User, UserRole

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@cache
def dummy_hash() -> str:
    """A hash of no one's password, made like real ones, so checking an unknown user costs what a real one does."""
    return _hasher.hash(secrets.token_urlsafe(16))


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_password() -> str:
    """A random password that is easy to type from a terminal (URL-safe, 16 characters)."""
    return secrets.token_urlsafe(12)


def _roles(names: list[str]) -> list[Role]:
    valid = [r.value for r in Role]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise ValidationError(f"roles {bad or names} invalid; choose from {valid}")
    return [Role(n) for n in dict.fromkeys(names)]


def _regions(session: Session, codes: list[str]) -> list[Region]:
    return get_regions(session, codes)


def create_user(session: Session, username: str, password: str, roles: list[str], regions: list[str] = ()) -> User:
    """Create a user; fails clearly if the name is taken, a role or region is unknown, or the password is short."""
    username = username.strip()
    if not username:
        raise ValidationError("username is empty")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ValidationError(f"user {username!r} already exists")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"password for {username!r} is shorter than {MIN_PASSWORD_LENGTH} characters")
    user = User(username=username, password_hash=hash_password(password),
                roles=[UserRole(role=r) for r in _roles(list(roles))], regions=_regions(session, list(regions)))
    session.add(user)
    session.flush()
    session.add(AuditEvent(action="create_user", entity="user", entity_id=user.id,
                           details={"username": username, "roles": list(roles), "regions": list(regions)}))
    return user


def reset_password(session: Session, username: str, password: str) -> User:
    """Give ``username`` a new password, lift any login lock and end the user's live sessions."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"unknown user {username!r}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"password for {username!r} is shorter than {MIN_PASSWORD_LENGTH} characters")
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    user.session_epoch = User.session_epoch + 1  # in SQL, so a concurrent change cannot undo it
    session.add(AuditEvent(action="reset_password", entity="user", entity_id=user.id, details={"username": username}))
    session.flush()
    return user


def set_access(session: Session, username: str, roles: list[str] | None = None, regions: list[str] | None = None,
               active: bool | None = None) -> User:
    """Change a user's roles, regions and/or active flag (None leaves that part as it is).

    Deactivating ends the user's live sessions; role and region changes reach them at their next page load.
    """
    user = session.scalar(select(User).where(User.username == username, User.is_system.is_(False)))
    if user is None:
        raise NotFound(f"unknown user {username!r}")
    details: dict = {"username": username}
    if roles is not None:
        wanted = _roles(list(roles))
        user.roles = [r for r in user.roles if r.role in wanted] + [
            UserRole(role=r) for r in wanted if r not in {x.role for x in user.roles}]
        details["roles"] = [r.value for r in wanted]
    if regions is not None:
        user.regions = _regions(session, list(regions))
        details["regions"] = list(regions)
    if active is not None:
        user.is_active = active
        if not active:
            user.session_epoch = User.session_epoch + 1
        details["active"] = active
    session.add(AuditEvent(action="set_access", entity="user", entity_id=user.id, details=details))
    session.flush()
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).where(User.is_system.is_(False)).order_by(User.username)))



def usernames(session: Session) -> set[str]:
    """Every username taken, system accounts included."""
    return set(session.scalars(select(User.username)))


def system_account(session: Session, username: str, roles: list[str]) -> User:
    """The system account ``username`` with ``roles``, made on first use; it has no password, so it never logs in."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        try:
            with session.begin_nested():  # two first commands at once: one creates it, the other reads it
                user = User(username=username, password_hash="!", is_system=True,
                            roles=[UserRole(role=r) for r in _roles(list(roles))])
                session.add(user)
        except IntegrityError:
            user = session.scalar(select(User).where(User.username == username))
    return user
