"""A whole round on the tiny model: datasets, SFT → reward → DPO → GRPO, evaluation, atomic publish, new pairs.

Runs on SQLite and PostgreSQL. The votes come from simulated reviewers (collect/simulate.py) so the reward and
DPO stages have data; a worker killed with SIGKILL mid-stage is reaped and the round resumes to the end. A reward-only
round publishes its reward model; a lora section that the parent's adapter would ignore is refused.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy import func, select

from align.config import load_config
from align.jobs import claim_job, reap_stale, run_job
from align.registry import ensure_base_version
from align.rounds import queue_resume, queue_round, round_dir, round_parents
from align.sampling import DecodingParams, generate_candidates
from cli.common import cli_actor
from cli.demo import DEMO_DATA
from cli.main import main
from collect.ingest import import_examples, import_regions
from collect.pairing import make_pairs
from collect.simulate import simulate_all_regions
from collect.tags import ensure_default_tags
from db.errors import ConfigError, NotFound, ValidationError
from db.models import Generation, Job, JobStatus, ModelVersion, Pair, Prompt, Region, Round, Split
from db.session import session_scope
from db.settings import Settings

REGION = "en-GB-manchester"
# Small enough for CI (a few steps per stage), large enough that every stage really trains.
FAST = {"round": {"min_preference_pairs": 4, "eval_prompts": 4, "review_prompts": 6, "max_new_tokens": 24,
                  "rl_prompts": 8, "early_stopping_patience": 0},
        "sft": {"max_steps": 4, "save_steps": 2}, "reward": {"max_steps": 3}, "dpo": {"max_steps": 3},
        "rl": {"max_steps": 2, "max_completion_length": 16, "per_device_train_batch_size": 4, "num_generations": 2}}


@pytest.fixture
def round_env(request, home, tiny_model, monkeypatch):
    """(engine, settings) for SQLite or PostgreSQL, with Manchester's demo data, base pairs and simulated votes;
    "chat" is SQLite with a base model that has a chat template."""
    if request.param == "chat":
        tiny_model = request.getfixturevalue("tiny_chat_model")
    monkeypatch.setenv("GEOALIGN_BASE_MODEL", str(tiny_model))
    if request.param == "postgres":
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("pg_url"))
    settings = Settings.from_env()
    engine = request.getfixturevalue("pg_engine" if request.param == "postgres" else "engine")
    with session_scope(engine) as s:
        ensure_default_tags(s)
        import_regions(s, DEMO_DATA / REGION / "region.json")
        s.flush()
        import_examples(s, DEMO_DATA / REGION / "examples.jsonl", region=REGION)
    with session_scope(engine) as s:
        base = ensure_base_version(s, str(tiny_model))
        prompt_ids = list(s.scalars(select(Prompt.id).where(Prompt.split.in_([Split.train, Split.val]))
                                    .order_by(Prompt.content_hash).limit(24)))
        generate_candidates(s, base, prompt_ids, 2, DecodingParams(max_new_tokens=24), progress=False)
        make_pairs(s, prompt_ids, base, base)
    with session_scope(engine) as s:
        assert sum(simulate_all_regions(s).values()) >= 12
    return engine, settings


def _queue(engine, config=FAST, region=REGION) -> tuple[int, int]:
    with session_scope(engine) as s:
        rnd, job = queue_round(s, cli_actor(s), region, load_config(config))
        return rnd.id, job.id


def _lora_b(adapter: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(adapter / "adapter_model.safetensors").items() if "lora_B" in k}


def _assert_each_stage_trained(workdir: Path, metrics: dict) -> None:
    """Each policy stage's adapter moved away from the one it started from, and every logged loss is finite."""
    previous: dict[str, torch.Tensor] | None = None  # SFT starts from a fresh LoRA, whose lora_B is all zeros
    for stage in ("sft", "dpo", "rl"):
        weights = _lora_b(workdir / "stages" / stage / "adapter")
        assert weights and any(bool(w.abs().sum() > 0) for w in weights.values()), stage
        if previous is not None:
            assert weights.keys() == previous.keys()
            assert any(not torch.equal(weights[k], previous[k]) for k in weights), f"{stage} left it as it was"
        previous = weights
    for stage in ("sft", "reward", "dpo", "rl"):
        assert math.isfinite(metrics[stage]["train_loss"]), stage
        for state in (workdir / "stages" / stage).glob("**/trainer_state.json"):
            logged = [h[key] for h in json.loads(state.read_text())["log_history"] for key in h if "loss" in key]
            assert all(math.isfinite(value) for value in logged), (stage, state)


