"""Admin actions as the Admin page calls them: each checks that the acting user is an admin."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from collect.accounts import create_user, list_users, new_password, reset_password, set_access
from collect.auth import CurrentUser, require
from collect.tags import add_tag, list_tags, remove_tag
from db.models import Region, User


def users_table(session: Session, actor: CurrentUser) -> list[dict]:
    require(actor, "admin")
    return [{"username": u.username, "roles": ", ".join(sorted(u.role_names)),
             "regions": ", ".join(r.code for r in u.regions), "active": u.is_active,
             "locked": u.locked_until is not None} for u in list_users(session)]


def add_user(session: Session, actor: CurrentUser, username: str, roles: list[str], regions: list[str],
             password: str | None = None) -> str:
    """Create a user; returns the password (generated when not given) so the page can show it once."""
    require(actor, "admin")
    password = password or new_password()
    create_user(session, username, password, roles, regions)
    return password


def update_user(session: Session, actor: CurrentUser, username: str, roles: list[str], regions: list[str],
                active: bool) -> User:
    require(actor, "admin")
    return set_access(session, username, roles=roles, regions=regions, active=active)


def reset_user_password(session: Session, actor: CurrentUser, username: str) -> str:
    require(actor, "admin")
    password = new_password()
    reset_password(session, username, password)
    return password


def regions_table(session: Session, actor: CurrentUser) -> list[dict]:
    require(actor, "admin")
    return [{"code": r.code, "name": r.name, "locale": r.locale, "currency": r.currency,
             "local terms": len(r.local_terms), "avoid terms": len(r.avoid_terms)}
            for r in session.scalars(select(Region).order_by(Region.code))]


def tags_table(session: Session, actor: CurrentUser) -> list[dict]:
    require(actor, "admin")
    return [{"name": t.name, "label": t.label, "description": t.description} for t in list_tags(session)]


def add_vocabulary_tag(session: Session, actor: CurrentUser, name: str, label: str, description: str = "") -> None:
    require(actor, "admin")
    add_tag(session, name, label, description)


def remove_vocabulary_tag(session: Session, actor: CurrentUser, name: str) -> None:
    require(actor, "admin")
    remove_tag(session, name)
