"""Alignment rounds: where a round is queued, run stage by stage, evaluated and published.

    geoalign round start --region en-GB-manchester       # queue a round for the worker
    geoalign round start --all --config round.yaml --now  # run it here, with progress bars
    geoalign round resume 3                               # continue a failed round from its last finished stage

A round: snapshot the datasets (train split for training, val for validation, never test) → the enabled stages
of ``align.stages`` (SFT → reward model → DPO → online RL), each continuing from the previous stage's adapter →
evaluation on test-split prompts (win-rates vs parent and base with 95% CIs: by the independent judge first, then
by the reward model and rules that training optimised) → publish the adapter
atomically as a new ``ModelVersion`` with its lineage → new pairs (new vs parent, new vs base) for reviewers.

Reward-only rounds (``--stages reward``, or a round whose policy stages were all skipped) retrain the reward model
alone. They publish it as a version with stage "reward" that keeps its parent's adapter (the same policy, so
generation and deployment of it serve the parent's policy), with the reward model's metrics and lineage; there is
no evaluation and there are no new pairs, since no policy changed. The next round continues the newest *policy*
version of its scope (its data "new since the parent" counts from that version), and starts from the newest
reward model of its scope, which may be a reward-only version's. ``round.parent`` naming a reward-only version
means its reward model and the policy it kept.

What can be checked before anything trains is checked when the round is queued and again when it starts: a
``lora:`` section that differs from the adapter a policy stage would continue (the first round fixes the LoRA
shape), and stages that would certainly publish nothing (none at all, or only reward and DPO with fewer preference
pairs than ``round.min_preference_pairs``; the pair count is checked at queue time only).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import align.evaluation  # called as align.evaluation.*, so a test can stand in for one of its functions
from align.config import RoundConfig, check_lora_continues, load_config
from align.jobs import Cancelled, JobContext, enqueue, register
from align.plan import Reporter, RoundPlan
from align.registry import BASE_VERSION, ensure_base_version, get_version
from align.reports import reward_model_text
from align.stages import StageCancelled, StageInputs, StageResult, read_result, run_stage
from collect.auth import CurrentUser, require
from collect.datasets import DatasetFilter, PreferenceStats, preference_rows, rankings_at_their_weight, sft_rows
from collect.prompting import BriefContext, dataset_prompt
from collect.reliability import reviewer_reliability
from db.errors import GeoAlignError, NotFound, ValidationError
from db.lookups import get_region
from db.models import AuditEvent, Job, JobStatus, ModelVersion, Prompt, Region, Round, Split, utcnow
from db.names import check_name
from db.session import session_scope
from db.settings import Settings, child_environment, get_settings

POST_STAGES = ("eval", "publish")
REWARD_ONLY = "reward"  # the stage of a version that only retrained the reward model (policy stages never are)
ACTIVE = (JobStatus.queued, JobStatus.running)
ROUNDS_ROLES = ("engineer", "admin")  # who may queue, resume and cancel rounds (the CLI acts as a system admin)
ROUND_NUMBER_LOCK = 0x6E756D  # PostgreSQL advisory-lock class for round numbering ("num"); the scope is the key


def round_dir(settings: Settings, round_id: int) -> Path:
    return settings.home / "rounds" / f"round-{round_id:05d}"


def scope_name(region_code: str | None) -> str:
    return region_code or "all"


# ------------------------------------------------------------------------------------------------ queueing


def queue_round(session: Session, actor: CurrentUser | None, region: str | None,
                config: RoundConfig | None = None) -> tuple[Round, Job]:
    """Create a queued round for one region (or all, with ``region=None``) and the job a worker will claim.

    Concurrent calls for one scope get consecutive numbers: numbering waits for the scope's lock (see
    ``_lock_round_numbers``), and the unique indexes on (region, number) back that up.
    """
    require(actor, *ROUNDS_ROLES)
    config = config or load_config()
    region_row = None
    if region is not None:
        region_row = get_region(session, region)
        check_name("region code", region)  # it names the round's version and adapter folder: fail before queueing
    # fail now, not in the worker: an unknown parent, a lora section its adapter ignores, nothing to train
    policy_parent, _ = round_parents(session, config, region_row.id if region_row else None)
    if policy_parent is not None and policy_parent.adapter_path and _trains_policy(config):
        check_lora_continues(config, policy_parent.adapter_path, policy_parent.name, policy_parent.base_model)
    _check_something_trains(session, config, region)
    region_id = region_row.id if region_row else None
    _lock_round_numbers(session, region_id)
    same_scope = Round.region_id == region_id if region_row else Round.region_id.is_(None)
    number = (session.scalar(select(func.max(Round.number)).where(same_scope)) or 0) + 1
    rnd = Round(number=number, region_id=region_id, status=JobStatus.queued, config=config.to_dict(),
                completed_stages=[], metrics={})
    session.add(rnd)
    try:
        session.flush()
    except IntegrityError as exc:  # only if a writer bypassed the lock: the unique index kept the numbers apart
        raise ValidationError(f"round {number} of {scope_name(region)} was queued by someone else at the same "
                              "moment; nothing was queued, try again") from exc
    job = enqueue(session, "round", {"round_id": rnd.id}, round_id=rnd.id)
    session.add(AuditEvent(user_id=actor.id, action="round.queue", entity="round", entity_id=rnd.id,
                           details={"region": scope_name(region), "stages": config.settings.stages, "job": job.id}))
    return rnd, job


def _lock_round_numbers(session: Session, region_id: int | None) -> None:
    """Hold the scope's numbering lock until the transaction ends, so the next max(number) read is the latest.

    PostgreSQL: a transaction-scoped advisory lock per scope. SQLite: its single write lock, taken now by a write
    that changes nothing (the busy timeout makes a second caller wait for the first to commit).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(ROUND_NUMBER_LOCK, region_id or 0)))
    else:
        session.execute(update(Round).where(Round.id == -1).values(number=Round.number),
                        execution_options={"synchronize_session": False})


