"""What every command module shares: the engine and settings, the acting user, the help formatter, ``add`` and
``group`` for registering commands, shared arguments, one-line errors and timestamps.

A command module defines ``cmd_*`` handlers (``args -> exit code``) and a ``register(sub)`` that adds them:

    def register(sub) -> None:
        tags = group(sub, "tags", "the annotation tag vocabulary")
        add(tags, "list", cmd_tags_list, "list tags")
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from collect.accounts import new_password, system_account
from collect.auth import CurrentUser, act_as_system
from db import migrate
from db.errors import GeoAlignError
from db.session import get_engine
from db.settings import Settings, env_var, get_settings

Handler = Callable[[argparse.Namespace], int]

CLI_USER = "system-cli"  # whoever can run the CLI can reach the database anyway: it acts as an admin, audited as this


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions keep their line breaks; every option's help ends with its default."""


def settings() -> Settings:
    """The settings from the environment (``db.settings``)."""
    return get_settings()


def engine(require_migrated: bool = True) -> Engine:
    """The engine of DATABASE_URL; by default it refuses a database that is not at the code's head revision."""
    engine = get_engine(settings().database_url)
    if require_migrated:
        migrate.require_current(engine)
    return engine


def cli_actor(session: Session) -> CurrentUser:
    """The CurrentUser the CLI acts as: the system account ``system-cli`` with the admin role, made on first use."""
    return act_as_system(system_account(session, CLI_USER, ["admin"]))


# ----------------------------------------------------------------------------------------------- registering


def add(parent, name: str, handler: Handler, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """Add command ``name`` running ``handler`` to ``parent`` (a subparsers action); its --help shows
    ``description``, else ``help``."""
    p = parent.add_parser(name, help=help, description=description or help, formatter_class=Formatter)
    p.set_defaults(handler=handler)
    return p


def group(sub, name: str, help: str, description: str | None = None):
    """Add command ``name`` that only holds subcommands (``geoalign NAME SUBCOMMAND``); returns their subparsers."""
    p = sub.add_parser(name, help=help, description=description or help, formatter_class=Formatter)
    return p.add_subparsers(dest=f"{name}_command", required=True, metavar="SUBCOMMAND")


# ------------------------------------------------------------------------------------------ shared arguments


def add_region_filter(p: argparse.ArgumentParser) -> None:
    """``--region CODE`` (repeatable), none meaning every region."""
    p.add_argument("--region", action="append", help="region code (repeatable; default: all)")


def add_decoding_arguments(p: argparse.ArgumentParser) -> None:
    """The decoding and constraint options of ``generate`` and ``abtest export``."""
    p.add_argument("--ban", action="append", help="a term that must not appear (repeatable)")
    p.add_argument("--boost", action="append", help="a term to favour, e.g. a local place name (repeatable)")
    p.add_argument("--require", action="append", help="a term every output must contain, e.g. a brand name "
                   "(repeatable)")
    p.add_argument("--no-region-terms", action="store_true", help="ignore the region's own avoid/local terms")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--temperature", type=float, default=0.9)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)


def password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password from --password-env, or a generated one; and whether it was generated (to print it once)."""
    if not args.password_env:
        return new_password(), True
    value = env_var(args.password_env)
    if not value:
        raise GeoAlignError(f"environment variable {args.password_env} is empty or unset")
    return value, False


# ---------------------------------------------------------------------------------------------------- output


def error_line(message: str) -> str:
    """``message`` as the CLI's one-line error: ``geoalign: error: …`` with its whitespace collapsed."""
    return f"geoalign: error: {' '.join(message.split())}"


def when(value: datetime | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS`` in UTC (naive ones are UTC already), ``-`` for none."""
    if value is None:
        return "-"
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).strftime("%Y-%m-%d %H:%M:%S")