@pytest.mark.parametrize("round_env", ["sqlite", "postgres"], indirect=True)
def test_full_round_publishes_a_version_and_new_pairs(round_env, monkeypatch):
    engine, settings = round_env
    monkeypatch.setattr("align.rounds.get_settings", lambda: settings)
    round_id, job_id = _queue(engine)
    assert claim_job(engine, job_id, "test")
    assert run_job(engine, job_id) == JobStatus.succeeded

    workdir = round_dir(settings, round_id)
    with session_scope(engine) as s:
        rnd, job = s.get(Round, round_id), s.get(Job, job_id)
        assert rnd.status == JobStatus.succeeded and job.status == JobStatus.succeeded
        assert rnd.completed_stages == ["sft", "reward", "dpo", "rl", "eval", "publish"]
        for stage in ("sft", "reward", "dpo", "rl"):
            assert rnd.metrics[stage]["steps"] > 0 and "skipped" not in rnd.metrics[stage], stage
        reward = rnd.metrics["reward"]
        assert reward["train_sample_accuracy"] is not None and reward["train_sample_pairs"] == reward["train_pairs"]
        assert reward["val_accuracy"] is not None and reward["val_accuracy_from"]  # the trainer's own evaluation
        assert {p["stage"] for p in job.progress["history"]} >= {"sft", "reward", "dpo", "rl"}

        version = s.scalar(select(ModelVersion).where(ModelVersion.round_id == round_id))
        assert version.name == f"{REGION}-r1" and version.parent.name == "base" and version.stage == "rl"
        assert (Path(version.adapter_path) / "adapter_config.json").exists()
        assert version.lineage["datasets"]["sft_train"] and version.lineage["votes"] >= 12
        assert version.lineage["config"]["round"]["stages"] == ["sft", "reward", "dpo", "rl"]
        assert Path(version.lineage["reward_model"]).is_dir()
        wr = version.metrics["eval"]["vs_base"]
        assert wr["n"] >= 1 and wr["low"] <= wr["rate"] <= wr["high"]
        judged = version.metrics["eval"]["judge_vs_base"]  # the independent judge, beside the trained-on scorers
        assert judged["n"] == wr["n"] and version.metrics["eval"]["judge"].startswith("locality-judge")
        terms = rnd.metrics["rl"]["reward_terms"]  # each reward's share of GRPO's signal is recorded
        assert set(terms) == {"regional_rules", "reward_model"}
        assert abs(sum(t["share"] for t in terms.values()) - 1) < 1e-6 or not any(t["share"] for t in terms.values())

        pairs = s.scalars(select(Pair).where(Pair.round_id == round_id)).all()
        assert pairs and all(version.id in (p.model_a_id, p.model_b_id) for p in pairs)
        drawn = set(s.scalars(select(Generation.id).where(Generation.params["purpose"].as_string()
                                                          == f"round {round_id} evaluation")))
        predicted = [p for p in pairs if p.generation_a_id in drawn and p.generation_b_id in drawn]
        assert predicted and all(0 <= p.predicted_a <= 1 for p in predicted)  # the round's reward model's guess
        assert all(p.predicted_a is None for p in pairs if p not in predicted)  # older samples: never scored
        splits = set(s.scalars(select(Prompt.split).where(Prompt.id.in_([p.prompt_id for p in pairs]))))
        assert splits == {Split.train, Split.val, Split.test}  # val pairs: next round's validation votes

        test_prompts = {p.text for p in s.scalars(select(Prompt).where(Prompt.split == Split.test))}
        rnd_metrics = rnd.metrics
    # the test split never reaches a training file
    for name in ("sft_train", "pref_train", "rl_prompts"):
        rows = [json.loads(line) for line in (workdir / "data" / f"{name}.jsonl").read_text().splitlines()]
        assert rows and all(r.get("split", "train") == "train" for r in rows), name
        assert not any(t in r["prompt"] for r in rows for t in test_prompts), name
    assert list((workdir / "stages" / "sft" / "checkpoints").glob("runs/**/events.out.tfevents.*"))  # TensorBoard
    _assert_each_stage_trained(workdir, rnd_metrics)
    samples = [json.loads(line) for line in (workdir / "eval" / "samples.jsonl").read_text().splitlines()]
    assert {"new", "parent", "base", "sft"} <= set(samples[0]["outputs"])

    # the next round continues from this version, on the votes cast on its pairs
    with session_scope(engine) as s:
        assert sum(simulate_all_regions(s).values()) > 0
    round2, job2 = _queue(engine, FAST | {"round": FAST["round"] | {"stages": ["dpo"], "min_preference_pairs": 1}})
    assert claim_job(engine, job2, "test") and run_job(engine, job2) == JobStatus.succeeded
    with session_scope(engine) as s:
        v2 = s.scalar(select(ModelVersion).where(ModelVersion.round_id == round2))
        assert v2.parent.name == f"{REGION}-r1" and v2.stage == "dpo" and v2.name == f"{REGION}-r2"
    # round 2's DPO trains on the votes cast since r1 was published plus a replay sample, not on every vote again
    manifest = json.loads((round_dir(settings, round2) / "data" / "manifest.json").read_text())
    fresh = manifest["new_since_parent"]
    assert fresh["since"] is not None and fresh["dpo_new"] > 0
    older = manifest["counts"]["pref_train"] - fresh["dpo_new"]
    assert older > 0 and fresh["dpo_replay"] == min(round(0.5 * fresh["dpo_new"]), older)
    assert manifest["counts"]["dpo_train"] == fresh["dpo_new"] + fresh["dpo_replay"]
    assert fresh["sft_new"] == 0  # no new gold or rewrites: round 2's SFT would have been skipped