def _trains_policy(config: RoundConfig) -> bool:
    """Whether the round has a policy stage (only those read the lora section)."""
    return any(s != "reward" for s in config.settings.stages)


def _check_something_trains(session: Session, config: RoundConfig, region: str | None) -> None:
    """Refuse a round whose stages all need more preference pairs than the scope has (reward and DPO alone)."""
    stages, minimum = config.settings.stages, config.settings.min_preference_pairs
    if not set(stages) <= {"reward", "dpo"}:
        return
    # the train split's pairs bound what either stage gets (DPO trains on a subset of them); the format is irrelevant
    train = DatasetFilter(splits=("train",), regions=(region,) if region else None)
    n = len(preference_rows(session, train, "text")[0])
    if n < minimum:
        raise ValidationError(f"round.stages {stages} would publish nothing: {n} preference pairs in the train split "
                              f"of {scope_name(region)}, fewer than round.min_preference_pairs ({minimum})")


def round_parents(session: Session, config: RoundConfig, region_id: int | None,
                  base: ModelVersion | None = None) -> tuple[ModelVersion | None, ModelVersion | None]:
    """(the policy the round continues, the version whose reward model it starts from); ``base`` when none.

    ``round.parent`` names both, except that a reward-only version's policy is the one it kept. Otherwise the newest
    policy version of the scope and the newest version of any kind (a reward-only one has the newest reward model).
    """
    if config.settings.parent:
        chosen = get_version(session, config.settings.parent)
        policy = chosen
        while policy.stage == REWARD_ONLY and policy.parent is not None:
            policy = policy.parent
        return policy, chosen
    return latest_version(session, region_id, policy=True) or base, latest_version(session, region_id) or base


def queue_resume(session: Session, actor: CurrentUser | None, round_id: int) -> Job:
    """Queue a failed or cancelled round again; it continues after its last completed stage."""
    require(actor, *ROUNDS_ROLES)
    rnd = session.get(Round, round_id)
    if rnd is None:
        raise NotFound(f"round {round_id} does not exist")
    if rnd.status not in (JobStatus.failed, JobStatus.cancelled):
        raise ValidationError(f"round {round_id} is {rnd.status.value}; only failed or cancelled rounds resume")
    active = session.scalar(select(Job.id).where(Job.round_id == round_id, Job.status.in_(ACTIVE)))
    if active:
        raise ValidationError(f"round {round_id} already has job {active} queued or running")
    rnd.status, rnd.error, rnd.finished_at = JobStatus.queued, None, None
    job = enqueue(session, "round", {"round_id": round_id, "resume": True}, round_id=round_id)
    session.add(AuditEvent(user_id=actor.id, action="round.resume", entity="round", entity_id=round_id,
                           details={"job": job.id, "completed_stages": list(rnd.completed_stages)}))
    return job


