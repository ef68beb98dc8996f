"""Prediction-powered win-rates from the database, the stopping rule on the Dashboard, in `geoalign stats` and in
the scheduler, and gated promotion to serving (domain, CLI and the Rounds page)."""

import json
import random

import numpy as np
import pytest
from sqlalchemy import select, update

from align.promotion import promote, promotion_verdict
from cli.main import main
from collect import scheduler
from collect.scheduler import next_assignment, read_targets
from db import queries
from db.errors import PermissionDenied, ValidationError
from db.models import AuditEvent, Deployment, JobStatus, Pair, Region, Round
from db.session import session_scope
from rewards.dashboard import load_dashboard
from rewards.decisions import MIN_LABELLED, decisions, prediction_powered_win_rates
from tests.conftest import NO_GOLD, cast, lineage, login_as, models_of
from tests.test_rounds_page import _add_round, _button, _page, _texts

REGION = "en-GB-leeds"


@pytest.fixture(autouse=True)
def _fresh_cache():
    scheduler.clear_cache()
    yield
    scheduler.clear_cache()


def _predict(engine, ids, new: str, old: str, p_new: float | list[float]) -> None:
    """Give every pair of ``new`` vs ``old`` the reward model's P(new preferred) = ``p_new`` (one value or one per
    pair, in pair order), as a round's evaluation does."""
    with session_scope(engine) as s:
        pairs = s.scalars(select(Pair).where(Pair.model_a_id.in_([ids[new], ids[old]]),
                                             Pair.model_b_id.in_([ids[new], ids[old]])).order_by(Pair.id)).all()
        values = p_new if isinstance(p_new, list) else [p_new] * len(pairs)
        for pair, p in zip(pairs, values, strict=False):
            pair.predicted_a = p if pair.model_a_id == ids[new] else 1 - p


def _lineage(engine, per_prompt: int = 4) -> dict:
    """base → v1 → v2 on the 12 Leeds prompts, with ``per_prompt`` pairs of v2 vs v1 per prompt (one of the others)."""
    from collect.pairing import make_pairs
    from db.models import ModelVersion

    ids = lineage(engine, samples=per_prompt)
    with session_scope(engine) as s:
        prompts = sorted({p.prompt_id for p in s.scalars(select(Pair))})
        make_pairs(s, prompts, s.get(ModelVersion, ids["v2"]), s.get(ModelVersion, ids["v1"]), per_prompt=per_prompt,
                   policy=NO_GOLD)
    return ids


def _lead(engine):
    return login_as(engine, "lead", roles=("lead",))


# ------------------------------------------------------------------------------------------- the data


def test_predicted_pairs_carry_votes_from_either_side_and_zeros_when_unvoted(any_engine, mini_data):
    from tests.conftest import load_mini

    load_mini(any_engine, mini_data)
    ids = lineage(any_engine)
    _predict(any_engine, ids, "v2", "v1", 0.8)
    rev = login_as(any_engine, "rev", regions=[REGION])
    cast(any_engine, rev, ids, "v2", "v1", ["win", "loss", "tie", "both_bad"])
    with session_scope(any_engine) as s:
        frame = queries.predicted_pairs(s)
        one = queries.predicted_pairs(s, ids["region"], (ids["v1"], ids["v2"]))
    assert len(frame) == 12 and frame.equals(one)  # only v2 vs v1 has predictions: 12 prompts
    new_is_a = frame["model_a"] == ids["v2"]
    p_new = frame["predicted_a"].where(new_is_a, 1 - frame["predicted_a"])
    assert np.allclose(p_new, 0.8)
    wins = frame["a"].where(new_is_a, frame["b"])
    losses = frame["b"].where(new_is_a, frame["a"])
    assert (wins.sum(), losses.sum(), frame["tie"].sum(), frame["both_bad"].sum()) == (1, 1, 1, 1)
    assert ((frame[["a", "b", "tie", "both_bad"]].sum(axis=1)) == 0).sum() == 8  # unvoted pairs: zeros


def test_dashboard_shows_prediction_powered_rates_beside_human_ones(loaded):
    ids = _lineage(loaded)
    rng = random.Random(3)
    truth = [rng.random() < 0.7 for _ in range(48)]  # whether reviewers prefer v2 on each prompt's pair
    _predict(loaded, ids, "v2", "v1", [0.85 if t else 0.2 for t in truth])  # a reward model that mostly agrees
    rev = login_as(loaded, "rev", regions=[REGION])
    cast(loaded, rev, ids, "v2", "v1", ["win" if t else "loss" for t in truth[:20]])
    with session_scope(loaded) as s:
        d = load_dashboard(s, _lead(loaded)).region(REGION)
    row = d.predicted[d.predicted["opponent"] == "parent"].iloc[0]
    assert (row["version"], row["n"], row["n_unlabelled"]) == ("v2", 20, 28)
    assert row["high"] - row["low"] < row["human_high"] - row["human_low"]  # predictions narrow it
    assert row["effective_votes"] > row["n"]
    assert d.predicted[d.predicted["opponent"] == "base"].empty  # no predictions on v2 vs base
    verdicts = d.decisions.set_index("opponent")
    assert verdicts.loc["parent", "source"] == "prediction-powered"
    assert "base" not in verdicts.index  # no votes on v2 vs base yet: nothing to say
    assert set(d.decisions["version"]) == {"v2"}  # only the newest version is watched


