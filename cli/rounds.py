"""``geoalign round …``, ``worker`` and ``jobs …``: alignment rounds and the job queue that runs them.

    geoalign round start --region en-GB-manchester          # queue; `geoalign worker` runs it
    geoalign round start --all --config round.yaml --now    # run in this terminal, with progress bars
    geoalign round show 3
    geoalign worker                                         # run queued jobs until stopped
    geoalign jobs show 12

Importing ``align.rounds`` registers the "round" job kind and its settle hook, which every command here that runs,
reaps or cancels jobs needs; it imports no torch (the stages load it when they run).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from align.config import load_config
from align.jobs import claim_job, default_worker_name, get_job, list_jobs, request_cancel, run_job, run_worker
from align.registry import get_round
from align.reports import jobs_for, region_names, reward_model_text, win_rate_rows, win_rate_text
from align.rounds import list_rounds, queue_resume, queue_round
from cli.common import add, cli_actor, engine, group, settings, when
from db.errors import GeoAlignError, ValidationError
from db.session import session_scope

# `geoalign round --help`: the commands of the ML engineer, who also simulates votes for offline demos
ROUND_DESCRIPTION = """``geoalign round …`` and ``geoalign votes simulate``: the ML engineer's commands.

    geoalign round start --region en-GB-manchester          # queue; `geoalign worker` runs it
    geoalign round start --all --config round.yaml --now    # run in this terminal, with progress bars
    geoalign round list
    geoalign round show 3
    geoalign round cancel 3
    geoalign round resume 3 --now
"""


class _ExpectedFailure(logging.Filter):
    """Drops the worker's traceback for a GeoAlignError: ``_run_now`` prints that error as one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], GeoAlignError))


