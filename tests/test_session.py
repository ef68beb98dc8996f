"""``in_transaction``: a PostgreSQL backend killed mid-transaction is retried on a fresh connection; a statement the
database refuses is not retried; a connection that keeps dying ends in a clear error, with nothing written."""

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from db.models import Tag
from db.session import DatabaseUnavailable, in_transaction, is_deadlock, session_scope


def _kill(engine, pid: int) -> None:
    with engine.connect() as admin:  # another pooled connection: the one ``pid`` belongs to is checked out
        assert admin.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()


def _add_tag(session, name: str) -> None:
    session.add(Tag(name=name, label=name))
    session.flush()


def test_a_killed_backend_is_retried_and_the_write_lands_once(pg_engine):
    attempts = []

    def work(session):
        attempts.append(session.scalar(text("SELECT pg_backend_pid()")))
        _add_tag(session, "retried")
        if len(attempts) == 1:
            _kill(pg_engine, attempts[0])
        return session.scalar(text("SELECT pg_backend_pid()"))

    pid = in_transaction(pg_engine, work, backoff_s=0)
    assert len(attempts) == 2 and pid == attempts[1] != attempts[0]
    with session_scope(pg_engine) as s:
        assert s.scalar(select(func.count()).select_from(Tag).where(Tag.name == "retried")) == 1


def test_a_connection_that_keeps_dying_is_a_clear_error_and_writes_nothing(pg_engine):
    def work(session):
        _add_tag(session, "never")
        _kill(pg_engine, session.scalar(text("SELECT pg_backend_pid()")))
        session.execute(text("SELECT 1"))

    with pytest.raises(DatabaseUnavailable, match="nothing was saved"):
        in_transaction(pg_engine, work, attempts=2, backoff_s=0)
    with session_scope(pg_engine) as s:
        assert s.scalar(select(func.count()).select_from(Tag).where(Tag.name == "never")) == 0


def test_a_refused_statement_is_not_retried(any_engine):
    with session_scope(any_engine) as s:
        _add_tag(s, "taken")
    attempts = []

    def work(session):
        attempts.append(1)
        _add_tag(session, "taken")

    with pytest.raises(IntegrityError):
        in_transaction(any_engine, work, backoff_s=0)
    assert attempts == [1]


def test_a_lock_cycle_is_recognised_as_a_deadlock(pg_engine):
    """Two transactions lock two rows in opposite orders: PostgreSQL fails one statement with 40P01, which
    is_deadlock recognises (the schedulers' claims skip that candidate instead of failing the reviewer's request)."""
    import threading

    with pg_engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS lock_cycle; CREATE TABLE lock_cycle (id int primary key, n int)"))
        conn.execute(text("INSERT INTO lock_cycle VALUES (1, 0), (2, 0)"))
    barrier, errors = threading.Barrier(2), []

    def lock(first: int, second: int) -> None:
        with pg_engine.connect() as conn:
            try:
                with conn.begin():
                    conn.execute(text("UPDATE lock_cycle SET n = n + 1 WHERE id = :i"), {"i": first})
                    barrier.wait(timeout=10)
                    conn.execute(text("UPDATE lock_cycle SET n = n + 1 WHERE id = :i"), {"i": second})
            except OperationalError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=lock, args=order) for order in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert len(errors) == 1 and is_deadlock(errors[0])
        assert not is_deadlock(OperationalError("SELECT 1", {}, Exception("other")))
    finally:
        with pg_engine.begin() as conn:
            conn.execute(text("DROP TABLE lock_cycle"))