@pytest.mark.parametrize("round_env", ["chat"], indirect=True)
def test_a_chat_model_trains_every_stage_on_conversational_rows(round_env, monkeypatch):
    """A base model with a chat template gets TRL's conversational formats in SFT, reward, DPO and GRPO."""
    engine, settings = round_env
    monkeypatch.setattr("align.rounds.get_settings", lambda: settings)
    # the tiny tokenizer spells the chat markers and the system message out in many small pieces
    longer = {stage: FAST[stage] | {"max_length": 512} for stage in ("sft", "dpo")}
    round_id, job_id = _queue(engine, FAST | longer)
    assert claim_job(engine, job_id, "test") and run_job(engine, job_id) == JobStatus.succeeded
    data = round_dir(settings, round_id) / "data"
    assert json.loads((data / "manifest.json").read_text())["prompt_format"] == "conversational"
    read = {name: [json.loads(line) for line in (data / f"{name}.jsonl").read_text().splitlines()]
            for name in ("sft_train", "pref_train", "rl_prompts")}
    for rows in read.values():
        assert rows and all([m["role"] for m in r["prompt"]] == ["system", "user"] for r in rows)
        assert all("Manchester (en-GB)" in r["prompt"][0]["content"] for r in rows)
    assert all(r["completion"][0]["role"] == "assistant" for r in read["sft_train"])
    assert all(r["chosen"][0]["role"] == r["rejected"][0]["role"] == "assistant" for r in read["pref_train"])
    with session_scope(engine) as s:
        rnd = s.get(Round, round_id)
        for stage in ("sft", "reward", "dpo", "rl"):
            assert rnd.metrics[stage]["steps"] > 0 and "skipped" not in rnd.metrics[stage], stage
    samples = [json.loads(line) for line in (round_dir(settings, round_id) / "eval" / "samples.jsonl")
               .read_text().splitlines()]
    assert samples and all(isinstance(r["prompt"], list) and r["outputs"]["new"] is not None for r in samples)