def _run_now(db, job_id: int) -> int:
    """Claim the job just queued and run it in this process (heartbeat and cancel work as in a worker)."""
    if not claim_job(db, job_id, default_worker_name()):
        raise ValidationError(f"job {job_id} was claimed by a worker before this process could start it")
    jobs_log, quiet = logging.getLogger("align.jobs"), _ExpectedFailure()
    jobs_log.addFilter(quiet)
    try:
        status = run_job(db, job_id)
    finally:
        jobs_log.removeFilter(quiet)
    with session_scope(db) as session:
        job = get_job(session, job_id)
        result = (job.progress or {}).get("result") or {}
        if status.value == "succeeded" and result.get("reward_only"):
            print(f"round done: published {result.get('version')}, a new reward model "
                  f"(the policy is unchanged from {result.get('parent')})")
            print(f"  reward model accuracy: {reward_model_text(result['stages'].get('reward') or {})}")
            return 0
        if status.value == "succeeded":
            print(f"round done: published {result.get('version')}")
            for label, wr in win_rate_rows(result.get("eval") or {}):
                print(f"  win-rate {label:38} {wr['rate']:.2f} [{wr['low']:.2f}, {wr['high']:.2f}] (n={wr['n']})")
            return 0
        # one line: the job's log keeps the traceback of an unexpected error
        print(f"geoalign: error: round {status.value}: {job.error or ''} (log: `geoalign jobs show {job_id}`)",
              file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------------------------------- round


def cmd_round_start(args: argparse.Namespace) -> int:
    overrides = {}
    if args.stages:
        overrides["stages"] = [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.rl_algorithm:
        overrides["rl_algorithm"] = args.rl_algorithm
    config = load_config(Path(args.config) if args.config else None, **overrides)
    db = engine()
    with session_scope(db) as session:
        rnd, job = queue_round(session, cli_actor(session), None if args.all else args.region, config)
        round_id, number, job_id = rnd.id, rnd.number, job.id
    scope = "all regions" if args.all else args.region
    print(f"round {round_id} ({scope}, #{number}): stages {', '.join(config.settings.stages)}; job {job_id}")
    if args.now:
        return _run_now(db, job_id)
    print("queued; start a worker with `geoalign worker` (or add --now to run it here)")
    return 0


def cmd_round_resume(args: argparse.Namespace) -> int:
    db = engine()
    with session_scope(db) as session:
        job_id = queue_resume(session, cli_actor(session), args.id).id
    print(f"round {args.id}: resume queued as job {job_id}")
    return _run_now(db, job_id) if args.now else 0


def cmd_round_cancel(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        job = jobs_for(session, [args.id]).get(args.id)
        if job is None:
            raise ValidationError(f"round {args.id} has no job")
        job = request_cancel(session, cli_actor(session), job.id)
        print(f"round {args.id}: " + ("cancelled" if job.status.value == "cancelled"
                                      else f"cancel requested; worker {job.worker} stops it at its next step"))
    return 0


def _scope(codes: dict[int, str], region_id: int | None) -> str:
    return codes[region_id] if region_id else "all"


def cmd_round_list(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        rounds = list_rounds(session, args.limit)
        if not rounds:
            print("no rounds yet; start one with `geoalign round start --region CODE` or `--all`")
            return 0
        jobs, codes = jobs_for(session, [r.id for r in rounds]), region_names(session)
        print(f"{'id':>4} {'scope':20} {'#':>3} {'status':10} {'done':28} {'now':16} version")
        for r in rounds:
            job = jobs.get(r.id)
            now = ""
            if job and job.status.value == "running":
                p = job.progress or {}
                now = f"{p.get('stage', '')} {p.get('step', '')}/{p.get('total') or '?'}"
            print(f"{r.id:4} {_scope(codes, r.region_id):20} {r.number:3} {r.status.value:10} "
                  f"{','.join(r.completed_stages) or '-':28} {now:16} {(r.metrics or {}).get('version', '-')}")
    return 0


def cmd_round_show(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        rnd = get_round(session, args.id)
        job = jobs_for(session, [rnd.id]).get(rnd.id)
        print(f"round {rnd.id}: {_scope(region_names(session), rnd.region_id)} #{rnd.number}, {rnd.status.value}")
        print(f"  stages     {', '.join(rnd.config.get('round', {}).get('stages') or [])}")
        print(f"  completed  {', '.join(rnd.completed_stages) or '-'}")
        if rnd.error:
            print(f"  error      {rnd.error}")
        if job:
            print(f"  job        {job.id} ({job.status.value}, worker {job.worker or '-'})")
        shown = rnd.metrics or {}
        if shown.get("version"):
            print(f"  published  {shown['version']}" + (" (a reward model only: the policy is unchanged)"
                                                        if shown.get("reward_only") else ""))
        if reward := reward_model_text(shown.get("reward") or {}):
            print(f"  accuracy   {reward}")
        for label, wr in win_rate_rows(shown.get("eval") or {}):
            print(f"  win-rate   {label:38} {win_rate_text(wr)} (n={wr.get('n')})")
        for stage, metrics in shown.items():
            print(f"  {stage:10} {json.dumps(metrics, default=str)}")
    return 0


# ----------------------------------------------------------------------------------------------- worker/jobs


def _progress_brief(progress: dict) -> str:
    stage = progress.get("stage") or "-"
    step = progress.get("step")
    if step is None:
        return stage
    total = progress.get("total")
    return f"{stage} {step}/{total}" if total else f"{stage} {step}"


def cmd_worker(args: argparse.Namespace) -> int:
    config = settings()
    heartbeat_s, stale_after_s = config.heartbeat_s, config.stale_after_s
    name = args.name or default_worker_name()
    db = engine()
    print(f"worker {name} on {db.url.render_as_string(hide_password=True)}: heartbeat every {heartbeat_s:g} s, "
          f"jobs reaped after {stale_after_s:g} s without one{'; one job at most' if args.once else ''}", flush=True)
    ran = run_worker(db, name=name, once=args.once, poll_s=args.poll, heartbeat_s=heartbeat_s,
                     stale_after_s=stale_after_s, kinds=args.kind, echo=lambda line: print(line, flush=True))
    print(f"worker {name} stopped after {ran} job(s)" if ran or not args.once else "no queued jobs", flush=True)
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        jobs = list_jobs(session, limit=args.limit)
        if not jobs:
            print("no jobs yet")
            return 0
        print(f"{'id':>5} {'kind':10} {'status':10} {'round':>5} {'worker':28} {'progress':20} created")
        for job in jobs:
            print(f"{job.id:5} {job.kind:10} {job.status.value:10} {job.round_id or '-':>5} {job.worker or '-':28} "
                  f"{_progress_brief(job.progress or {}):20} {when(job.created_at)}"
                  f"{' (cancel requested)' if job.cancel_requested and job.status.value == 'running' else ''}")
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        job = get_job(session, args.id)
        progress = dict(job.progress or {})
        history = progress.pop("history", [])
        print(f"job {job.id}: {job.kind}, {job.status.value}"
              f"{' (cancel requested)' if job.cancel_requested and job.status.value == 'running' else ''}")
        for label, value in (("round", job.round_id or "-"), ("worker", job.worker or "-"),
                             ("created", when(job.created_at)), ("started", when(job.started_at)),
                             ("heartbeat", when(job.heartbeat_at)), ("finished", when(job.finished_at)),
                             ("error", job.error or "-"), ("payload", json.dumps(job.payload, ensure_ascii=False)),
                             ("progress", json.dumps(progress, ensure_ascii=False, default=str))):
            print(f"  {label:10} {value}")
        if history:
            print(f"  {'history':10} {len(history)} points, last {json.dumps(history[-1], default=str)}")
        lines = (job.log or "").splitlines()
        print(f"log (last {min(len(lines), args.lines)} of {len(lines)} lines):")
        for line in lines[-args.lines:]:
            print(f"  {line}")
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        job = request_cancel(session, cli_actor(session), args.id)
        status, worker = job.status.value, job.worker
    if status == "cancelled":
        print(f"job {args.id} cancelled")
    else:
        print(f"job {args.id}: cancel requested; worker {worker} stops it at its next check")
    return 0


# ------------------------------------------------------------------------------------------------- register


def register(sub) -> None:
    """``geoalign worker``, ``jobs list|show|cancel`` and ``round start|resume|cancel|list|show``."""
    p = add(sub, "worker", cmd_worker, "run queued jobs (alignment rounds, diagnostics) until stopped",
            "Claim queued jobs from the database one at a time and run them, oldest first. Several workers may "
            "share one database: a job is claimed by exactly one. While a job runs its worker stamps a heartbeat; "
            "a running job whose worker stopped heartbeating (crash, kill -9, lost machine) is marked failed by "
            "the next worker that polls. SIGTERM or Ctrl-C stops the worker after the current job; a second one "
            "interrupts the job.\n\nEnvironment: GEOALIGN_HEARTBEAT_S (default 2) seconds between heartbeats, "
            "GEOALIGN_STALE_AFTER_S (default 30) seconds without one before a job counts as dead.")
    p.add_argument("--once", action="store_true", help="run at most one job, then exit (exit at once if none queued)")
    p.add_argument("--poll", type=float, default=1.0, metavar="SECONDS", help="wait between polls of an empty queue")
    p.add_argument("--name", help="worker name shown on its jobs (default: HOST:PID)")
    p.add_argument("--kind", action="append", help="only claim jobs of this kind (repeatable; default: all)")

    jobs = group(sub, "jobs", "inspect and cancel background jobs")
    p = add(jobs, "list", cmd_jobs_list, "list the newest jobs with status, worker and progress")
    p.add_argument("--limit", type=int, default=50, help="how many jobs")
    p = add(jobs, "show", cmd_jobs_show, "show one job: its fields, progress and the end of its log")
    p.add_argument("id", type=int, help="job id (see `geoalign jobs list`)")
    p.add_argument("--lines", type=int, default=40, help="log lines to show")
    p = add(jobs, "cancel", cmd_jobs_cancel, "cancel a job",
            "A queued job (and its round) is cancelled at once; a running job is asked to stop and its worker "
            "cancels it at the handler's next check. A finished job cannot be cancelled.")
    p.add_argument("id", type=int, help="job id (see `geoalign jobs list`)")

    rnd = group(sub, "round", "alignment rounds: SFT → reward model → DPO → online RL, evaluate, publish",
                ROUND_DESCRIPTION)
    p = add(rnd, "start", cmd_round_start, "queue a round for one region or all (or run it now with --now)",
            "Queue an alignment round: datasets from the database (train split; val for validation), the "
            "enabled stages on the parent version's LoRA adapter, evaluation on test prompts, atomic publish of "
            "the new version, and new pairs for reviewers. The config YAML has sections round, lora, sft, "
            "reward, dpo and rl mapped onto RoundSettings, LoraConfig and TRL's config classes; a wrong key or "
            "value fails here, before anything is queued. With --stages reward the round retrains the reward model "
            "alone and publishes it as a version that keeps its parent's policy (no evaluation, no new pairs).")
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--region", help="region code: train on that region's data, publish a region version")
    scope.add_argument("--all", action="store_true", help="train on all regions")
    p.add_argument("--config", help="round config YAML (default: built-in defaults sized for the demo model)")
    p.add_argument("--stages", help="comma-separated subset of sft,reward,dpo,rl (overrides the config); "
                   "reward alone publishes a new reward model")
    p.add_argument("--rl-algorithm", choices=["grpo", "rloo"], help="online RL trainer (overrides the config)")
    p.add_argument("--now", action="store_true", help="run the round in this process instead of a worker")
    p = add(rnd, "resume", cmd_round_resume, "continue a failed or cancelled round from its last finished stage")
    p.add_argument("id", type=int, help="round id (see `geoalign round list`)")
    p.add_argument("--now", action="store_true", help="run it in this process instead of a worker")
    p = add(rnd, "cancel", cmd_round_cancel, "cancel a queued or running round")
    p.add_argument("id", type=int, help="round id")
    p = add(rnd, "list", cmd_round_list, "rounds with status, finished stages and live progress")
    p.add_argument("--limit", type=int, default=20, help="how many rounds")
    p = add(rnd, "show", cmd_round_show, "one round: stages, metrics per stage, evaluation")
    p.add_argument("id", type=int, help="round id")
