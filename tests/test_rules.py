"""The rule-based regional reward and win-rates with intervals."""

from statistics import NormalDist

import pytest

from rewards.rules import RegionRules, explain, regional_reward, rule_reward_func
from rewards.winrate import outcomes_from_scores, win_rate

AUSTIN = RegionRules(local_terms=("y'all", "breakfast tacos", "Zilker"), avoid_terms=("autumn", "£", "jumper"))


def test_local_copy_beats_wrong_region_copy():
    local = "Y'all, breakfast tacos and cold brew are back on South Congress all summer long!"
    wrong = "Grab a cosy jumper for our autumn sale, everything under £20 this weekend only!"
    assert regional_reward(local, AUSTIN, "social_post") > 0.5 > regional_reward(wrong, AUSTIN, "social_post")
    assert explain(wrong, AUSTIN, "social_post")["avoid"] == -1.0  # capped at two hits


def test_terms_match_whole_words_and_symbols():
    assert explain("Zilkerpark", AUSTIN, "email_subject")["local"] == 0
    assert explain("Only £5", AUSTIN, "email_subject")["avoid"] == -0.5


@pytest.mark.parametrize("text, part, value", [
    ("Hi", "length", pytest.approx(-1 + 2 / 15)),
    ("Region: Austin\nCopy: echo of the prompt template here and there", "format", -1.0),
    ("deal deal deal deal deal deal deal", "format", -1.0),
    ("", "format", -1.0),
])
def test_length_and_format(text, part, value):
    assert explain(text, AUSTIN, "email_subject")[part] == value


def test_trl_reward_function_reads_dataset_columns():
    fn = rule_reward_func({"en-US-austin": AUSTIN})
    texts = ["Y'all come try breakfast tacos at Zilker this Saturday morning!", "Autumn jumper sale"]
    scores = fn(completions=texts, region=["en-US-austin", "en-US-austin"], task_type=["social_post"] * 2,
                prompts=["p", "p"])
    assert scores[0] > scores[1] and all(-1 <= s <= 1 for s in scores)
    unknown = fn(completions=["Any text long enough to be a social post, really."], region=["xx"],
                 task_type=["social_post"])
    assert unknown == [regional_reward("Any text long enough to be a social post, really.", RegionRules(),
                                       "social_post")]


def test_win_rate_counts_ties_as_half_and_brackets_the_rate():
    outcomes = outcomes_from_scores([2, 1, 0, 5, 3, 3], [1, 1, 1, 0, 2, 9])
    assert outcomes.tolist() == [1, 0.5, 0, 1, 1, 0]
    wr = win_rate(outcomes)
    assert (wr.wins, wr.ties, wr.losses, wr.n) == (3, 1, 2, 6)
    assert wr.rate == 3.5 / 6 and wr.low < wr.rate < wr.high
    assert (round(wr.low, 10), round(wr.high, 10)) == (0.262763116, 0.8461346715)  # tie-aware Wilson interval
    all_wins = win_rate([1, 1, 1])
    z = NormalDist().inv_cdf(0.975)
    assert all_wins.high == 1.0 and all_wins.low == pytest.approx(3 / (3 + z**2), rel=1e-12)  # Wilson at p = 1
    with pytest.raises(ValueError):
        win_rate([])
