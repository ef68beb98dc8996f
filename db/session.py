"""Engine and session: SQLite gets WAL, foreign keys and a busy timeout; every unit of work is one transaction."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from db.errors import ConfigError, GeoAlignError
from db.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers (the app) never block the writer (the worker)
    cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a crash loses at most the last commit
    cur.execute("PRAGMA busy_timeout=10000")  # wait for a concurrent writer instead of failing at once
    cur.close()


def make_engine(url: str, echo: bool = False) -> Engine:
    """Create an engine for ``url``; a malformed URL or missing driver becomes a ConfigError."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"DATABASE_URL {url!r} is not a valid database URL") from exc
    kwargs: dict = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False}
    else:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError, ArgumentError) as exc:
        raise ConfigError(f"DATABASE_URL {url!r}: unsupported database or driver ({exc})") from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


@lru_cache(maxsize=8)
def _engine_for(url: str, echo: bool) -> Engine:
    return make_engine(url, echo)


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the settings' DATABASE_URL)."""
    settings = get_settings()
    return _engine_for(url or settings.database_url, settings.sql_echo)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """One transaction: commit when the block ends, roll back if it raises."""
    factory = sessionmaker(bind=engine or get_engine(), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class DatabaseUnavailable(GeoAlignError):
    """The database connection kept dropping: nothing was written, and the action can be tried again."""


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` is a lost connection (server restart, killed backend, network), not a refused statement."""
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def is_deadlock(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL breaking a lock cycle (SQLSTATE 40P01) by failing this statement: inside a
    savepoint the transaction survives it, and the statement can be given up or tried again."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == "40P01"


def in_transaction(engine: Engine | None, work: Callable[[Session], T], attempts: int = 3,
                   backoff_s: float = 0.2) -> T:
    """Run ``work(session)`` in one transaction (on ``engine``, default the process-wide one); if the connection
    drops, run it again on a fresh connection.

    Only for idempotent work (a vote, a skip: the database's unique keys make a repeat a no-op): the commit may
    have reached the server before the connection died, so the retry must be harmless either way. After
    ``attempts`` dropped connections it gives up with ``DatabaseUnavailable``, a message the page can show.
    """
    for attempt in range(1, attempts + 1):
        try:
            with session_scope(engine) as session:
                return work(session)
        except DBAPIError as exc:
            if not is_disconnect(exc):
                raise
            log.warning("database connection lost (attempt %d of %d): %s", attempt, attempts,
                        str(exc.orig or exc).splitlines()[0])
            if attempt == attempts:
                raise DatabaseUnavailable("the database connection was lost and could not be re-established: "
                                          "nothing was saved, please try again") from exc
            time.sleep(backoff_s * attempt)
    raise AssertionError("unreachable")
