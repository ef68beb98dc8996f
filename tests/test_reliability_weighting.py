"""Reliability-weighted training: reviewer reliability per region (crowd-kit Dawid–Skene), the reward model's
margin and per-pair DPO weights it sets, ``round.vote_weighting`` and its lineage, and ``WeightedDPOTrainer``."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
import torch
from datasets import Dataset
from sqlalchemy import select
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from align.config import load_config
from align.plan import RoundPlan
from align.registry import ensure_base_version
from align.rounds import launch_stage, publish, queue_round, snapshot_datasets
from align.stages import StageInputs, run_stage
from align.stages.dpo import WeightedDPOTrainer
from cli.common import cli_actor
from collect.datasets import preference_rows
from collect.reliability import reviewer_reliability, vote_frame
from db.errors import ConfigError
from db.models import Choice, ModelVersion, Pair, Prompt, Side, Split, Strength, User, Vote
from db.session import session_scope
from rewards.reliability import REVIEWER_COLUMNS, Reliability, estimate_reliability
from tests.conftest import make_pairs

REGION = "en-GB-leeds"


# ------------------------------------------------------------------------------------------------ estimation


def _simulated_votes(seed: int = 0, regions=("r1", "r2"), tasks: int = 150, per_task: int = 3,
                     reviewers: int = 10, random_share: float = 0.3, gold_every: int = 10) -> tuple[pd.DataFrame, set]:
    """Votes of honest reviewers (right 90% of the time) and random clickers on pairs with a known answer."""
    rng = random.Random(seed)
    clickers = set(rng.sample(range(reviewers), round(random_share * reviewers)))
    rows = []
    for region in regions:
        for task in range(tasks):
            truth = rng.choice("ab")
            gold = truth if task % gold_every == 0 else None
            for user in rng.sample(range(reviewers), per_task):
                if user in clickers:
                    label = rng.choice("ab")
                else:
                    label = truth if rng.random() < 0.9 else ("b" if truth == "a" else "a")
                rows.append((region, task, user, label, gold))
    return pd.DataFrame(rows, columns=["region", "task", "user", "label", "gold"]), clickers


def test_random_clickers_get_lower_reliability_than_honest_reviewers():
    votes, clickers = _simulated_votes()
    rel = estimate_reliability(votes)
    frame = rel.reviewers
    assert list(frame.columns) == REVIEWER_COLUMNS and frame["estimated"].all()
    assert frame["reliability"].between(0, 1).all()
    for region, part in frame.groupby("region"):  # each region on its own
        random_ones = part[part["user"].isin(clickers)]["reliability"]
        honest = part[~part["user"].isin(clickers)]["reliability"]
        assert random_ones.max() < honest.min(), region
        assert random_ones.mean() < 0.3 < 0.6 < honest.mean()
    assert rel.weight("r1", min(clickers)) < rel.weight("r1", min(set(range(10)) - clickers))
    posteriors = rel.posteriors  # one row per pair and region, probabilities over the labels
    assert len(posteriors) == 2 * 150
    assert posteriors[["a", "b", "tie", "both_bad"]].sum(axis=1).round(6).eq(1).all()
    gold = votes.dropna(subset=["gold"]).drop_duplicates(["region", "task"])
    pinned = posteriors.merge(gold, on=["region", "task"])
    assert (pinned.apply(lambda r: r[r["gold"]], axis=1) == 1).all()  # gold answers anchor the fit
    summary = rel.summary()
    assert summary["r1"]["estimated"] == 10 and summary["r1"]["below_0_2"] >= 1


def test_small_regions_and_sparse_reviewers_fall_back_to_weight_one():
    votes, _ = _simulated_votes(regions=("big",))
    lone = pd.DataFrame([("small", t, 1, "a", None) for t in range(30)], columns=votes.columns)  # one reviewer
    sparse = pd.DataFrame([("big", t, 99, "b", None) for t in range(3)], columns=votes.columns)  # 3 votes
    rel = estimate_reliability(pd.concat([votes, lone, sparse], ignore_index=True))
    frame = rel.reviewers.set_index(["region", "user"])
    assert not frame.loc[("small", 1), "estimated"] and rel.weight("small", 1) == 1.0
    assert not frame.loc[("big", 99), "estimated"] and rel.weight("big", 99) == 1.0
    assert rel.weight("big", 12345) == 1.0  # never voted there
    assert rel.summary()["small"] == {"reviewers": 1, "estimated": 0, "median_reliability": None, "below_0_2": 0}
    empty = estimate_reliability(votes.iloc[:0])
    assert empty.reviewers.empty and empty.weight("big", 1) == 1.0
    with pytest.raises(ValueError, match="gold"):
        estimate_reliability(votes.drop(columns=["gold"]))


# ------------------------------------------------------------------------------------------------ config


def test_vote_weighting_setting():
    assert load_config().settings.vote_weighting == "none"  # the default keeps today's rows
    assert load_config({"round": {"vote_weighting": "reliability"}}).settings.vote_weighting == "reliability"
    with pytest.raises(ConfigError, match=r"vote_weighting: 'reliabilty' is not one of \['none', 'reliability'\]"):
        load_config({"round": {"vote_weighting": "reliabilty"}})
    with pytest.raises(ConfigError, match="round.vote_weighting: expected str"):
        load_config({"round": {"vote_weighting": True}})
    assert load_config({"round": {"vote_weighting": "reliability"}}).to_dict()["round"]["vote_weighting"] \
        == "reliability"


# ------------------------------------------------------------------------------------------------ rows


def _users(engine, names: list[str]) -> dict[str, int]:
    with session_scope(engine) as s:
        users = [User(username=n, password_hash="-") for n in names]
        s.add_all(users)
        s.flush()
        return {u.username: u.id for u in users}


def _vote(s, pair_id: int, user_id: int, choice: str, strength: Strength | None = Strength.clear, **kw) -> None:
    pair = s.get(Pair, pair_id)
    s.add(Vote(pair_id=pair_id, user_id=user_id, region_id=pair.region_id, choice=Choice(choice), strength=strength,
               shown_left=Side.a, **kw))


def _train_pairs(engine, n: int) -> list[int]:
    ids = make_pairs(engine, REGION, 12)
    with session_scope(engine) as s:
        split = dict(s.execute(select(Pair.id, Prompt.split).join(Prompt, Pair.prompt_id == Prompt.id)).all())
    return [i for i in ids if split[i] == Split.train][:n]


def _fixed(weights: dict[int, float]) -> Reliability:
    """A reliability with given weights for (REGION, user id)."""
    reviewers = pd.DataFrame([{"region": REGION, "user": u, "votes": 10, "accuracy": w, "reliability": w,
                               "estimated": True} for u, w in weights.items()], columns=REVIEWER_COLUMNS)
    return Reliability(reviewers=reviewers, posteriors=pd.DataFrame())


def test_reliability_sets_the_margin_the_side_and_the_dpo_weight(loaded):
    users = _users(loaded, ["honest", "coin", "unknown"])
    p1, p2, p3, p4 = _train_pairs(loaded, 4)
    with session_scope(loaded) as s:
        _vote(s, p1, users["coin"], "a")  # one vote from a near-random clicker
        _vote(s, p2, users["honest"], "b", Strength.slight)  # one honest vote, slight
        _vote(s, p2, users["coin"], "a")
        _vote(s, p3, users["unknown"], "a", rewrite="Ey up Leeds, a proper rewrite")  # no estimate: weight 1
        s.get(Pair, p4).is_gold, s.get(Pair, p4).gold_choice = True, Choice.b
        _vote(s, p4, users["coin"], "a")
    reliability = _fixed({users["honest"]: 0.8, users["coin"]: 0.1})
    with session_scope(loaded) as s:
        plain, plain_stats = preference_rows(s, prompt_format="text")
        weighted, stats = preference_rows(s, prompt_format="text", reliability=reliability)
    plain_by = {(r["pair_id"], r["kind"]): r for r in plain}
    by = {(r["pair_id"], r["kind"]): r for r in weighted}
    assert not any("vote_weight" in r or "weighted_agreement" in r for r in plain)  # none: rows as before
    assert all("vote_weight" in r for r in weighted)

    assert plain_by[(p1, "vote")]["margin"] == 1.0  # one vote, any reviewer: full agreement
    assert by[(p1, "vote")]["margin"] == 0.1 and by[(p1, "vote")]["vote_weight"] == 0.1
    assert by[(p1, "vote")]["agreement"] == 1.0  # the plain share stays as it was

    assert (p2, "vote") not in plain_by and plain_stats.ties_dropped == 1  # 1 vs 1: a tie without weights
    row = by[(p2, "vote")]  # the honest reviewer's side wins
    assert "copy B" in row["chosen"] and "copy A" in row["rejected"] and row["agreement"] == 0.5
    assert row["weighted_agreement"] == 0.4 and row["margin"] == round(0.4 * 0.5, 4) and row["vote_weight"] == 0.4
    assert stats.ties_dropped == 0 and stats.pairs_kept == plain_stats.pairs_kept + 1

    assert by[(p3, "vote")]["margin"] == plain_by[(p3, "vote")]["margin"] == 1.0
    assert by[(p3, "vote")]["vote_weight"] == 1.0
    assert {r["vote_weight"] for (p, k), r in by.items() if k == "rewrite"} == {1.0}
    assert by[(p4, "gold")]["margin"] == 1.0 and by[(p4, "gold")]["vote_weight"] == 1.0  # the known answer
    with session_scope(loaded) as s:  # with every weight 1 the rows are the plain ones plus the two keys
        ones = preference_rows(s, prompt_format="text", reliability=_fixed({}))[0]
    trimmed = [{k: v for k, v in r.items() if k not in ("vote_weight", "weighted_agreement")} for r in ones]
    assert trimmed == plain


def test_a_ranking_row_takes_its_authors_reliability_and_keeps_its_ranking_weight(loaded):
    from collect.datasets import rankings_at_their_weight
    from collect.review import RankItem, next_item, submit_ranking
    from collect.review_policy import ReviewPolicy
    from tests.conftest import lineage, login_as

    lineage(loaded, samples=2, prompts=3)
    rita = login_as(loaded, "rita", regions=[REGION])
    with session_scope(loaded) as s:
        item = next_item(s, rita, policy=ReviewPolicy(gold_rate=0.0, agreement_share=0.0, stats_ttl=0, rank_k=4))
        assert isinstance(item, RankItem)
        submit_ranking(s, rita, item.assignment_id, {"A": 1, "B": 2, "C": 3, "D": 4}, seconds=40)
    with session_scope(loaded) as s:
        plain = preference_rows(s, prompt_format="text")[0]
        weighted = preference_rows(s, prompt_format="text", reliability=_fixed({rita.id: 0.5}))[0]
    assert len(plain) == len(weighted) == 6 and {r["kind"] for r in weighted} == {"ranking"}
    for p, w in zip(plain, weighted, strict=True):
        assert w["margin"] == pytest.approx(p["margin"] / 2, abs=1e-4) and w["vote_weight"] == 0.5
        assert w["weight"] == p["weight"] == 0.5  # 2/k
    assert len(rankings_at_their_weight(weighted)) == 3  # still thinned to k-1 rows by its 2/k weight


def test_votes_for_reliability_come_from_training_splits_only(loaded):
    users = _users(loaded, [f"r{i}" for i in range(3)])
    ids = make_pairs(loaded, REGION, 12)
    with session_scope(loaded) as s:
        s.get(Pair, ids[-1]).prompt.split = Split.test  # held out: its votes must not count
        s.flush()
        split = dict(s.execute(select(Pair.id, Prompt.split).join(Prompt, Pair.prompt_id == Prompt.id)).all())
        for i, pid in enumerate(ids):
            for name, uid in users.items():
                _vote(s, pid, uid, "a" if name == "r2" or i % 2 else "b")  # r2 always says "a"
        gold = next(p for i, p in enumerate(ids) if split[p] == Split.train and i % 2)  # its answer is "a"
        s.get(Pair, gold).is_gold, s.get(Pair, gold).gold_choice = True, Choice.a
        imported = s.scalar(select(User.id).where(User.username == "r0"))
        s.add(User(username="importer", password_hash="-", is_system=True))
        s.flush()
        importer = s.scalar(select(User.id).where(User.username == "importer"))
        _vote(s, ids[0], importer, "b", source="import")
        frame = vote_frame(s, (REGION,))
        rel = reviewer_reliability(s, (REGION,), min_votes=3)
    kept = [p for p in ids if split[p] in (Split.train, Split.val)]
    assert ids[-1] not in kept
    assert sorted(frame["task"].unique()) == sorted(kept) and importer not in set(frame["user"])
    assert set(frame["user"]) == set(users.values()) and imported in users.values()
    assert frame.set_index("task")["gold"].dropna().to_dict() == {gold: "a"}
    weights = {name: rel.weight(REGION, uid) for name, uid in users.items()}
    assert weights["r2"] < 0.2 < 0.8 < weights["r0"]  # a habit, not a judgement, against two who agree


# ------------------------------------------------------------------------------------------------ round


def test_snapshot_and_lineage_record_vote_weighting(loaded, settings, tmp_path):
    users = _users(loaded, ["u1", "u2"])
    with session_scope(loaded) as s:
        ensure_base_version(s, "tiny")
    for pid in _train_pairs(loaded, 3):
        with session_scope(loaded) as s:
            _vote(s, pid, users["u1"], "a")
            _vote(s, pid, users["u2"], "a", Strength.slight)
    manifests = {}
    for weighting in ("none", "reliability"):
        config = load_config({"round": {"vote_weighting": weighting, "min_preference_pairs": 1}})
        with session_scope(loaded) as s:
            rnd, _ = queue_round(s, cli_actor(s), REGION, config)
            plan = RoundPlan(round_id=rnd.id, number=rnd.number, region=REGION, config=config, base_model="tiny",
                             parent_name="base", parent_adapter=None, parent_reward_model=None, completed=[])
        work = tmp_path / weighting
        manifests[weighting] = manifest = snapshot_datasets(loaded, plan, work)
        rows = [json.loads(line) for line in (work / "data" / "dpo_train.jsonl").read_text().splitlines()]
        assert len(rows) == 3 and all(("vote_weight" in r) == (weighting == "reliability") for r in rows)
        adapter, reward = work / "adapter", work / "reward"
        for folder in (adapter, reward):
            folder.mkdir()
            (folder / "adapter_config.json").write_text("{}")
        name = publish(loaded, plan, settings, str(adapter), None, "reward", manifest, {}, None)
        with session_scope(loaded) as s:
            lineage = s.scalar(select(ModelVersion).where(ModelVersion.name == name)).lineage
        assert lineage["vote_weighting"] == weighting == lineage["config"]["round"]["vote_weighting"]
        assert ("reliability" in lineage) == (weighting == "reliability")
    assert manifests["none"]["vote_weighting"] == "none" and "reliability" not in manifests["none"]
    # two reviewers with 3 votes each: too few to estimate, so every weight is 1 and the rows are the plain ones
    assert manifests["reliability"]["reliability"] == {
        REGION: {"reviewers": 2, "estimated": 0, "median_reliability": None, "below_0_2": 0}}
    assert manifests["reliability"]["counts"] == manifests["none"]["counts"]


# ------------------------------------------------------------------------------------------------ DPO


def _pairs(n: int = 4) -> list[dict]:
    return [{"prompt": f"Region: Leeds (en-GB)\nBrief: offer {i}\nCopy:\n",
             "chosen": f"Ey up Leeds, proper deal {i} at Kirkgate Market!",
             "rejected": f"Great deal {i}{' today' * i}."} for i in range(n)]


def _trainer(cls, tiny_model, tmp_path, rows, **kw):
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), per_device_train_batch_size=len(rows), report_to="none",
                     use_cpu=True, bf16=False, save_strategy="no", disable_tqdm=True, max_steps=1, seed=0,
                     precompute_ref_log_probs=kw.pop("precompute", True), logging_steps=1)
    torch.manual_seed(0)
    return cls(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args,
               train_dataset=Dataset.from_list(rows), processing_class=AutoTokenizer.from_pretrained(tiny_model), **kw)


def _batch(trainer) -> dict:
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


@pytest.mark.parametrize("precompute", [True, False])
def test_weighted_dpo_loss_is_dpo_loss_at_weight_one_and_drops_a_zero_weight_pair(tiny_model, tmp_path, precompute):
    rows = _pairs(4)
    plain = _trainer(DPOTrainer, tiny_model, tmp_path, rows, precompute=precompute)
    ones = _trainer(WeightedDPOTrainer, tiny_model, tmp_path, [r | {"weight": 1.0} for r in rows],
                    precompute=precompute)
    batch, weighted_batch = _batch(plain), _batch(ones)
    assert weighted_batch["weight"].tolist() == [1.0] * 4  # kept through tokenisation, column filter and collator
    order = [int(i) for i in weighted_batch["input_ids"][:, 0]]  # (the sampler shuffles; compare the same rows)
    assert order == [int(i) for i in batch["input_ids"][:, 0]]
    with torch.no_grad():
        reference = plain.compute_loss(plain.model, dict(batch))
        same = ones.compute_loss(ones.model, dict(weighted_batch))
        assert torch.allclose(reference, same, rtol=0, atol=0)  # TRL's very call

        # weight 0 on one pair of B: (B-1)/B × the loss of the batch without it
        w = torch.tensor([1.0, 1.0, 0.0, 1.0])
        dropped = ones.compute_loss(ones.model, {**weighted_batch, "weight": w})
        keep = [0, 1, 3]
        rows_kept = {k: (v[keep + [i + 4 for i in keep]] if v.shape[0] == 8 else v[keep])
                     for k, v in batch.items()}
        without = plain.compute_loss(plain.model, rows_kept)
        assert torch.allclose(dropped, without * 3 / 4, atol=1e-6)

        # general weights: the weighted mean of per-pair losses, each pair's loss as TRL computes it alone
        w = torch.tensor([0.5, 1.0, 0.25, 0.5])
        mixed = ones.compute_loss(ones.model, {**weighted_batch, "weight": w})
        single = [plain.compute_loss(plain.model, {k: (v[[i, i + 4]] if v.shape[0] == 8 else v[[i]])
                                                   for k, v in batch.items()}) for i in range(4)]
        expected = sum(wi * li for wi, li in zip(w.tolist(), single, strict=True)) / 4
        assert torch.allclose(mixed, expected, atol=1e-6)
        zero = ones.compute_loss(ones.model, {**weighted_batch, "weight": torch.zeros(4)})
        assert zero.item() == 0.0
    # a weighted batch trains end to end, and the gradient of a zero-weight batch is zero
    ones.model.zero_grad()
    ones.compute_loss(ones.model, {**weighted_batch, "weight": torch.zeros(4)}).backward()
    assert all(p.grad is None or not p.grad.any() for p in ones.model.parameters())
    ones.train()
    assert [h["loss"] for h in ones.state.log_history if "loss" in h]


def test_weighted_dpo_refuses_batch_coupled_losses(tiny_model, tmp_path):
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), loss_type=["aot"], report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="per-pair loss"):
        WeightedDPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args,
                           train_dataset=Dataset.from_list(_pairs(2)),
                           processing_class=AutoTokenizer.from_pretrained(tiny_model))


def test_dpo_stage_uses_the_weights_only_with_reliability(tiny_model, tmp_path, monkeypatch):
    import align.stages.dpo as dpo

    used = []
    for cls in (dpo.DPOTrainer, dpo.WeightedDPOTrainer):
        monkeypatch.setattr(dpo, cls.__name__, type(cls.__name__, (cls,), {
            "train": lambda self, *a, _c=cls, **k: (used.append(_c.__name__), _c.train(self, *a, **k))[1]}))
    rows = [r | {"vote_weight": w} for r, w in zip(_pairs(4), (1.0, 0.4, 0.0, 0.8), strict=True)]
    for weighting in ("none", "reliability"):
        work = tmp_path / weighting
        (work / "data").mkdir(parents=True)
        (work / "data" / "dpo_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (work / "data" / "pref_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
        config = load_config({"round": {"vote_weighting": weighting, "report_to": "none", "min_preference_pairs": 1},
                              "dpo": {"max_steps": 1, "per_device_train_batch_size": 4, "save_strategy": "no"}})
        result = run_stage(StageInputs(stage="dpo", workdir=str(work), config=config.raw,
                                       base_model=str(tiny_model), adapter_in=None))
        assert result.adapter and result.metrics["steps"] == 1
        assert ("mean_vote_weight" in result.metrics) == (weighting == "reliability")
        assert result.metrics["eval_loss"] > 0  # the val pairs' weights reach the evaluation too
    assert used == ["DPOTrainer", "WeightedDPOTrainer"]


def test_weighted_dpo_under_accelerate_matches_one_process(tiny_model, tmp_path):
    """Two CPU processes of 4 pairs make the same first step as one of 8: every rank calls TRL alike."""
    rows = [r | {"vote_weight": (1.0, 0.4, 0.0, 0.8, 0.25)[i % 5]} for i, r in enumerate(_pairs(16))]
    losses = {}
    for name, batch, processes in (("one", 8, 1), ("two", 4, 2)):
        work = tmp_path / name
        (work / "data").mkdir(parents=True)
        (work / "data" / "dpo_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        # reference log-probs on the fly: precomputing them under accelerate fails before any weighting (each rank
        # caches an in-memory dataset under its own temporary folder)
        config = load_config({"round": {"vote_weighting": "reliability", "report_to": "none",
                                        "min_preference_pairs": 1},
                              "dpo": {"max_steps": 1, "per_device_train_batch_size": batch, "save_strategy": "no",
                                      "logging_steps": 1, "precompute_ref_log_probs": False}})
        inputs = StageInputs(stage="dpo", workdir=str(work), config=config.raw, base_model=str(tiny_model),
                             adapter_in=None)
        result = run_stage(inputs) if processes == 1 else launch_stage(inputs, num_processes=2)
        assert result.metrics["world_size"] == processes and "mean_vote_weight" in result.metrics
        losses[name] = result.metrics["final_logged_loss"]
    assert losses["one"] == losses["two"]
