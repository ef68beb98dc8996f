"""Round evaluation: sample the new version, its parent and the base on held-out prompts and compare them.

Test-split prompts are scored three ways, each giving the win-rate of new vs parent and new vs base with a 95%
interval (``rewards.winrate``):
- ``judge_vs_*``: the independent locality judge (``rewards.judge``: sentence embeddings against local gold copy
  of validation briefs), which no stage trains on. This is the figure to lead with;
- ``vs_*``: the round's own reward model, and ``rules_vs_*``: the rule reward. Online RL optimised both, so they
  say whether training did what it aimed at, not whether the copy got more local.
Every version is sampled with the same seed per batch (common random numbers), so differences come from the
weights. The same samples, plus samples on a few train- and val-split prompts, become the new pairs reviewers see;
votes on the val pairs validate the next round's reward model and DPO.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import expit
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from align.plan import Reporter, RoundPlan
from collect.pairing import make_pairs
from collect.prompting import BriefContext, dataset_prompt
from db.models import Example, Generation, ModelVersion, Pair, Prompt, Region, Split
from db.session import session_scope
from rewards.rules import RegionRules, regional_reward
from rewards.winrate import outcomes_from_scores, win_rate

if TYPE_CHECKING:
    from rewards.judge import LocalityJudge

log = logging.getLogger(__name__)


def split_prompts(engine: Engine, region: str | None, split: Split, limit: int, prompt_format: str) -> list[dict]:
    """Prompts of ``split`` (in content-hash order) with their brief context and the reward model's prompt."""
    if limit <= 0:
        return []
    with session_scope(engine) as session:
        stmt = (select(Prompt, Region).join(Region, Prompt.region_id == Region.id).where(Prompt.split == split)
                .order_by(Prompt.content_hash).limit(limit))
        if region:
            stmt = stmt.where(Region.code == region)
        rows = []
        for p, r in session.execute(stmt):
            ctx = BriefContext.of_prompt(r, p)
            rows.append({"prompt_id": p.id, "split": split.value, "region": r.code, "task_type": p.task_type.value,
                         "brief": p.text, "context": ctx, "prompt": dataset_prompt(ctx, prompt_format)})
        return rows


def evaluate_round(engine: Engine, plan: RoundPlan, workdir: Path, adapter: str, reward_model: str | None,
                   report: Reporter) -> dict[str, Any]:
    """Sample, score and compare; writes ``eval/samples.jsonl`` and ``eval/metrics.json`` under the round dir."""
    # lazy: align.sampling imports torch and transformers, and align.rounds (on the Rounds page) imports this module
    from align.sampling import DecodingParams, load_policy, render_all, sample_texts

    settings = plan.config.settings
    test = split_prompts(engine, plan.region, Split.test, settings.eval_prompts, plan.prompt_format)
    train = split_prompts(engine, plan.region, Split.train, settings.review_prompts, plan.prompt_format)
    val = split_prompts(engine, plan.region, Split.val, settings.review_val_prompts, plan.prompt_format)
    rows = test + train + val
    contexts = [r.pop("context") for r in rows]
    params = DecodingParams(max_new_tokens=settings.max_new_tokens)
    sft = Path(workdir) / "stages" / "sft" / "adapter"
    adapters = {"new": adapter, "parent": plan.parent_adapter, "base": None}
    if sft.exists() and str(sft) != adapter:
        adapters["sft"] = str(sft)
    outputs: dict[str, list[str]] = {}
    for label, path in adapters.items():
        same = next((k for k, v in adapters.items() if k in outputs and v == path), None)
        if same:  # parent is the base in a first round: one set of samples serves both
            outputs[label] = outputs[same]
            continue
        report.log(f"eval: sampling {len(rows)} prompts with {label}")
        model, tokenizer = load_policy(plan.base_model, path)
        outputs[label] = sample_texts(model, tokenizer, render_all(tokenizer, contexts), params, seed=settings.seed,
                                      batch_size=settings.sample_batch_size, progress=False)
        del model
    for i, row in enumerate(rows):
        row["outputs"] = {label: texts[i] for label, texts in outputs.items()}

    rules = {code: RegionRules.from_profile(r) for code, r in plan.region_rules.items()}
    for row in test:
        region_rules = rules.get(row["region"], RegionRules())
        row["rule_scores"] = {label: round(regional_reward(row["outputs"][label], region_rules, row["task_type"]), 4)
                              for label in ("new", "parent", "base")}
    if reward_model and rows:  # every row, not only test: the review pairs carry the scores as predictions
        from rewards.reward_model import RewardScorer  # lazy: torch and transformers, as for align.sampling

        scorer = RewardScorer(reward_model)
        for label in ("new", "parent", "base"):
            scores = scorer.score([r["prompt"] for r in rows], [r["outputs"][label] for r in rows])
            for row, score in zip(rows, scores, strict=True):
                row.setdefault("rm_scores", {})[label] = round(score, 4)

    judge = _judge(engine, plan.region, report) if test else None
    if judge is not None:
        for label in ("new", "parent", "base"):
            scores = judge.score([r["outputs"][label] for r in test], [r["region"] for r in test])
            for row, score in zip(test, scores, strict=True):
                row.setdefault("judge_scores", {})[label] = score

    win_rates: dict[str, Any] = {"prompts": len(test), "scorer": "reward_model" if reward_model else "rules",
                                 "judge": judge.name if judge else None}
    if test:
        key = "rm_scores" if reward_model else "rule_scores"
        for other in ("parent", "base"):
            outcomes = outcomes_from_scores([r[key]["new"] for r in test], [r[key][other] for r in test])
            win_rates[f"vs_{other}"] = win_rate(outcomes, seed=settings.seed).as_dict()
            rule = outcomes_from_scores([r["rule_scores"]["new"] for r in test],
                                        [r["rule_scores"][other] for r in test])
            win_rates[f"rules_vs_{other}"] = win_rate(rule, seed=settings.seed).as_dict()
            if judge is not None:
                judged = outcomes_from_scores([r["judge_scores"]["new"] for r in test],
                                              [r["judge_scores"][other] for r in test])
                win_rates[f"judge_vs_{other}"] = win_rate(judged, seed=settings.seed).as_dict()
        if reward_model:  # how far apart the reward model's scores are: decisions at the third decimal mean little
            spread = [r["rm_scores"][label] for r in test for label in ("new", "base")]
            win_rates["rm_score_std"] = round(float(np.std(spread)), 4)
    out = Path(workdir) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "samples.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "metrics.json").write_text(json.dumps(win_rates, indent=2), encoding="utf-8")
    return {"win_rates": win_rates, "rows": rows, "params": asdict(params), "seed": settings.seed}


