"""``geoalign round …`` and ``geoalign votes simulate``: the ML engineer's commands.

    geoalign round start --region en-GB-manchester          # queue; `geoalign worker` runs it
    geoalign round start --all --config round.yaml --now    # run in this terminal, with progress bars
    geoalign round list
    geoalign round show 3
    geoalign round cancel 3
    geoalign round resume 3 --now
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from db.errors import GeoAlignError, ValidationError


def _engine():
    from cli.main import _engine as engine

    return engine()


def _actor(session):
    """The CLI's acting user (``cli.main.cli_actor``)."""
    from cli.main import cli_actor

    return cli_actor(session)


class _ExpectedFailure(logging.Filter):
    """Drops the worker's traceback for a GeoAlignError: ``_run_now`` prints that error as one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], GeoAlignError))


def _run_now(engine, job_id: int) -> int:
    """Claim the job just queued and run it in this process (heartbeat and cancel work as in a worker)."""
    from align.jobs import claim_job, default_worker_name, run_job
    from align.rounds import reward_model_text, win_rate_rows
    from db.models import Job
    from db.session import session_scope

    if not claim_job(engine, job_id, default_worker_name()):
        raise ValidationError(f"job {job_id} was claimed by a worker before this process could start it")
    jobs_log, quiet = logging.getLogger("align.jobs"), _ExpectedFailure()
    jobs_log.addFilter(quiet)
    try:
        status = run_job(engine, job_id)
    finally:
        jobs_log.removeFilter(quiet)
    with session_scope(engine) as session:
        job = session.get(Job, job_id)
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


def cmd_round_start(args: argparse.Namespace) -> int:
    from align.config import load_config
    from align.rounds import queue_round
    from db.session import session_scope

    overrides = {}
    if args.stages:
        overrides["stages"] = [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.rl_algorithm:
        overrides["rl_algorithm"] = args.rl_algorithm
    config = load_config(Path(args.config) if args.config else None, **overrides)
    engine = _engine()
    with session_scope(engine) as session:
        rnd, job = queue_round(session, _actor(session), None if args.all else args.region, config)
        round_id, number, job_id = rnd.id, rnd.number, job.id
    scope = "all regions" if args.all else args.region
    print(f"round {round_id} ({scope}, #{number}): stages {', '.join(config.settings.stages)}; job {job_id}")
    if args.now:
        return _run_now(engine, job_id)
    print("queued; start a worker with `geoalign worker` (or add --now to run it here)")
    return 0


def cmd_round_resume(args: argparse.Namespace) -> int:
    from align.rounds import queue_resume
    from db.session import session_scope

    engine = _engine()
    with session_scope(engine) as session:
        job_id = queue_resume(session, _actor(session), args.id).id
    print(f"round {args.id}: resume queued as job {job_id}")
    return _run_now(engine, job_id) if args.now else 0


def cmd_round_cancel(args: argparse.Namespace) -> int:
    from align.jobs import request_cancel
    from align.rounds import jobs_for
    from db.session import session_scope

    with session_scope(_engine()) as session:
        job = jobs_for(session, [args.id]).get(args.id)
        if job is None:
            raise ValidationError(f"round {args.id} has no job")
        job = request_cancel(session, _actor(session), job.id)
        print(f"round {args.id}: " + ("cancelled" if job.status.value == "cancelled"
                                      else f"cancel requested; worker {job.worker} stops it at its next step"))
    return 0


def _scope(session, region_id: int | None) -> str:
    from db.models import Region

    return session.get(Region, region_id).code if region_id else "all"


def cmd_round_list(args: argparse.Namespace) -> int:
    from align.rounds import jobs_for, list_rounds
    from db.session import session_scope

    with session_scope(_engine()) as session:
        rounds = list_rounds(session, args.limit)
        if not rounds:
            print("no rounds yet; start one with `geoalign round start --region CODE` or `--all`")
            return 0
        jobs = jobs_for(session, [r.id for r in rounds])
        print(f"{'id':>4} {'scope':20} {'#':>3} {'status':10} {'done':28} {'now':16} version")
        for r in rounds:
            job = jobs.get(r.id)
            now = ""
            if job and job.status.value == "running":
                p = job.progress or {}
                now = f"{p.get('stage', '')} {p.get('step', '')}/{p.get('total') or '?'}"
            print(f"{r.id:4} {_scope(session, r.region_id):20} {r.number:3} {r.status.value:10} "
                  f"{','.join(r.completed_stages) or '-':28} {now:16} {(r.metrics or {}).get('version', '-')}")
    return 0


def cmd_round_show(args: argparse.Namespace) -> int:
    from align.rounds import jobs_for, reward_model_text, win_rate_rows, win_rate_text
    from db.errors import NotFound
    from db.models import Round
    from db.session import session_scope

    with session_scope(_engine()) as session:
        rnd = session.get(Round, args.id)
        if rnd is None:
            raise NotFound(f"round {args.id} does not exist")
        job = jobs_for(session, [rnd.id]).get(rnd.id)
        print(f"round {rnd.id}: {_scope(session, rnd.region_id)} #{rnd.number}, {rnd.status.value}")
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


def cmd_votes_simulate(args: argparse.Namespace) -> int:
    from collect.simulate import simulate_all_regions
    from db.session import session_scope

    with session_scope(_engine()) as session:
        counts = simulate_all_regions(session, args.region, per_region=args.limit, seed=args.seed)
    for code, n in counts.items():
        print(f"{code:24} {n} simulated votes")
    print(f"{sum(counts.values())} simulated votes (source=simulated; not human judgement)")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    import pandas as pd

    from db.queries import ALL_REGIONS
    from db.session import session_scope
    from rewards.dashboard import load_dashboard

    with session_scope(_engine()) as session:
        everything = load_dashboard(session, _actor(session), n_boot=args.bootstrap)
    region = args.region or ALL_REGIONS
    if args.region and args.region not in everything.regions:
        raise ValidationError(f"no votes in region {args.region!r} (regions with votes: "
                              f"{', '.join(everything.regions) or 'none'})")
    d = everything.region(region)
    if everything.total_votes == 0:
        print("no votes yet: the statistics appear once reviewers have judged pairs")
        return 0
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 3):
        print(f"win-rates ({region}; ties count half, both_bad shown apart, 95% CI)")
        print(d.win_rates[["region", "version", "opponent", "opponent_version", "n", "both_bad", "rate", "low",
                           "high"]].to_string(index=False) if not d.win_rates.empty else "  none")
        print(f"\nBradley–Terry leaderboard ({region}; base = 1000, bootstrap 95% CI)")
        print(d.leaderboard[["rank", "version", "rating", "low", "high", "games"]].to_string(index=False)
              if not d.leaderboard.empty else "  none")
        flagged = d.reviewers[d.reviewers["flagged"]] if not d.reviewers.empty else d.reviewers
        print(f"\nreviewers flagged: {len(flagged)}")
        for user, reasons in zip(flagged.get("user", []), flagged.get("reasons", []), strict=True):
            print(f"  {user}: {reasons}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in d.tables().items():
            frame.to_csv(out / f"{name}.csv", index=False)
        print(f"\nwrote {len(d.tables())} CSV tables to {out}")
    return 0


def add_round_commands(sub, add: Callable, formatter: type) -> None:
    """Register ``round`` and ``votes`` on the top-level subparsers."""
    rnd = sub.add_parser("round", help="alignment rounds: SFT → reward model → DPO → online RL, evaluate, publish",
                         description=__doc__, formatter_class=formatter)
    rnd = rnd.add_subparsers(dest="round_command", required=True, metavar="SUBCOMMAND")
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

    votes = sub.add_parser("votes", help="vote utilities", description="vote utilities", formatter_class=formatter)
    votes = votes.add_subparsers(dest="votes_command", required=True, metavar="SUBCOMMAND")
    p = add(votes, "simulate", cmd_votes_simulate, "cast simulated votes (rule-based judge) on queued pairs",
            "For load tests and offline demos of a full round: one simulated reviewer per region judges its "
            "queued pairs with the rule-based regional reward (rewards/rules.py). Votes are stored with "
            "source=simulated so they can be told apart from human judgement. Not for production data.")
    p.add_argument("--region", action="append", help="region code (repeatable; default: all)")
    p.add_argument("--limit", type=int, default=1000, help="votes per region at most")
    p.add_argument("--seed", type=int, default=0, help="seed for simulated review times")

    p = add(sub, "stats", cmd_stats, "win-rates vs base and parent, Bradley–Terry leaderboard, flagged reviewers",
            "The leads' dashboard figures in the terminal: each version's win-rate against the base and its "
            "parent with 95% CIs, the Bradley–Terry leaderboard with bootstrap CIs, and reviewers flagged by the "
            "quality checks. --out writes every dashboard table as CSV.")
    p.add_argument("--region", help="region code (default: all regions together)")
    p.add_argument("--out", help="folder to write every table as CSV")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the rating CIs")