def test_dashboard_page_opens_with_the_verdicts_and_charts_both_intervals(loaded):
    from tests.test_dashboard import _page as dashboard_page

    ids = _lineage(loaded)
    _predict(loaded, ids, "v2", "v1", 0.9)
    rev = login_as(loaded, "rev", regions=[REGION])
    cast(loaded, rev, ids, "v2", "v1", ["win"] * 14 + ["loss"] * 2)
    cast(loaded, rev, ids, "v2", "base", ["win", "loss", "tie"])
    at = dashboard_page(loaded).run()
    assert not at.exception
    shown = {kind: [e.value.replace("\\", "") for e in getattr(at, kind)] for kind in ("success", "info")}  # unescaped
    assert any(text.startswith("decided: v2 beats its parent v1") for text in shown["success"])
    assert any(text.endswith("more votes to ±5 points · human votes") for text in shown["info"])  # v2 vs base: 3 votes
    charts = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    estimates = [layer for chart in charts for layer in chart.get("layer", [])
                 if layer["encoding"].get("color", {}).get("field") == "estimate"]
    assert estimates, "no chart of human-only vs prediction-powered intervals"
    assert "Download predicted (CSV)" in [b.label for b in at.get("download_button")]


def test_decisions_use_the_human_interval_until_enough_predicted_pairs_are_voted(loaded):
    ids = _lineage(loaded)
    _predict(loaded, ids, "v2", "v1", 0.7)
    rev = login_as(loaded, "rev", regions=[REGION])
    cast(loaded, rev, ids, "v2", "v1", ["win", "loss"] * ((MIN_LABELLED - 1) // 2) + ["win"])
    with session_scope(loaded) as s:
        versions = queries.versions_frame(s)
        pairs = queries.predicted_pairs(s)
        d = load_dashboard(s, _lead(loaded)).region(REGION)
    assert prediction_powered_win_rates(pairs, versions).empty  # MIN_LABELLED - 1 voted pairs: not yet
    row = d.decisions.iloc[0]
    assert row["source"] == "human votes" and not row["decided"] and row["more_votes"] > 0
    assert row["verdict"] == f"≈ {row['more_votes']} more votes to ±5 points"
    assert decisions(d.win_rates.iloc[0:0], d.predicted, versions).empty


def test_stats_prints_prediction_powered_rates_and_verdicts(loaded, capsys):
    ids = _lineage(loaded)
    _predict(loaded, ids, "v2", "v1", 0.9)
    rev = login_as(loaded, "rev", regions=[REGION])
    cast(loaded, rev, ids, "v2", "v1", ["win"] * 14 + ["loss"] * 2)
    assert main(["stats", "--region", REGION]) == 0
    out = capsys.readouterr().out
    assert "prediction-powered win-rates" in out and "worth_votes" in out
    assert "decided: v2 beats its parent" in out and "[prediction-powered]" in out


# ------------------------------------------------------------------------------------------- the scheduler


def test_the_scheduler_stops_sending_a_decided_comparison(loaded):
    ids = _lineage(loaded)
    rev = login_as(loaded, "rev", regions=[REGION])
    cast(loaded, rev, ids, "v2", "v1", ["win"] * 12)  # decided: v2 beats its parent
    with session_scope(loaded) as s:
        decided = {t.kind: t.decided for t in read_targets(s, ids["region"])}
    assert decided == {"parent": True, "base": False}
    other = login_as(loaded, "other", regions=[REGION])
    served = []
    for i in range(60):
        with session_scope(loaded) as s:
            a = next_assignment(s, other.id, other.region_ids, rng=random.Random(i), policy=NO_GOLD)
            if a is None:
                break
            served.append(models_of(loaded, a.pair_id))
            a.skipped = True  # move on without deciding anything
            s.get(Pair, a.pair_id).assigned -= 1
    parent = frozenset((ids["v2"], ids["v1"]))
    assert served and parent not in served  # 36 of its pairs are still open, but the verdict is in
    assert frozenset((ids["v2"], ids["base"])) in served


def test_rank_mode_stops_offering_rank_sets_of_decided_comparisons(loaded):
    from collect.ranking import make_more_rank_sets, next_rank_assignment
    from tests.test_ranking import RANK3

    ids = _lineage(loaded)
    with session_scope(loaded) as s:
        for target in read_targets(s, ids["region"]):
            assert make_more_rank_sets(s, target, RANK3) > 0  # open rank sets of both comparisons
    first = login_as(loaded, "first", regions=[REGION])
    with session_scope(loaded) as s:
        assert next_rank_assignment(s, first.id, first.region_ids, policy=RANK3) is not None  # undecided: served
    rev = login_as(loaded, "rev", regions=[REGION])
    cast(loaded, rev, ids, "v2", "v1", ["win"] * 10)
    cast(loaded, rev, ids, "v2", "base", ["loss"] * 10)
    later = login_as(loaded, "later", regions=[REGION])
    with session_scope(loaded) as s:
        assert all(t.decided for t in read_targets(s, ids["region"]))
        assert next_rank_assignment(s, later.id, later.region_ids, policy=RANK3) is None  # open, but decided


# ------------------------------------------------------------------------------------------- promotion


def _serving(engine, region: str = REGION):
    with session_scope(engine) as s:
        row = s.scalar(select(Deployment).join(Region, Deployment.region_id == Region.id).where(Region.code == region))
        return None if row is None else row.model_version_id


def test_promotion_is_refused_until_the_version_is_decided_to_beat_its_parent(loaded):
    ids = _lineage(loaded)
    eng = login_as(loaded, "eng", roles=("engineer",))
    with session_scope(loaded) as s, pytest.raises(ValidationError, match="no votes yet on v2 vs its parent v1"):
        promote(s, eng, "v2", REGION)
    rev = login_as(loaded, "rev", regions=[REGION])
    cast(loaded, rev, ids, "v2", "v1", ["win", "loss", "win"])
    with session_scope(loaded) as s, pytest.raises(ValidationError, match=r"not promoted: ≈ [\d,]+ more votes"):
        promote(s, eng, "v2", REGION)
    assert _serving(loaded) is None
    cast(loaded, rev, ids, "v2", "v1", ["win"] * 12)
    with session_scope(loaded) as s:
        verdict = promote(s, eng, "v2", REGION)
    assert verdict.decided and verdict.winner == "new" and "decided: v2 beats its parent" in verdict.text
    assert _serving(loaded) == ids["v2"]
    with session_scope(loaded) as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "deploy").order_by(AuditEvent.id.desc()))
        assert event.user_id == eng.id
        assert event.details == {"version": "v2", "promoted": True, "verdict": verdict.text}