@pytest.mark.parametrize("round_env", ["sqlite"], indirect=True)
def test_queue_errors_and_a_reward_only_round(round_env, monkeypatch, capsys):
    """``round start --stages reward --now`` publishes the reward model as a version that keeps the policy."""
    engine, settings = round_env
    monkeypatch.setattr("align.rounds.get_settings", lambda: settings)
    with session_scope(engine) as s:
        with pytest.raises(NotFound, match="unknown region 'xx-nowhere'"):
            queue_round(s, cli_actor(s), "xx-nowhere", load_config())
        with pytest.raises(NotFound, match="unknown model version 'nope'"):
            queue_round(s, cli_actor(s), REGION, load_config({"round": {"parent": "nope"}}))
        with pytest.raises(ValidationError, match=r"would publish nothing: \d+ preference pairs .* fewer than"):
            queue_round(s, cli_actor(s), REGION,
                        load_config({"round": {"stages": ["reward"], "min_preference_pairs": 10_000}}))
    config = settings.home / "reward.yaml"
    config.write_text(json.dumps(FAST))  # YAML reads JSON
    assert main(["round", "start", "--region", REGION, "--config", str(config), "--stages", "reward", "--now"]) == 0
    out = capsys.readouterr().out
    assert f"published {REGION}-r1, a new reward model (the policy is unchanged from base)" in out
    assert "reward model accuracy: validation" in out and "newest votes" in out
    with session_scope(engine) as s:
        rnd = s.scalar(select(Round))
        assert rnd.status == JobStatus.succeeded and rnd.completed_stages == ["reward", "publish"]
        assert rnd.metrics["version"] == f"{REGION}-r1" and rnd.metrics["reward_only"] is True
        assert "eval" not in rnd.metrics and rnd.metrics["reward"]["steps"] > 0
        version = s.scalar(select(ModelVersion).where(ModelVersion.round_id == rnd.id))
        assert version.stage == "reward" and version.parent.name == "base" and version.adapter_path is None
        assert version.lineage["reward_only"] is True
        assert Path(version.lineage["reward_model"]) == settings.home / "reward_models" / version.name
        assert (Path(version.lineage["reward_model"]) / "config.json").exists()
        reward = version.metrics["stages"]["reward"]
        assert reward["val_accuracy"] is not None and reward["newest_accuracy"] is not None
        assert reward["train_pairs"] > 0 and "eval" not in version.metrics
        assert s.scalar(select(func.count()).select_from(Pair).where(Pair.round_id == rnd.id)) == 0  # nothing new
        # the next round keeps training the policy it would have (base) with this reward model
        policy, rewarded = round_parents(s, load_config(), rnd.region_id, ensure_base_version(s, "tiny"))
        assert policy.name == "base" and rewarded.name == version.name
    assert main(["round", "show", str(rnd.id)]) == 0
    out = capsys.readouterr().out
    assert f"published  {REGION}-r1 (a reward model only: the policy is unchanged)" in out
    assert "accuracy   validation" in out and "train sample" in out


