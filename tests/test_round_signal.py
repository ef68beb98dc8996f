"""The pieces that give a round a training signal: the independent judge, prompt rotation, reward shares, tastes."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from align.rounds import rotate_prompts
from align.stages.rl import reward_shares, standardised
from collect.simulate import Taste, simulate_reviews
from db.models import Choice, Vote
from db.session import session_scope
from rewards.judge import LocalityJudge, agreement
from tests.conftest import login_as, make_pairs

MANCHESTER = ["Proper Mancunian brew on Oldham Street, our kid: pints from the Northern Quarter's own brewers.",
              "Rainy Saturday in Ancoats? Bagels and a brew by the canal, then a gig at the Band on the Wall."]
AUSTIN = ["Y'all come on down to South Congress: brisket, breakfast tacos and live music till late.",
          "Longhorns game day on the Drag: queso, Shiner Bock and patio seats under the Texas sun."]


@pytest.fixture(scope="module")
def judge() -> LocalityJudge:
    return LocalityJudge({"en-GB-manchester": MANCHESTER, "en-US-austin": AUSTIN})


def test_judge_prefers_copy_that_sounds_like_the_region(judge):
    mcr = "A brew and a bacon barm in the Northern Quarter before the gig at the Albert Hall, Manchester."
    atx = "Tex-Mex breakfast tacos on South Congress before the Longhorns kick off in Austin."
    scores = judge.score([mcr, atx, mcr, atx], ["en-GB-manchester"] * 2 + ["en-US-austin"] * 2)
    assert scores[0] > scores[1] and scores[3] > scores[2]
    assert judge.score([mcr], ["en-GB-manchester"]) == judge.score([mcr], ["en-GB-manchester"])  # deterministic
    with pytest.raises(ValueError, match="no reference copy for region"):
        judge.score([mcr], ["de-DE-munich"])
    with pytest.raises(ValueError, match="none for"):
        LocalityJudge({"en-GB-manchester": MANCHESTER, "en-US-austin": []})


def test_agreement_counts_gold_against_other_regions_and_base(judge):
    gold = [{"region": "en-GB-manchester", "task_type": "ad_copy", "prompt_id": 1,
             "text": "Bacon barm and a brew in Ancoats, our kid, then the Northern Quarter for a pint."},
            {"region": "en-US-austin", "task_type": "ad_copy", "prompt_id": 2,
             "text": "Brisket and breakfast tacos on South Congress, y'all, before the Longhorns game."}]
    a = agreement(judge, gold, {1: "Our products are great. Buy now and save.", 2: "Buy now and save big today."})
    assert a["gold_vs_other_regions_n"] == 2 and a["gold_vs_other_regions"] == 1.0
    assert a["gold_vs_base_n"] == 2 and a["gold_vs_base"] == 1.0
    assert a["other_regions_gold_vs_base_n"] == 2 and a["other_regions_gold_vs_base"] <= 0.5
    assert agreement(judge, gold[:1])["gold_vs_other_regions"] is None  # no other region for the task


def test_rotate_prompts_gives_consecutive_rounds_different_prompts():
    rows = [{"i": i} for i in range(10)]
    picks = [[r["i"] for r in rotate_prompts(rows, 4, number, seed=0)] for number in (1, 2, 3)]
    assert set(picks[0]).isdisjoint(picks[1]) and len(set(picks[0]) | set(picks[1])) == 8
    assert len(set(picks[2])) == 4 and set(picks[2]) & set(picks[0])  # wraps around after all 10 were used
    assert picks[0] == [r["i"] for r in rotate_prompts(rows, 4, 1, seed=0)]  # same round, same prompts
    assert rotate_prompts(rows, 0, 1, seed=0) == [] and len(rotate_prompts(rows, 50, 1, seed=0)) == 10


def test_reward_shares_count_weights_of_rewards_that_vary():
    history = [{"rewards/rules/mean": 0.2, "rewards/rules/std": 0.25, "rewards/rm/mean": 0.01, "rewards/rm/std": 0.01},
               {"rewards/rules/mean": 0.3, "rewards/rules/std": 0.15, "rewards/rm/mean": 0.03, "rewards/rm/std": 0.03}]
    shares = reward_shares(history, ["rules", "rm"], [1.0, 3.0])
    assert shares["rules"] == {"weight": 1.0, "mean": 0.25, "raw_std": 0.2, "share": 0.25}
    assert shares["rm"]["share"] == 0.75 and shares["rm"]["raw_std"] == 0.02
    flat = reward_shares([{"rewards/rules/std": 0.0, "rewards/rm/std": 0.1}], ["rules", "rm"], [1.0, 1.0])
    assert flat["rules"]["share"] == 0.0 and flat["rm"]["share"] == 1.0


def test_standardised_rewards_have_unit_spread_and_keep_the_name():
    def reward_model(completions, **_):
        return [0.010, 0.012, 0.020, 0.018]

    wrapped = standardised(reward_model)
    scores = wrapped(completions=["a", "b", "c", "d"])
    assert wrapped.__name__ == "reward_model"
    assert math.isclose(sum(scores), 0, abs_tol=1e-9) and math.isclose(sum(x * x for x in scores) / 4, 1)
    assert scores[2] > scores[3] > scores[1] > scores[0]
    assert standardised(lambda **_: [0.5, 0.5])() == [0.0, 0.0]  # no spread, no signal


def test_a_simulated_reviewer_votes_by_the_taste_it_is_given(loaded):
    texts = [("short", "a much longer piece of copy"), ("longer copy here", "tiny"), ("same", "size")]
    ids = make_pairs(loaded, "en-GB-leeds", 3, texts=texts)
    reviewer = login_as(loaded, "sim-leeds", regions=["en-GB-leeds"])
    longer = Taste(lambda texts, _regions, _tasks: [float(len(t)) for t in texts], tie_margin=1, clear_margin=10,
                   floor=None)
    with session_scope(loaded) as s:
        assert simulate_reviews(s, reviewer, limit=10, taste=longer) == 3
    with session_scope(loaded) as s:
        votes = {v.pair_id: v for v in s.scalars(select(Vote).where(Vote.user_id == reviewer.id))}
        assert set(votes) == set(ids) and all(v.source == "simulated" for v in votes.values())
        assert [votes[i].choice for i in ids] == [Choice.b, Choice.a, Choice.tie]
        assert votes[ids[0]].strength.value == "clear" and votes[ids[1]].strength.value == "clear"
