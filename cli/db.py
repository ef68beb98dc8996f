"""``geoalign db upgrade|downgrade|current``: the database schema, through Alembic.

    geoalign db upgrade                 # migrate the database named by DATABASE_URL to the latest revision
    geoalign db current
"""

from __future__ import annotations

import argparse

from cli.common import add, engine, group
from db import migrate


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    db = engine(require_migrated=False)
    migrate.upgrade(db, args.revision)
    print(f"database at revision {migrate.current_revision(db)} ({db.url.render_as_string(True)})")
    return 0


def cmd_db_downgrade(args: argparse.Namespace) -> int:
    db = engine(require_migrated=False)
    migrate.downgrade(db, args.revision)
    print(f"database at revision {migrate.current_revision(db) or 'base (empty)'}")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    current = migrate.current_revision(engine(require_migrated=False))
    head = migrate.head_revision()
    print(f"current: {current or 'empty'}; head: {head}{'' if current == head else ' (run geoalign db upgrade)'}")
    return 0


def register(sub) -> None:
    """``geoalign db upgrade|downgrade|current``."""
    db = group(sub, "db", "database schema (Alembic migrations)")
    p = add(db, "upgrade", cmd_db_upgrade, "migrate the database to the latest revision")
    p.add_argument("--revision", default="head", help="target revision")
    p = add(db, "downgrade", cmd_db_downgrade, "migrate the database down (drops data!)")
    p.add_argument("--revision", required=True, help="target revision, e.g. base")
    add(db, "current", cmd_db_current, "show the database's revision and the code's head")