def has_active_round(session: Session) -> bool:
    """Whether any round has a queued or running job (the Rounds page then refreshes itself)."""
    stmt = select(Job.id).where(Job.round_id.is_not(None), Job.status.in_(ACTIVE)).limit(1)
    return session.scalar(stmt) is not None


def list_rounds(session: Session, limit: int = 50) -> list[Round]:
    return list(session.scalars(select(Round).order_by(Round.id.desc()).limit(limit)))


def settle_round(session: Session, job: Job, status: JobStatus, when: datetime) -> None:
    """The queue's hook for a round job that ended without the round settling itself (cancelled while queued,
    reaped, failed or cancelled in the worker, unknown to it): the round takes ``status`` unless it has finished."""
    if job.round_id is not None:
        _settle(session, job.round_id, status, when)


@register("round", settle=settle_round)
def round_job(ctx: JobContext) -> dict:
    """The worker's handler for kind "round"."""
    return run_round(ctx.engine, ctx.payload["round_id"], ctx=ctx, progress=False)


# ------------------------------------------------------------------------------------------------ running


def run_round(engine: Engine, round_id: int, ctx: JobContext | None = None, progress: bool = True,
              settings: Settings | None = None) -> dict[str, Any]:
    """Run (or continue) a round to the end; returns its metrics. The Round row records each finished stage."""
    settings = settings or get_settings()
    report = Reporter(ctx)
    plan = _start(engine, round_id, settings)
    workdir = round_dir(settings, round_id)
    try:
        if plan.parent_adapter and _trains_policy(plan.config):  # as at queue time: the parent may have changed
            check_lora_continues(plan.config, plan.parent_adapter, plan.parent_name, plan.base_model)
        manifest = snapshot_datasets(engine, plan, workdir)
        report.log(f"round {round_id}: datasets {json.dumps(manifest['counts'])}")
        adapter, reward_model = plan.parent_adapter, plan.parent_reward_model
        stage_metrics: dict[str, Any] = {}
        for stage in plan.config.settings.stages:
            result = read_result(workdir, stage) if stage in plan.completed else None
            if result is None:
                report.progress(stage=stage, step=0, total=None)
                report.log(f"stage {stage}: starting")
                inputs = StageInputs(stage=stage, workdir=str(workdir), config=plan.config.raw,
                                     base_model=plan.base_model, adapter_in=adapter, reward_model=reward_model,
                                     region_rules=plan.region_rules)
                started = time.monotonic()
                result = _run_stage(inputs, plan, report, ctx)
                result.metrics["wall_s"] = round(time.monotonic() - started, 2)  # loading + training + saving
                _mark(engine, round_id, stage, result)
                report.log(f"stage {stage}: " + (f"skipped ({result.skipped})" if result.skipped
                                                 else json.dumps(result.metrics)))
            adapter = result.adapter or adapter
            reward_model = result.reward_model or reward_model
            stage_metrics[stage] = result.metrics | ({"skipped": result.skipped} if result.skipped else {})
        trained = [s for s in plan.config.settings.stages if not stage_metrics[s].get("skipped")]
        if not trained:
            reasons = "; ".join(f"{s}: {stage_metrics[s]['skipped']}" for s in plan.config.settings.stages)
            raise ValidationError(f"no stage trained, nothing to publish ({reasons})")
        policy_trained = [s for s in trained if s != "reward"]
        evaluation = None  # a reward-only round changed no policy: nothing to evaluate or to pair
        if policy_trained:
            report.progress(stage="eval", step=0, total=None)
            started = time.monotonic()
            evaluation = align.evaluation.evaluate_round(engine, plan, workdir, adapter, reward_model, report)
            evaluation["win_rates"]["wall_s"] = round(time.monotonic() - started, 2)
        started = time.monotonic()
        report.progress(stage="publish", step=0, total=None)
        version = publish(engine, plan, settings, adapter if policy_trained else None, reward_model,
                          policy_trained[-1] if policy_trained else REWARD_ONLY, manifest, stage_metrics, evaluation)
        publish_s = round(time.monotonic() - started, 2)
        report.progress(stage="done", step=1, total=1)
        if evaluation is None:
            report.log(f"published {version}: reward model only, policy unchanged from {plan.parent_name}; "
                       + reward_model_text(stage_metrics["reward"]))
            return {"version": version, "stages": stage_metrics, "reward_only": True, "parent": plan.parent_name,
                    "publish_s": publish_s}
        report.log(f"published {version}: {json.dumps(evaluation['win_rates'])}")
        return {"version": version, "stages": stage_metrics, "eval": evaluation["win_rates"], "publish_s": publish_s}
    except (Cancelled, StageCancelled) as exc:
        _finish(engine, round_id, JobStatus.cancelled, str(exc))
        raise Cancelled(str(exc)) from exc
    except BaseException as exc:
        _finish(engine, round_id, JobStatus.failed, f"{type(exc).__name__}: {exc}")
        raise


