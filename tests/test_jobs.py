"""The job queue and worker: claiming, running, progress, cancel, heartbeat and reaping, in-process and as a CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from align import jobs
from align.jobs import (
    HANDLERS,
    Heartbeat,
    JobContext,
    claim_next,
    enqueue,
    list_jobs,
    reap_stale,
    register,
    request_cancel,
    run_job,
    run_worker,
)
from align.rounds import settle_round
from cli.common import cli_actor
from cli.main import main
from db.errors import NotFound, ValidationError
from db.models import Job, JobStatus, Round, utcnow
from db.session import session_scope

REPO = Path(__file__).resolve().parents[1]


def job_row(engine, job_id: int) -> Job:
    with session_scope(engine) as s:
        return s.get(Job, job_id)


def round_row(engine, round_id: int) -> Round:
    with session_scope(engine) as s:
        return s.get(Round, round_id)


def add_round(engine, status: JobStatus = JobStatus.queued) -> int:
    with session_scope(engine) as s:
        rnd = Round(number=1, status=status, config={}, completed_stages=[])
        s.add(rnd)
        s.flush()
        return rnd.id


def add_jobs(engine, n: int, payload: dict | None = None, round_id: int | None = None) -> list[int]:
    with session_scope(engine) as s:
        return [enqueue(s, "sleep", payload or {"seconds": 0.01, "steps": 1}, round_id=round_id).id
                for _ in range(n)]


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


def worker_env(engine, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOALIGN_") and k != "DATABASE_URL"}
    return env | {"DATABASE_URL": engine.url.render_as_string(hide_password=False), "GEOALIGN_HOME": str(home),
                  "GEOALIGN_HEARTBEAT_S": "0.5", "PYTHONUNBUFFERED": "1"}


# ---------------------------------------------------------------------------------------------------- queue


def test_enqueue_and_claim_oldest_first(any_engine):
    ids = add_jobs(any_engine, 3)
    assert claim_next(any_engine, "w1", kinds=["round"]) is None  # nothing of that kind is queued
    assert [claim_next(any_engine, "w1") for _ in range(3)] == ids
    assert claim_next(any_engine, "w1") is None
    for job_id in ids:
        job = job_row(any_engine, job_id)
        assert job.status is JobStatus.running and job.worker == "w1"
        assert job.started_at is not None and job.heartbeat_at is not None and job.finished_at is None


def test_claim_on_empty_queue_returns_none(engine):
    assert claim_next(engine, "w1") is None
    assert run_worker(engine, name="w1", once=True) == 0


def test_concurrent_claims_never_share_a_job(any_engine):
    ids = add_jobs(any_engine, 20)
    barrier = threading.Barrier(2)
    claimed: dict[str, list[int]] = {}

    def drain(name: str) -> None:
        barrier.wait()
        got = claimed.setdefault(name, [])
        while (job_id := claim_next(any_engine, name)) is not None:
            got.append(job_id)

    threads = [threading.Thread(target=drain, args=(name,)) for name in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    union = claimed["w1"] + claimed["w2"]
    assert len(union) == len(set(union)) and sorted(union) == ids
    with session_scope(any_engine) as s:
        holders = {job.id: job.worker for job in list_jobs(s)}
        assert all(job.status is JobStatus.running for job in list_jobs(s))
    assert all(holders[i] == "w1" for i in claimed["w1"]) and all(holders[i] == "w2" for i in claimed["w2"])


def test_unknown_kind_names_the_known_ones(engine):
    with session_scope(engine) as s:
        with pytest.raises(ValidationError, match=r"unknown job kind 'nope'; known: .*sleep"):
            enqueue(s, "nope", {})
    with session_scope(engine) as s:
        assert list_jobs(s) == []


# -------------------------------------------------------------------------------------------------- running


def test_sleep_job_runs_through_the_worker(any_engine):
    (job_id,) = add_jobs(any_engine, 1, {"seconds": 0.2, "steps": 4})
    assert run_worker(any_engine, name="t1", once=True, heartbeat_s=0.05) == 1
    job = job_row(any_engine, job_id)
    assert job.status is JobStatus.succeeded and job.worker == "t1" and job.error is None
    assert job.finished_at >= job.started_at
    assert (job.progress["stage"], job.progress["step"], job.progress["total"]) == ("sleep", 4, 4)
    assert [p["step"] for p in job.progress["history"]] == [1, 2, 3, 4]
    assert job.progress["result"]["steps"] == 4 and job.progress["result"]["slept_s"] >= 0.2
    assert "started sleep on t1" in job.log and "succeeded in" in job.log
    assert run_worker(any_engine, name="t1", once=True) == 0


def test_failing_handler_fails_the_job_and_its_round(engine):
    @register("test_boom", settle=settle_round)
    def boom(ctx: JobContext) -> dict:
        ctx.progress(stage="loading", step=1)
        raise RuntimeError("disk\nfull")

    try:
        round_id = add_round(engine, JobStatus.running)
        with session_scope(engine) as s:
            job_id = enqueue(s, "test_boom", {}, round_id=round_id).id
        assert run_worker(engine, name="t1", once=True, heartbeat_s=0.05) == 1
    finally:
        HANDLERS.pop("test_boom", None)
    job = job_row(engine, job_id)
    assert job.status is JobStatus.failed and job.error == "RuntimeError: disk full"
    assert "Traceback (most recent call last)" in job.log and "in boom" in job.log
    assert job.progress["stage"] == "loading" and "result" not in job.progress
    rnd = round_row(engine, round_id)
    assert rnd.status is JobStatus.failed and rnd.finished_at is not None


def test_an_expected_error_fails_the_job_in_one_line(engine, caplog):
    @register("test_no_data")
    def no_data(ctx: JobContext) -> dict:
        raise ValidationError("no stage trained, nothing to publish")

    try:
        with session_scope(engine) as s:
            job_id = enqueue(s, "test_no_data", {}).id
        assert run_worker(engine, name="t1", once=True, heartbeat_s=0.05) == 1
    finally:
        HANDLERS.pop("test_no_data", None)
    job = job_row(engine, job_id)
    assert job.status is JobStatus.failed and job.error == "ValidationError: no stage trained, nothing to publish"
    assert "Traceback" not in job.log and "Traceback" not in caplog.text
    assert "failed: ValidationError: no stage trained" in job.log


def test_run_job_refuses_an_unclaimed_job(engine):
    (job_id,) = add_jobs(engine, 1)
    with pytest.raises(ValidationError, match="claim it"):
        run_job(engine, job_id)
    assert job_row(engine, job_id).status is JobStatus.queued


def test_progress_merges_and_history_and_log_stay_bounded(engine, monkeypatch):
    monkeypatch.setattr(jobs, "HISTORY_LIMIT", 10)
    monkeypatch.setattr(jobs, "LOG_LIMIT_CHARS", 500)
    (job_id,) = add_jobs(engine, 1)
    ctx = JobContext(engine, job_id, {}, None)
    ctx.progress(stage="sft", step=0)
    for step in range(1, 26):
        ctx.progress(step=step, history_point={"step": step, "loss": 1 / step})
    for i in range(50):
        ctx.log(f"line {i}")
    job = job_row(engine, job_id)
    steps = [p["step"] for p in job.progress["history"]]
    assert job.progress["stage"] == "sft" and job.progress["step"] == 25
    assert len(steps) <= 10 and steps[0] == 1 and steps[-1] == 25 and steps == sorted(set(steps))
    assert len(job.log) <= 500 and job.log.rstrip().endswith("line 49")
    assert job.log.startswith("20")  # trimmed at a line boundary: every kept line starts with its timestamp


def test_heartbeat_beats_until_the_block_ends(engine):
    (job_id,) = add_jobs(engine, 1)
    claim_next(engine, "w1")
    first = job_row(engine, job_id).heartbeat_at
    with Heartbeat(engine, job_id, interval_s=0.05):
        wait_for(lambda: job_row(engine, job_id).heartbeat_at > first, timeout=5, what="a heartbeat")
    last = job_row(engine, job_id).heartbeat_at
    time.sleep(0.25)
    assert job_row(engine, job_id).heartbeat_at == last


# --------------------------------------------------------------------------------------------------- cancel


def test_cancel_queued_job_cancels_it_and_its_round(engine):
    round_id = add_round(engine)
    (job_id,) = add_jobs(engine, 1, round_id=round_id)
    with session_scope(engine) as s:
        assert request_cancel(s, cli_actor(s), job_id).status is JobStatus.cancelled
    job = job_row(engine, job_id)
    assert job.status is JobStatus.cancelled and job.finished_at is not None
    rnd = round_row(engine, round_id)
    assert rnd.status is JobStatus.cancelled and rnd.finished_at is not None
    assert claim_next(engine, "w1") is None
    with session_scope(engine) as s:
        with pytest.raises(ValidationError, match="already finished"):
            request_cancel(s, cli_actor(s), job_id)
        with pytest.raises(NotFound, match="no job 999"):
            request_cancel(s, cli_actor(s), 999)


def test_cancel_running_job_stops_it(any_engine):
    round_id = add_round(any_engine, JobStatus.running)
    (job_id,) = add_jobs(any_engine, 1, {"seconds": 30, "steps": 300}, round_id=round_id)
    assert claim_next(any_engine, "w1") == job_id
    outcome: list[JobStatus] = []
    runner = threading.Thread(target=lambda: outcome.append(run_job(any_engine, job_id, heartbeat_s=0.1)))
    runner.start()
    try:
        wait_for(lambda: job_row(any_engine, job_id).progress.get("step", 0) >= 1, what="step 1")
        with session_scope(any_engine) as s:
            job = request_cancel(s, cli_actor(s), job_id)
            assert job.status is JobStatus.running and job.cancel_requested
    finally:
        runner.join(timeout=15)
    assert outcome == [JobStatus.cancelled]
    job = job_row(any_engine, job_id)
    assert job.status is JobStatus.cancelled and job.finished_at is not None and job.progress["step"] < 300
    assert "cancelled" in job.log and "result" not in job.progress
    assert round_row(any_engine, round_id).status is JobStatus.cancelled


# ---------------------------------------------------------------------------------------------------- reap


def test_reap_stale_fails_the_job_and_its_round(any_engine):
    round_id = add_round(any_engine, JobStatus.running)
    stale_id, fresh_id = add_jobs(any_engine, 2, round_id=round_id)
    claim_next(any_engine, "w1")
    claim_next(any_engine, "w2")
    long_ago = utcnow() - timedelta(seconds=60)
    with session_scope(any_engine) as s:
        s.execute(update(Job).where(Job.id == stale_id).values(heartbeat_at=long_ago))
    with session_scope(any_engine) as s:
        assert reap_stale(s, stale_after_s=30) == [stale_id]
    job = job_row(any_engine, stale_id)
    assert job.status is JobStatus.failed and job.finished_at is not None
    assert job.error == f"worker w1 stopped heartbeating at {long_ago.isoformat(timespec='seconds')}"
    rnd = round_row(any_engine, round_id)
    assert rnd.status is JobStatus.failed and rnd.finished_at is not None
    assert job_row(any_engine, fresh_id).status is JobStatus.running
    with session_scope(any_engine) as s:
        assert reap_stale(s, stale_after_s=30) == []


def test_killed_worker_process_is_reaped(engine, home):
    round_id = add_round(engine, JobStatus.running)
    (job_id,) = add_jobs(engine, 1, {"seconds": 60, "steps": 120}, round_id=round_id)
    proc = subprocess.Popen([sys.executable, "-m", "tests.jobkinds", "worker", "--once", "--name", "doomed"],
                            cwd=REPO, env=worker_env(engine, home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: job_row(engine, job_id).progress.get("step", 0) >= 1, timeout=60, what="step 1 in the worker")
        job = wait_for(lambda: (j := job_row(engine, job_id)).heartbeat_at > j.started_at and j, timeout=5,
                       what="a heartbeat from the worker")
        assert job.status is JobStatus.running and job.worker == "doomed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    last_beat = job_row(engine, job_id).heartbeat_at
    time.sleep(2.0)
    assert job_row(engine, job_id).heartbeat_at == last_beat  # nobody is beating for it any more
    with session_scope(engine) as s:
        assert reap_stale(s, stale_after_s=1.5) == [job_id]
    job = job_row(engine, job_id)
    assert job.status is JobStatus.failed and job.error.startswith("worker doomed stopped heartbeating at ")
    assert round_row(engine, round_id).status is JobStatus.failed


def test_sigterm_stops_the_worker_after_the_current_job(engine, home):
    first, second = add_jobs(engine, 2, {"seconds": 1.5, "steps": 6})
    proc = subprocess.Popen([sys.executable, "-m", "tests.jobkinds", "worker", "--poll", "0.2", "--name", "polite"],
                            cwd=REPO, env=worker_env(engine, home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        wait_for(lambda: job_row(engine, first).progress.get("step", 0) >= 1, timeout=60, what="step 1 in the worker")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "received SIGTERM, stopping after the current job" in out
    assert f"job {first} (sleep) succeeded" in out and "stopped after 1 job(s)" in out
    assert job_row(engine, first).status is JobStatus.succeeded
    assert job_row(engine, second).status is JobStatus.queued


# ------------------------------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize("words", [["worker"], ["jobs", "list"], ["jobs", "show"], ["jobs", "cancel"]], ids=" ".join)
def test_job_commands_have_help(words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*words, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: geoalign " + " ".join(words)) and len(out.splitlines()) >= 4


def test_jobs_cli_list_show_cancel_and_worker(engine, capsys):
    assert main(["jobs", "list"]) == 0 and "no jobs yet" in capsys.readouterr().out
    first, second = add_jobs(engine, 2, {"seconds": 0.05, "steps": 2})
    assert main(["jobs", "cancel", str(second)]) == 0
    assert f"job {second} cancelled" in capsys.readouterr().out
    assert main(["worker", "--once", "--name", "cli"]) == 0
    out = capsys.readouterr().out
    assert f"job {first} (sleep) started" in out and f"job {first} (sleep) succeeded" in out
    assert main(["worker", "--once"]) == 0 and "no queued jobs" in capsys.readouterr().out
    assert main(["jobs", "list"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[:5] == ["id", "kind", "status", "round", "worker"]
    assert rows[1].split()[:3] == [str(second), "sleep", "cancelled"]
    assert rows[2].split()[:5] == [str(first), "sleep", "succeeded", "-", "cli"] and "sleep 2/2" in rows[2]
    assert main(["jobs", "show", str(first)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"job {first}: sleep, succeeded") and "history    2 points" in out and "succeeded in" in out
    assert main(["jobs", "cancel", str(first)]) == 2
    assert "already finished (succeeded)" in capsys.readouterr().err
    assert main(["jobs", "show", "999"]) == 2
    assert capsys.readouterr().err.strip() == "geoalign: error: no job 999"


def test_worker_rejects_bad_timing_settings(engine, capsys, monkeypatch):
    monkeypatch.setenv("GEOALIGN_HEARTBEAT_S", "soon")
    assert main(["worker", "--once"]) == 2
    assert "GEOALIGN_HEARTBEAT_S='soon' is not a number" in capsys.readouterr().err
    monkeypatch.setenv("GEOALIGN_HEARTBEAT_S", "20")
    assert main(["worker", "--once"]) == 2
    assert "must exceed twice GEOALIGN_HEARTBEAT_S" in capsys.readouterr().err
