"""Alembic is the only source of the schema: it must match the models on SQLite and PostgreSQL, both ways."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from db import migrate
from db.errors import DatabaseUnavailable
from db.models import Base
from db.session import make_engine


def _diff(engine):
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_upgrade_matches_models_and_downgrade_empties(backend, request):
    url = request.getfixturevalue("pg_url") if backend == "postgres" else f"sqlite:///{request.getfixturevalue('tmp_path')}/m.db"
    engine = make_engine(url)
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert _diff(engine) == []
    tables = set(inspect(engine).get_table_names())
    assert {"regions", "users", "prompts", "examples", "model_versions", "generations", "pairs", "votes",
            "assignments", "rounds", "jobs", "audit_events", "tags"} <= tables
    migrate.upgrade(engine)  # idempotent
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_sqlite_pragmas(engine):
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_unmigrated_database_is_reported(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(DatabaseUnavailable, match="geoalign db upgrade"):
        migrate.require_current(engine)


def test_unreachable_database_is_reported():
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/nothing")
    with pytest.raises(DatabaseUnavailable, match="cannot reach"):
        migrate.upgrade(engine)
