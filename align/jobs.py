"""The job queue and the background worker: jobs are rows in ``jobs``, claimed atomically, kept alive by a heartbeat.

A handler is a function registered for a job kind; it gets a ``JobContext`` to report progress, write to the
job's log and notice a cancel request::

    @register("nap")
    def nap(ctx: JobContext) -> dict:
        ctx.progress(stage="nap", step=1)
        ctx.check_cancel()
        return {"slept_s": 1.0}

    with session_scope(engine) as s:
        enqueue(s, "nap", {"seconds": 2})
    run_worker(engine, once=True)        # or, from a shell: geoalign worker

The queue knows no kind of its own: a module registers its kinds when it is imported (``align.rounds`` registers
"round"), so a process that enqueues, runs, cancels or reaps jobs imports the modules of the kinds it handles. A
kind whose jobs stand for something else (a round) registers a ``settle`` hook that the queue calls when such a
job ends without its handler having settled that thing, e.g. when it is cancelled while queued or reaped.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from collect.auth import CurrentUser, require
from db.errors import GeoAlignError, NotFound, ValidationError
from db.models import AuditEvent, Job, JobStatus, utcnow
from db.session import session_scope

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 2000  # points in progress["history"]: a full loss curve for a chart, a few hundred KB of JSON at most
LOG_LIMIT_CHARS = 200_000  # job.log keeps its tail: enough for a round's stage logs, small enough to show in the app
FINISHED = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)
UNFINISHED = (JobStatus.queued, JobStatus.running)
JOB_ROLES = ("engineer", "admin")  # who may cancel a job (the CLI acts as a system admin)


class Cancelled(GeoAlignError):
    """Raised inside a handler (by ``JobContext.check_cancel``) when someone asked to cancel its job."""


Handler = Callable[["JobContext"], "dict | None"]
Settle = Callable[[Session, Job, JobStatus, datetime], None]

HANDLERS: dict[str, Handler] = {}
SETTLERS: dict[str, Settle] = {}


def register(kind: str, settle: Settle | None = None) -> Callable[[Handler], Handler]:
    """Decorator: make ``fn`` the handler of job kind ``kind``; it returns an optional result dict.

    ``settle(session, job, status, when)``, if given, is called in the queue's transaction whenever a job of
    ``kind`` ends failed or cancelled: cancelled while queued, reaped as stale, or failed or cancelled in its
    handler. ``status`` is the job's final status and ``when`` its finishing time; the hook leaves alone whatever
    the handler has settled itself.
    """

    def decorate(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        if settle is None:
            SETTLERS.pop(kind, None)
        else:
            SETTLERS[kind] = settle
        return fn

    return decorate


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def _stamp(value: datetime | None) -> str:
    return _aware(value).isoformat(timespec="seconds") if value is not None else "-"


def _append_log(existing: str, text: str) -> str:
    combined = existing + (text if text.endswith("\n") else text + "\n")
    if len(combined) <= LOG_LIMIT_CHARS:
        return combined
    tail = combined[-LOG_LIMIT_CHARS:]
    return tail[tail.find("\n") + 1:]  # start at a whole line


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}"[:2000] if message else type(exc).__name__


def _get(session: Session, job_id: int, lock: bool = False) -> Job:
    job = session.get(Job, job_id, with_for_update=lock)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def _settle(session: Session, job: Job, status: JobStatus, when: datetime) -> None:
    """Call the settle hook of the job's kind, if it has one (see ``register``)."""
    if job.kind not in HANDLERS:
        logger.warning("job %s is of kind %r, which this process has not registered: whatever it stood for is "
                       "left unsettled", job.id, job.kind)
    settle = SETTLERS.get(job.kind)
    if settle is not None:
        settle(session, job, status, when)


# ---------------------------------------------------------------------------------------------------- queue


def enqueue(session: Session, kind: str, payload: dict, round_id: int | None = None) -> Job:
    """Add a queued job of ``kind``; an unknown kind is a ValidationError naming the known ones."""
    if kind not in HANDLERS:
        raise ValidationError(f"unknown job kind {kind!r}; known: {', '.join(sorted(HANDLERS)) or 'none'}")
    if not isinstance(payload, dict):
        raise ValidationError(f"job payload must be a dict, got {type(payload).__name__}")
    job = Job(kind=kind, payload=payload, progress={}, round_id=round_id, status=JobStatus.queued, log="")
    session.add(job)
    session.flush()
    logger.info("queued job %s (%s)", job.id, kind)
    return job