def test_val_accuracy_is_the_trainers_own_evaluation_of_the_kept_model():
    from types import SimpleNamespace

    from align.stages.reward import val_accuracy

    history = [{"step": 4, "eval_accuracy": 0.7}, {"step": 6, "eval_accuracy": 0.6}, {"step": 6, "loss": 0.3}]

    def trainer(best: int | None, load_best: bool, step: int = 6, evaluate=None):
        state = SimpleNamespace(best_global_step=best, global_step=step, log_history=history)
        return SimpleNamespace(state=state, args=SimpleNamespace(load_best_model_at_end=load_best),
                               evaluate=evaluate or (lambda: pytest.fail("measured twice")))

    assert val_accuracy(trainer(4, True)) == {"val_accuracy": 0.7,
                                              "val_accuracy_from": "evaluation at step 4 of training"}
    assert val_accuracy(trainer(4, False))["val_accuracy"] == 0.6  # the last step's model was kept
    assert val_accuracy(trainer(None, False, step=8, evaluate=lambda: {"eval_accuracy": 0.55})) == \
        {"val_accuracy": 0.55, "val_accuracy_from": "one evaluation after training"}


@pytest.fixture
def adapter_parent(loaded, tiny_model, tmp_path, monkeypatch) -> tuple:
    """(engine, settings, round id): a Leeds round queued, then a parent version with a real r=16 LoRA adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("GEOALIGN_BASE_MODEL", str(tiny_model))
    settings = Settings.from_env()
    monkeypatch.setattr("align.rounds.get_settings", lambda: settings)
    with session_scope(loaded) as s:  # queued before the parent exists: only the start can refuse its lora section
        config = load_config({"round": {"stages": ["sft"]}, "lora": {"r": 8}})
        round_id = queue_round(s, cli_actor(s), "en-GB-leeds", config)[0].id
    adapter = tmp_path / "adapter"
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), lora).save_pretrained(adapter)
    with session_scope(loaded) as s:
        region_id = s.scalar(select(Region.id).where(Region.code == "en-GB-leeds"))
        s.add(ModelVersion(name="leeds-first", base_model=str(tiny_model), adapter_path=str(adapter),
                           region_id=region_id, stage="sft"))
    return loaded, settings, round_id


def test_a_lora_section_that_differs_from_the_parent_adapter_is_refused(adapter_parent, tiny_model, tmp_path, caplog,
                                                                      capsys):
    from align.config import check_lora_continues
    from cli.rounds import _run_now

    engine, settings, round_id = adapter_parent
    with session_scope(engine) as s:
        job_id = s.scalar(select(Job.id).where(Job.round_id == round_id))
    # at the start: one line, no traceback, and nothing snapshotted or trained
    assert _run_now(engine, job_id) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lora: r 8 (parent: 16)" in err and "round.parent: base" in err
    assert not [r for r in caplog.records if r.exc_info]
    assert not (round_dir(settings, round_id) / "data").exists()
    with session_scope(engine) as s:
        rnd = s.get(Round, round_id)
        assert rnd.status == JobStatus.failed and "leeds-first's adapter" in rnd.error
    # at queue time; the same shape ("all-linear" resolved on the base model) or no lora section passes
    with session_scope(engine) as s:
        with pytest.raises(ConfigError, match=r"lora_alpha 8 \(parent: 32\)"):
            queue_round(s, cli_actor(s), "en-GB-leeds", load_config({"lora": {"lora_alpha": 8}}))
        same = {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"}
        rnd, job = queue_round(s, cli_actor(s), "en-GB-leeds",
                               load_config({"round": {"stages": ["sft"]}, "lora": same}))
        queue_round(s, cli_actor(s), "en-GB-leeds", load_config({"round": {"stages": ["sft"]}}))
        job_id = job.id
    # "all-linear" is resolved on the base model's layers (which the adapter above matched): two layers differ
    two = tmp_path / "two-layers"
    two.mkdir()
    (two / "adapter_config.json").write_text(json.dumps({"target_modules": ["q_proj", "v_proj"]}))
    with pytest.raises(ConfigError, match=r"target_modules \['down_proj', .*\(parent: \['q_proj', 'v_proj'\]\)"):
        check_lora_continues(load_config({"lora": {"target_modules": "all-linear"}}), two, "p", str(tiny_model))
    # it starts, and finds nothing new since the parent to train on: refused in one line before publishing
    assert _run_now(engine, job_id) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no stage trained, nothing to publish (sft: no new examples" in err
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(ModelVersion).where(ModelVersion.round_id == rnd.id)) == 0


@pytest.mark.parametrize("round_env", ["sqlite"], indirect=True)
def test_killed_worker_round_is_reaped_and_resumed(round_env):
    engine, settings = round_env
    slow = FAST | {"sft": {"max_steps": 60, "save_steps": 5}}  # long enough to be killed mid-stage
    round_id, job_id = _queue(engine, slow)
    env = os.environ | {"GEOALIGN_HEARTBEAT_S": "0.5", "GEOALIGN_STALE_AFTER_S": "3",
                        "DATABASE_URL": settings.database_url}
    worker = subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "--once"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with session_scope(engine) as s:
                progress = s.get(Job, job_id).progress or {}
            if progress.get("stage") == "sft" and (progress.get("step") or 0) >= 6:
                break
            assert worker.poll() is None, "worker exited early"
            time.sleep(0.2)
        else:
            pytest.fail("the worker never reached step 6 of SFT")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        worker.kill()

    with session_scope(engine) as s:
        assert reap_stale(s, stale_after_s=3) == []  # the last heartbeat is still fresh
    time.sleep(3.5)
    with session_scope(engine) as s:
        assert reap_stale(s, stale_after_s=3) == [job_id]
    with session_scope(engine) as s:
        job, rnd = s.get(Job, job_id), s.get(Round, round_id)
        assert job.status == JobStatus.failed and "stopped heartbeating" in job.error
        assert rnd.status == JobStatus.failed and rnd.completed_stages == []
        assert s.scalar(select(func.count()).select_from(ModelVersion).where(ModelVersion.round_id == round_id)) == 0
    assert not (settings.adapters_dir / f"{REGION}-r1").exists()
    checkpoints = sorted((round_dir(settings, round_id) / "stages" / "sft" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints  # the resume continues from here

    # resume: SFT continues from its last checkpoint, then the rest of the round runs
    with session_scope(engine) as s:
        resume_job = queue_resume(s, cli_actor(s), round_id).id
    assert claim_job(engine, resume_job, "test")
    import align.rounds

    original = align.rounds.get_settings
    align.rounds.get_settings = lambda: settings
    try:
        assert run_job(engine, resume_job) == JobStatus.succeeded
    finally:
        align.rounds.get_settings = original
    with session_scope(engine) as s:
        rnd = s.get(Round, round_id)
        assert rnd.status == JobStatus.succeeded and rnd.metrics["sft"]["steps"] == 60
        version = s.scalar(select(ModelVersion).where(ModelVersion.round_id == round_id))
        assert (Path(version.adapter_path) / "adapter_model.safetensors").exists()
    assert not list(settings.adapters_dir.glob(".*.tmp"))


@pytest.mark.parametrize("round_env", ["sqlite"], indirect=True)
def test_cancel_stops_a_running_round(round_env, monkeypatch):
    import threading

    from align.jobs import request_cancel

    engine, settings = round_env
    monkeypatch.setattr("align.rounds.get_settings", lambda: settings)
    round_id, job_id = _queue(engine, FAST | {"sft": {"max_steps": 2000}})
    assert claim_job(engine, job_id, "test")
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("status", run_job(engine, job_id)))
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with session_scope(engine) as s:
            job = s.get(Job, job_id)
            assert job.status == JobStatus.running, job.error
            if ((job.progress or {}).get("step") or 0) >= 2:
                request_cancel(s, cli_actor(s), job_id)
                break
        time.sleep(0.2)
    thread.join(60)
    assert outcome["status"] == JobStatus.cancelled
    with session_scope(engine) as s:
        assert s.get(Round, round_id).status == JobStatus.cancelled
        assert s.scalar(select(func.count()).select_from(Region)) == 1