def _start(engine: Engine, round_id: int, settings: Settings) -> RoundPlan:
    with session_scope(engine) as session:
        rnd = session.get(Round, round_id)
        if rnd is None:
            raise NotFound(f"round {round_id} does not exist")
        if rnd.status == JobStatus.succeeded:
            raise ValidationError(f"round {round_id} already succeeded")
        config = load_config(rnd.config)
        region = session.get(Region, rnd.region_id) if rnd.region_id else None
        base = ensure_base_version(session, settings.base_model)
        parent, rewarded = round_parents(session, config, rnd.region_id, base)
        rnd.status, rnd.started_at, rnd.error = JobStatus.running, rnd.started_at or utcnow(), None
        regions = [region] if region else list(session.scalars(select(Region)))
        from align.sampling import prompt_format_of  # lazy: align.sampling imports torch and transformers

        return RoundPlan(round_id=rnd.id, number=rnd.number, region=region.code if region else None, config=config,
                         base_model=base.base_model, parent_name=parent.name, parent_adapter=parent.adapter_path,
                         parent_reward_model=(rewarded.lineage or {}).get("reward_model"),
                         completed=list(rnd.completed_stages),
                         region_rules={r.code: {"local_terms": list(r.local_terms or []),
                                                "avoid_terms": list(r.avoid_terms or [])} for r in regions},
                         prompt_format=prompt_format_of(base.base_model),
                         parent_published_at=parent.created_at if parent.adapter_path else None)


def latest_version(session: Session, region_id: int | None, policy: bool = False) -> ModelVersion | None:
    """The newest published version trained for this scope (a region, or all regions for None); with ``policy``,
    the newest that trained the policy (not a reward-only version)."""
    scope = ModelVersion.region_id == region_id if region_id else ModelVersion.region_id.is_(None)
    kind = [ModelVersion.stage != REWARD_ONLY] if policy else []
    return session.scalar(select(ModelVersion).where(scope, ModelVersion.name != BASE_VERSION,
                                                     ModelVersion.status == "ready", *kind)
                          .order_by(ModelVersion.id.desc()).limit(1))


def _run_stage(inputs: StageInputs, plan: RoundPlan, report: Reporter, ctx: JobContext | None) -> StageResult:
    if plan.config.settings.launcher == "accelerate":
        return launch_stage(inputs, plan.config.settings.num_processes, job_id=ctx.job_id if ctx else None)
    from align.stages.progress import StageProgress  # lazy: a TrainerCallback, it imports transformers

    callbacks = [StageProgress(inputs.stage, report.progress, report.cancelled)]
    return run_stage(inputs, callbacks)


def launch_stage(inputs: StageInputs, num_processes: int, job_id: int | None = None) -> StageResult:
    """Run a stage under ``accelerate launch`` (MULTI_CPU here; a GPU machine uses its own accelerate config)."""
    inputs.stage_dir.mkdir(parents=True, exist_ok=True)
    spec = inputs.stage_dir / "inputs.json"
    spec.write_text(inputs.to_json(), encoding="utf-8")
    # --multi_gpu selects accelerate's torchrun-based launcher; without CUDA each rank runs on the CPU and
    # accelerate sets up MULTI_CPU (gloo). A GPU machine passes its own config (DeepSpeed, FSDP) the same way.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    env = child_environment(**({"GEOALIGN_JOB_ID": str(job_id)} if job_id else {}))
    proc = subprocess.run([*cmd, "-m", "align.stages", str(spec)], env=env, capture_output=True, text=True)
    (inputs.stage_dir / "launch.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise GeoAlignError(f"stage {inputs.stage} failed under accelerate (exit {proc.returncode}): "
                            + " | ".join(tail))
    result = read_result(inputs.workdir, inputs.stage)
    if result is None:
        raise GeoAlignError(f"stage {inputs.stage} ended without writing its result")
    return result