def _oldest_queued(kinds: list[str] | None):
    stmt = select(Job).where(Job.status == JobStatus.queued).order_by(Job.created_at, Job.id).limit(1)
    return stmt.where(Job.kind.in_(kinds)) if kinds else stmt


def claim_next(engine: Engine, worker: str, kinds: list[str] | None = None) -> int | None:
    """Atomically move the oldest queued job (of ``kinds``, if given) to running for ``worker``; its id or None."""
    if engine.dialect.name == "sqlite":
        return _claim_conditional(engine, worker, kinds)
    with session_scope(engine) as session:
        # SKIP LOCKED: a row another worker is claiming right now is passed over, not waited for
        job = session.scalar(_oldest_queued(kinds).with_for_update(skip_locked=True))
        if job is None:
            return None
        now = utcnow()
        job.status, job.worker, job.started_at, job.heartbeat_at = JobStatus.running, worker, now, now
        job_id = job.id
    logger.info("%s claimed job %s", worker, job_id)
    return job_id


def _claim_conditional(engine: Engine, worker: str, kinds: list[str] | None) -> int | None:
    # SQLite has no row locks: read a candidate, then take it only if it is still queued; the writer lock
    # serialises the UPDATEs, so exactly one worker sees rowcount 1 and the others move on to the next row.
    while True:
        with session_scope(engine) as session:
            job_id = session.scalar(_oldest_queued(kinds).with_only_columns(Job.id))
            if job_id is None:
                return None
            now = utcnow()
            taken = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.queued)
                .values(status=JobStatus.running, worker=worker, started_at=now, heartbeat_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
        if taken == 1:
            logger.info("%s claimed job %s", worker, job_id)
            return job_id


def claim_job(engine: Engine, job_id: int, worker: str) -> bool:
    """Claim one particular queued job (``geoalign round start --now`` runs its own job in the foreground)."""
    with session_scope(engine) as session:
        taken = session.execute(
            update(Job).where(Job.id == job_id, Job.status == JobStatus.queued)
            .values(status=JobStatus.running, worker=worker, started_at=utcnow(), heartbeat_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
    return taken == 1


def get_job(session: Session, job_id: int) -> Job:
    """The job ``job_id``, or NotFound."""
    return _get(session, job_id)


def list_jobs(session: Session, limit: int = 50) -> list[Job]:
    """The newest ``limit`` jobs, newest first."""
    return list(session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)))


def request_cancel(session: Session, actor: CurrentUser | None, job_id: int) -> Job:
    """Cancel a queued job (settling what it stood for) at once, or ask a running one to stop; a finished job is an
    error."""
    require(actor, *JOB_ROLES)
    job = _get(session, job_id)
    if job.status in (JobStatus.queued, JobStatus.running):
        session.add(AuditEvent(user_id=actor.id, action="job.cancel", entity="job", entity_id=job_id,
                               details={"status": job.status.value, "round": job.round_id}))
    if job.status is JobStatus.queued:
        now = utcnow()
        taken = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.queued)
            .values(status=JobStatus.cancelled, finished_at=now, cancel_requested=True)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.refresh(job)
        if taken == 1:
            _settle(session, job, JobStatus.cancelled, now)
            session.flush()
            logger.info("cancelled queued job %s", job_id)
            return job
        # a worker claimed it between our read and our update: it is running now, so ask it to stop
    if job.status is JobStatus.running:
        job.cancel_requested = True
        session.flush()
        logger.info("asked %s to cancel running job %s", job.worker, job_id)
        return job
    raise ValidationError(f"job {job_id} already finished ({job.status.value}); there is nothing to cancel")