def test_a_decided_loss_is_refused_with_the_loss_and_reviewers_may_not_promote(loaded):
    ids = _lineage(loaded)
    rev = login_as(loaded, "rev", regions=[REGION])
    cast(loaded, rev, ids, "v2", "v1", ["loss"] * 12)
    eng = login_as(loaded, "eng", roles=("engineer",))
    with session_scope(loaded) as s:
        assert promotion_verdict(s, "v2", REGION).winner == "old"
        with pytest.raises(ValidationError, match="not promoted: decided: v2 loses to its parent"):
            promote(s, eng, "v2", REGION)
        with pytest.raises(PermissionDenied):
            promote(s, rev, "v2", REGION)
        with pytest.raises(ValidationError, match="base model"):
            promote(s, eng, "base", REGION)
    assert _serving(loaded) is None


def test_cli_deploy_promote_refuses_then_serves(loaded, capsys):
    ids = _lineage(loaded)
    assert main(["deploy", "promote", "--region", REGION, "--version", "v2"]) == 2
    assert "not promoted: no votes yet" in capsys.readouterr().err
    rev = login_as(loaded, "rev", regions=[REGION])
    cast(loaded, rev, ids, "v2", "v1", ["win"] * 12)
    assert main(["deploy", "promote", "--region", REGION, "--version", "v2"]) == 0
    assert f"{REGION} now serves v2: decided: v2 beats its parent" in capsys.readouterr().out
    assert _serving(loaded) == ids["v2"]


def test_rounds_page_promote_button_refuses_then_promotes(loaded):
    ids = _lineage(loaded)
    round_id, _ = _add_round(loaded, JobStatus.succeeded, JobStatus.succeeded, completed=["sft", "dpo"],
                             metrics={"version": "v2", "new_pairs": {"vs_parent": 20}})
    with session_scope(loaded) as s:
        s.execute(update(Round).where(Round.id == round_id).values(status=JobStatus.succeeded))
    at = _page(loaded)
    _button(at, "Promote").click().run()
    assert "not promoted: no votes yet on v2" in _texts(at)
    assert _serving(loaded) is None
    rev = login_as(loaded, "rev", regions=[REGION])
    cast(loaded, rev, ids, "v2", "v1", ["win"] * 12)
    _button(at, "Promote").click().run()
    assert f"{REGION} now serves v2" in _texts(at)
    assert _serving(loaded) == ids["v2"]


def test_no_promote_button_for_rounds_that_published_nothing(loaded):
    _add_round(loaded, JobStatus.failed, JobStatus.failed, error="boom")
    at = _page(loaded)
    assert not [b for b in at.button if b.label == "Promote"]