def _mark(engine: Engine, round_id: int, stage: str, result: StageResult) -> None:
    with session_scope(engine) as session:
        rnd = session.get(Round, round_id)
        rnd.completed_stages = [*rnd.completed_stages, stage] if stage not in rnd.completed_stages \
            else list(rnd.completed_stages)
        rnd.metrics = {**rnd.metrics, stage: result.metrics | ({"skipped": result.skipped} if result.skipped else {})}


def _finish(engine: Engine, round_id: int, status: JobStatus, error: str) -> None:
    with session_scope(engine) as session:
        _settle(session, round_id, status, utcnow(), error)


def _settle(session: Session, round_id: int, status: JobStatus, when: datetime, error: str | None = None) -> None:
    """End the round as ``status`` (with ``error``, if given) unless it has finished already: the one place a round
    that did not publish gets its final status."""
    rnd = session.get(Round, round_id, with_for_update=True)
    if rnd is not None and rnd.status in ACTIVE:
        rnd.status, rnd.finished_at = status, when
        if error is not None:
            rnd.error = error


# ------------------------------------------------------------------------------------------------ datasets


def _hash_rows(rows: list[dict]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
    return digest.hexdigest()


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)


def snapshot_datasets(engine: Engine, plan: RoundPlan, workdir: Path) -> dict[str, Any]:
    """Write the round's datasets once (a resumed round trains on the same data); returns the manifest.

    Training files come from the train split only and validation files from the val split; the builders in
    ``collect.datasets`` refuse the test split for training, and test prompts are read only by evaluation.

    What each stage trains on:
    - SFT and DPO continue the parent's adapter, so they train on what is *new since the parent was published*
      (gold examples and rewrites, votes) plus a replay sample of older rows (``round.replay_ratio`` per new row,
      so the adapter keeps what it learnt). With nothing new, the stage is skipped rather than re-run on the
      parent's data, which would only push the same pairs further each round. A first round has no parent
      adapter: everything is new.
    - The reward model starts afresh from its backbone every round, so it trains on every vote so far.
    - With ``round.vote_weighting: reliability`` every preference file is built with each reviewer's reliability
      per region, estimated once from all train- and val-split votes of the scope (``collect.reliability``): it
      sets the reward model's margins and the DPO rows' ``vote_weight`` (``collect.datasets``); the manifest
      records a summary per region. With ``none`` (the default) the files are exactly as without the setting.
    - Online RL takes the next ``round.rl_prompts`` train prompts of a fixed shuffled order, wrapping around, so
      consecutive rounds practise on different briefs.
    """
    data = workdir / "data"
    manifest_path = data / "manifest.json"
    if manifest_path.exists():
        return json.loads(manifest_path.read_text(encoding="utf-8"))
    data.mkdir(parents=True, exist_ok=True)
    regions = (plan.region,) if plan.region else None
    settings = plan.config.settings
    train_filter = DatasetFilter(splits=("train",), regions=regions)
    with session_scope(engine) as session:
        fmt = plan.prompt_format
        reliability = reviewer_reliability(session, regions) if settings.vote_weighting == "reliability" else None

        def pref(f: DatasetFilter) -> tuple[list[dict], PreferenceStats]:
            return preference_rows(session, f, fmt, reliability=reliability)

        files = {"sft_val": sft_rows(session, DatasetFilter(splits=("val",), regions=regions), fmt)}
        # trainers weigh rows alike: a ranking enters as k-1 of its pairs, the comparisons it is worth
        pref_train, stats = pref(train_filter)
        pref_train = rankings_at_their_weight(pref_train)
        pref_val = rankings_at_their_weight(pref(DatasetFilter(splits=("val",), regions=regions))[0])
        since = plan.parent_published_at
        if since is None:
            sft_new, sft_old = sft_rows(session, train_filter, fmt), []
            dpo_new, dpo_old = pref_train, []
        else:
            sft_new = sft_rows(session, replace(train_filter, since=since), fmt)
            sft_old = sft_rows(session, replace(train_filter, until=since), fmt)
            dpo_new = rankings_at_their_weight(pref(replace(train_filter, since=since))[0])
            dpo_old = rankings_at_their_weight(pref(replace(train_filter, until=since))[0])
        rl = session.execute(select(Prompt, Region).join(Region, Prompt.region_id == Region.id)
                             .where(Prompt.split == Split.train, *([Region.code == plan.region] if regions else []))
                             .order_by(Prompt.content_hash)).all()
        rl_rows = [{"prompt": dataset_prompt(BriefContext.of_prompt(r, p), fmt), "region": r.code,
                    "task_type": p.task_type.value, "prompt_id": p.id} for p, r in rl]
    rng = random.Random(settings.seed * 1_000_003 + plan.number)
    sft_replay, dpo_replay = _replay(sft_old, len(sft_new), settings.replay_ratio, rng), \
        _replay(dpo_old, len(dpo_new), settings.replay_ratio, rng)
    files |= {"sft_train": sft_new + sft_replay, "dpo_train": dpo_new + dpo_replay,
              "rl_prompts": rotate_prompts(rl_rows, settings.rl_prompts, plan.number, settings.seed)}
    rounds_seen = [r["round"] for r in pref_train + pref_val if r["round"] is not None]
    newest_round = max(rounds_seen) if rounds_seen else None
    files |= {"pref_train": pref_train, "pref_val": pref_val,
              "pref_newest": [r for r in pref_train + pref_val if r["round"] == newest_round]}
    for name, rows in files.items():
        _write_jsonl(data / f"{name}.jsonl", rows)
    manifest = {"counts": {k: len(v) for k, v in files.items()},
                "sha256": {k: _hash_rows(v) for k, v in files.items()},
                "new_since_parent": {"since": since.isoformat() if since else None, "sft_new": len(sft_new),
                                     "sft_replay": len(sft_replay), "dpo_new": len(dpo_new),
                                     "dpo_replay": len(dpo_replay)},
                "votes": stats.votes, "ties_dropped": stats.ties_dropped, "both_bad": stats.both_bad,
                "newest_round": newest_round, "region": scope_name(plan.region), "prompt_format": fmt,
                "vote_weighting": settings.vote_weighting}
    if reliability is not None:
        manifest["reliability"] = reliability.summary()
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, manifest_path)  # written last: a half-written snapshot is rebuilt on resume
    return manifest


