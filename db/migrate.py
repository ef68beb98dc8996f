"""Schema management: Alembic is the only way the schema is created or changed."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from db.errors import DatabaseUnavailable
from db.session import get_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic config pointing at our migrations and, if given, at ``engine``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def _with_connection(engine: Engine, fn) -> None:
    try:
        with engine.begin() as conn:
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            fn(cfg)
    except OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach database {engine.url!r}: {exc.orig}") from exc


def upgrade(engine: Engine | None = None, revision: str = "head") -> None:
    """Migrate the database up to ``revision``."""
    _with_connection(engine or get_engine(), lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine: Engine | None = None, revision: str = "base") -> None:
    """Migrate the database down to ``revision``."""
    _with_connection(engine or get_engine(), lambda cfg: command.downgrade(cfg, revision))


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine | None = None) -> str | None:
    """The revision the database is at (None for an empty database)."""
    engine = engine or get_engine()
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach database {engine.url!r}: {exc.orig}") from exc


def require_current(engine: Engine | None = None) -> None:
    """Raise a clear error unless the database is migrated to head."""
    engine = engine or get_engine()
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot read database {engine.url!r}: {exc}") from exc
    if current != head_revision():
        raise DatabaseUnavailable(
            f"database {engine.url!r} is at revision {current or 'empty'}, code expects {head_revision()}: "
            "run `geoalign db upgrade`"
        )