def judge_references(session: Session) -> dict[str, list[str]]:
    """Gold copy (not rewrites) of validation-split briefs, by region code: the judge's idea of each region."""
    stmt = (select(Region.code, Example.text).join(Prompt, Example.prompt_id == Prompt.id)
            .join(Region, Prompt.region_id == Region.id)
            .where(Prompt.split == Split.val, Example.vote_id.is_(None)).order_by(Example.id))
    out: dict[str, list[str]] = {}
    for code, text in session.execute(stmt):
        out.setdefault(code, []).append(text)
    return out


def _judge(engine: Engine, region: str | None, report: Reporter) -> LocalityJudge | None:
    """The locality judge over every region with validation gold, or None (logged) when the scope has none."""
    with session_scope(engine) as session:
        references = judge_references(session)
        scope = [region] if region else list(session.scalars(select(Region.code)))
    missing = [code for code in scope if code not in references]
    if not references or missing:
        report.log(f"eval: no independent judge (no gold copy on validation briefs for {missing or 'any region'})")
        return None
    from rewards.judge import LocalityJudge  # lazy: its sentence encoder imports torch

    return LocalityJudge(references)


def store_samples_and_pairs(session: Session, evaluation: dict, version: ModelVersion, parent: ModelVersion,
                            base: ModelVersion, plan: RoundPlan) -> dict[str, int]:
    """Store the evaluation samples as generations and pair new vs parent and new vs base for review, each pair
    from the samples drawn here (the same prompt, decoding and seed for both sides: common random numbers).

    The pairs are made in a random order of their prompts, and reviewers are given a comparison's pairs oldest
    first (``collect.scheduler``), so the pairs that get votes are a simple random sample of the comparison's
    pairs whenever voting stops. Each pair also carries the round's reward-model prediction (``predict_pairs``):
    the prediction-powered win-rate (``rewards.ppi``) corrects the predictions of all pairs by their error on the
    voted ones, which is only unbiased when the voted pairs were drawn like the rest.
    """
    rows = evaluation["rows"]
    by_label = {"new": version, "parent": parent, "base": base}
    params = evaluation["params"] | {"purpose": f"round {plan.round_id} evaluation"}
    stored: set[tuple[int, int]] = set()
    values, scores = [], []
    for row in rows:
        for label, v in by_label.items():
            if (row["prompt_id"], v.id) in stored:
                continue
            stored.add((row["prompt_id"], v.id))
            values.append({"prompt_id": row["prompt_id"], "model_version_id": v.id, "text": row["outputs"][label],
                           "params": params, "seed": evaluation["seed"]})
            scores.append(row.get("rm_scores", {}).get(label))
    drawn = list(session.scalars(insert(Generation).returning(Generation.id, sort_by_parameter_order=True),
                                 values)) if values else []
    prompt_ids = list(dict.fromkeys(r["prompt_id"] for r in rows))
    random.Random(evaluation["seed"]).shuffle(prompt_ids)
    counts = {}
    for key, old in (("vs_parent", parent), ("vs_base", base)):
        if key == "vs_base" and base.id == parent.id:
            continue
        # the samples drawn here first (the reward model scored both); where the two came out identical, an older
        # sample of the old version on that brief (no prediction: it stays out of the prediction-powered rate)
        counts[key] = sum(make_pairs(session, prompt_ids, version, old, round_id=plan.round_id,
                                     seed=evaluation["seed"], generation_ids=only) for only in (drawn, None))
    predict_pairs(session, plan.round_id, {g: x for g, x in zip(drawn, scores, strict=True) if x is not None})
    return counts


def predict_pairs(session: Session, round_id: int, scores: dict[int, float]) -> int:
    """Set ``Pair.predicted_a`` on the round's pairs whose two generations the reward model scored (``scores`` by
    generation id): P(A preferred) = sigmoid(score A − score B), the Bradley–Terry reading of a reward model's
    scores. Returns how many were set."""
    if not scores:
        return 0
    pairs = session.execute(select(Pair.id, Pair.generation_a_id, Pair.generation_b_id)
                            .where(Pair.round_id == round_id)).all()
    values = [{"id": pair_id, "predicted_a": float(expit(scores[a] - scores[b]))}
              for pair_id, a, b in pairs if a in scores and b in scores]
    if values:
        session.execute(update(Pair), values)
    return len(values)