def _replay(old: list[dict], n_new: int, ratio: float, rng: random.Random) -> list[dict]:
    """A seeded sample of ``ratio * n_new`` older rows (none when nothing is new: the stage then has nothing to do)."""
    k = min(len(old), round(ratio * n_new))
    return rng.sample(old, k) if k else []


def rotate_prompts(rows: list[dict], per_round: int, number: int, seed: int) -> list[dict]:
    """Round ``number``'s share of ``rows``: the next ``per_round`` of one seeded shuffle, wrapping around.

    With 5 rows and 2 a round, round 1 takes shuffled positions 0-1, round 2 positions 2-3, round 3 positions 4, 0.
    """
    if not rows or per_round <= 0:
        return []
    order = list(rows)
    random.Random(seed).shuffle(order)
    start = (number - 1) * per_round
    return [order[(start + i) % len(order)] for i in range(min(per_round, len(order)))]


# ------------------------------------------------------------------------------------------------ publishing


def version_name(plan: RoundPlan) -> str:
    return f"{scope_name(plan.region)}-r{plan.number}"


def publish(engine: Engine, plan: RoundPlan, settings: Settings, adapter: str | None, reward_model: str | None,
            last_stage: str, manifest: dict, stage_metrics: dict, evaluation: dict | None) -> str:
    """Claim the version's name, move its adapter and reward model into place, and commit all in one transaction.

    Folders are copied into fresh temporary folders first. The version row is inserted (its unique name is then
    this transaction's until it ends) before anything is renamed into place, and a folder is renamed only onto a
    path that does not exist, so a publish never replaces or removes what another one made: a name that is taken,
    by a row or by a folder, is a ValidationError that leaves them as they were. Any error before the commit
    removes this attempt's folders while it still holds the name, so it leaves no version, pairs, folders or
    temporary copies behind. A reward-only round (``adapter`` and ``evaluation`` None) publishes its reward model
    under the parent's adapter, with neither samples nor pairs.
    """
    name = check_name("model version", version_name(plan))
    reward_only = evaluation is None
    dest = settings.adapters_dir / name
    rm_dest = settings.home / "reward_models" / name if reward_model else None
    staged: dict[Path, Path] = {}  # final folder -> this attempt's temporary copy
    try:
        with session_scope(engine) as session:
            placed: list[Path] = []
            try:
                if session.scalar(select(ModelVersion.id).where(ModelVersion.name == name)) is not None:
                    raise ValidationError(f"model version {name} already exists; round {plan.round_id} publishes "
                                          "nothing over it")
                if not reward_only:
                    staged[dest] = _stage_copy(adapter, dest)
                if rm_dest is not None and Path(reward_model).resolve() != rm_dest.resolve():
                    staged[rm_dest] = _stage_copy(reward_model, rm_dest)
                parent = get_version(session, plan.parent_name)
                base = get_version(session, BASE_VERSION)
                rnd = session.get(Round, plan.round_id)
                version = ModelVersion(
                    name=name, base_model=plan.base_model,
                    adapter_path=plan.parent_adapter if reward_only else str(dest),
                    parent_id=parent.id, round_id=plan.round_id, region_id=rnd.region_id, stage=last_stage,
                    metrics={"stages": stage_metrics} | ({} if reward_only else {"eval": evaluation["win_rates"]}),
                    lineage={"parent": parent.name, "round": plan.round_id, "round_number": plan.number,
                             "region": scope_name(plan.region), "datasets": manifest["sha256"],
                             "counts": manifest["counts"], "votes": manifest["votes"],
                             "newest_round": manifest["newest_round"], "config": plan.config.to_dict(),
                             # a manifest written before the setting existed was built without weighting
                             "vote_weighting": manifest.get("vote_weighting", "none"),
                             **({"reliability": manifest["reliability"]} if "reliability" in manifest else {}),
                             "reward_model": str(rm_dest) if rm_dest else None, "reward_only": reward_only})
                session.add(version)
                try:
                    session.flush()  # claims the name: a concurrent publish of it waits here, then fails
                except IntegrityError as exc:
                    raise ValidationError(f"model version {name} was published by another round at the same "
                                          f"moment; round {plan.round_id} publishes nothing over it") from exc
                for final, tmp in staged.items():
                    _place(tmp, final)
                    placed.append(final)
                rnd.status, rnd.finished_at = JobStatus.succeeded, utcnow()
                if reward_only:
                    pairs: dict[str, int] = {}
                    rnd.completed_stages = [*dict.fromkeys([*rnd.completed_stages, "publish"])]
                    rnd.metrics = {**rnd.metrics, "version": name, "reward_only": True}
                else:
                    pairs = align.evaluation.store_samples_and_pairs(session, evaluation, version, parent, base, plan)
                    rnd.completed_stages = [*dict.fromkeys([*rnd.completed_stages, *POST_STAGES])]
                    rnd.metrics = {**rnd.metrics, "eval": evaluation["win_rates"], "version": name,
                                   "new_pairs": pairs}
                session.add(AuditEvent(action="version.publish", entity="model_version", entity_id=version.id,
                                       details={"round": plan.round_id, "parent": parent.name, "pairs": pairs,
                                                "reward_only": reward_only}))
                session.flush()
            except BaseException:
                # broad on purpose: whatever failed, the folders placed above are this attempt's, and removing them
                # before the rollback releases the name means no other publish can have put anything there
                for final in placed:
                    shutil.rmtree(final, ignore_errors=True)
                raise
    finally:
        for tmp in staged.values():
            shutil.rmtree(tmp, ignore_errors=True)  # gone already once renamed into place
    return name


def _stage_copy(source: str | Path, final: Path) -> Path:
    """A copy of ``source`` in a temporary folder of this attempt's own, beside ``final`` (same file system)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    shutil.copytree(source, tmp)
    return tmp


def _place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``, which must not exist: an existing folder is someone else's and stays as it is."""
    if os.path.lexists(final):
        raise ValidationError(f"{final} already exists but no model version owns it (left by an interrupted "
                              "publish?); move it away, then resume the round")
    os.rename(tmp, final)