def reap_stale(session: Session, stale_after_s: float) -> list[int]:
    """Fail running jobs whose worker stopped heartbeating ``stale_after_s`` ago (settling what they stood for);
    their ids."""
    now = utcnow()
    cutoff = now - timedelta(seconds=stale_after_s)
    last_sign_of_life = func.coalesce(Job.heartbeat_at, Job.started_at, Job.created_at)
    stale = session.scalars(
        select(Job)
        .where(Job.status == JobStatus.running, last_sign_of_life < cutoff)
        .order_by(Job.id)
        .with_for_update(skip_locked=True)  # two workers reaping at once do not fight over the same rows
    ).all()
    for job in stale:
        job.status = JobStatus.failed
        job.finished_at = now
        job.error = f"worker {job.worker} stopped heartbeating at {_stamp(job.heartbeat_at or job.started_at)}"
        job.log = _append_log(job.log or "", f"{_stamp(now)} reaped: {job.error}")
        _settle(session, job, JobStatus.failed, now)
        logger.warning("job %s failed: %s", job.id, job.error)
    session.flush()
    return [job.id for job in stale]


# -------------------------------------------------------------------------------------------------- running


class JobContext:
    """What a handler sees of its job: payload and round, progress and log writers, and the cancel flag."""

    def __init__(self, engine: Engine, job_id: int, payload: dict[str, Any], round_id: int | None, kind: str = ""):
        self.engine = engine
        self.job_id = job_id
        self.payload = payload
        self.round_id = round_id
        self.kind = kind

    def progress(self, **fields: Any) -> None:
        """Merge ``fields`` into job.progress; a ``history_point`` dict is appended to progress["history"]."""
        point = fields.pop("history_point", None)
        with session_scope(self.engine) as session:
            job = _get(session, self.job_id, lock=True)
            progress = {**(job.progress or {}), **fields}
            if point is not None:
                history = [*progress.get("history", []), dict(point)]
                if len(history) > HISTORY_LIMIT:
                    # halve the resolution instead of dropping the oldest points: the curve keeps its start
                    history = history[:-1:2] + history[-1:]
                progress["history"] = history
            job.progress = progress  # a new dict, so the JSON column is written

    def log(self, message: str) -> None:
        """Append a timestamped line to job.log (which keeps its last 200 KB) and to the process log."""
        logger.info("job %s: %s", self.job_id, message)
        with session_scope(self.engine) as session:
            job = _get(session, self.job_id, lock=True)
            job.log = _append_log(job.log or "", f"{_stamp(utcnow())} {message}")

    def cancel_requested(self) -> bool:
        """Whether someone asked to cancel this job."""
        with session_scope(self.engine) as session:
            return bool(session.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))

    def check_cancel(self) -> None:
        """Raise Cancelled if someone asked to cancel this job; call it between units of work."""
        if self.cancel_requested():
            raise Cancelled(f"job {self.job_id} was cancelled")


class Heartbeat:
    """Context manager: a daemon thread stamps job.heartbeat_at every ``interval_s`` until the block ends."""

    def __init__(self, engine: Engine, job_id: int, interval_s: float = 2.0):
        self.engine = engine
        self.job_id = job_id
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-job-{job_id}", daemon=True)

    def beat(self) -> None:
        """Stamp heartbeat_at now (only while the job is running: a reaped job stays reaped)."""
        with self.engine.begin() as conn:
            conn.execute(update(Job).where(Job.id == self.job_id, Job.status == JobStatus.running)
                         .values(heartbeat_at=utcnow()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except SQLAlchemyError as exc:
                # a database hiccup must not end the heartbeat; only a long outage lets the job be reaped
                logger.warning("heartbeat of job %s failed: %s", self.job_id, exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 15)  # a beat may wait out SQLite's busy timeout


def _finish(engine: Engine, job_id: int, status: JobStatus, *, result: dict | None = None, error: str | None = None,
            log_text: str = "", settle: bool = False) -> JobStatus:
    """Record how the job ended (calling its kind's settle hook with ``settle``); returns the status it has after."""
    with session_scope(engine) as session:
        job = _get(session, job_id, lock=True)
        if job.status is not JobStatus.running:
            # reaped or otherwise settled while the handler ran: that decision (and its settle hook's) stands
            logger.warning("job %s ended as %s but is already %s; leaving it", job_id, status.value,
                           job.status.value)
            return job.status
        now = utcnow()
        job.status, job.finished_at, job.error = status, now, error
        if result is not None:
            job.progress = {**(job.progress or {}), "result": result}
        if log_text:
            job.log = _append_log(job.log or "", log_text)
        if settle:
            _settle(session, job, status, now)
        return status


def run_job(engine: Engine, job_id: int, heartbeat_s: float = 2.0) -> JobStatus:
    """Run the handler of a claimed (running) job under a heartbeat and record the outcome; the final status."""
    with session_scope(engine) as session:
        job = _get(session, job_id)
        if job.status is not JobStatus.running:
            raise ValidationError(f"job {job_id} is {job.status.value}, not running: claim it with claim_next first")
        kind, payload, round_id, worker = job.kind, dict(job.payload or {}), job.round_id, job.worker
    handler = HANDLERS.get(kind)
    if handler is None:
        error = f"unknown job kind {kind!r}; this worker knows: {', '.join(sorted(HANDLERS)) or 'none'}"
        return _finish(engine, job_id, JobStatus.failed, error=error, log_text=f"{_stamp(utcnow())} {error}",
                       settle=True)
    ctx = JobContext(engine, job_id, payload, round_id, kind)
    ctx.log(f"started {kind} on {worker}")
    started = time.monotonic()
    try:
        with Heartbeat(engine, job_id, heartbeat_s):
            result = handler(ctx)
    except Cancelled as exc:
        logger.info("job %s cancelled: %s", job_id, exc)
        return _finish(engine, job_id, JobStatus.cancelled, log_text=f"{_stamp(utcnow())} cancelled: {exc}",
                       settle=True)
    except BaseException as exc:
        # KeyboardInterrupt/SystemExit too: the job must not stay "running" until the reaper finds it
        error = _one_line(exc)
        expected = isinstance(exc, GeoAlignError)  # a user-ready error (bad config, no data) says all in one line
        (logger.error if expected else logger.exception)("job %s failed: %s", job_id, error)
        _finish(engine, job_id, JobStatus.failed, error=error,
                log_text=f"{_stamp(utcnow())} failed: {error}" + ("" if expected else f"\n{traceback.format_exc()}"),
                settle=True)
        if not isinstance(exc, Exception):
            raise
        return JobStatus.failed
    seconds = time.monotonic() - started
    return _finish(engine, job_id, JobStatus.succeeded, result=result,
                   log_text=f"{_stamp(utcnow())} succeeded in {seconds:.1f} s")


# --------------------------------------------------------------------------------------------------- worker


def default_worker_name() -> str:
    """``host:pid``, unique enough to tell which process held a job."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_worker(engine: Engine, name: str | None = None, once: bool = False, poll_s: float = 1.0,
               heartbeat_s: float = 2.0, stale_after_s: float = 30.0, kinds: list[str] | None = None,
               echo: Callable[[str], None] | None = None) -> int:
    """Reap stale jobs, claim the next, run it; repeat until SIGTERM/SIGINT (or after one job with ``once``).

    Only jobs of kinds registered in this process (of ``kinds``, if given) are claimed; others wait for a worker
    that knows them. Returns the number of jobs run. ``echo`` (the CLI passes ``print``) receives one line per job
    start and end. A first SIGTERM/SIGINT lets the current job finish; a second one interrupts it (the job is
    marked failed).
    """
    name = name or default_worker_name()
    say = echo or (lambda _line: None)
    claimable = [kind for kind in (kinds or sorted(HANDLERS)) if kind in HANDLERS]
    stop = threading.Event()

    def on_signal(signum: int, _frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        line = f"worker {name}: received {signal.Signals(signum).name}, stopping after the current job"
        logger.warning(line)
        say(line)

    previous = {}
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    logger.info("worker %s started (kinds: %s)", name, ", ".join(claimable) or "none registered")
    ran = 0
    try:
        while not stop.is_set():
            with session_scope(engine) as session:
                reap_stale(session, stale_after_s)
            job_id = claim_next(engine, name, claimable) if claimable else None
            if job_id is None:
                if once:
                    break
                stop.wait(poll_s)
                continue
            with session_scope(engine) as session:
                job = _get(session, job_id)
                label = f"job {job_id} ({job.kind}{f', round {job.round_id}' if job.round_id else ''})"
            say(f"{label} started")
            started = time.monotonic()
            status = run_job(engine, job_id, heartbeat_s)
            ran += 1
            with session_scope(engine) as session:
                error = _get(session, job_id).error
            say(f"{label} {status.value} in {time.monotonic() - started:.1f} s{f': {error}' if error else ''}")
            if once:
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("worker %s stopped after %d job(s)", name, ran)
    return ran
