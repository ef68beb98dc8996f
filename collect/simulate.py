"""Simulated reviewers for load tests, benchmarks and offline demos of a full round.

A simulated reviewer goes through the same path as a person (``next_item`` → ``submit_vote``) and judges by the
rule-based regional reward: it prefers the output with more local terms, none of the references to avoid, and a
length that fits the task. Its votes are marked ``source = "simulated"`` so that win-rates and exports can tell
them apart from human judgement; never mix them into a production database.
"""

from __future__ import annotations

import random

from sqlalchemy.orm import Session

from collect.auth import CurrentUser
from collect.prompting import TASK_LABELS
from collect.review import next_item, submit_vote
from db.models import Region, Vote
from rewards.rules import RegionRules, regional_reward

TASK_KEYS = {label: key for key, label in TASK_LABELS.items()}  # the review item shows the label


def simulate_reviews(session: Session, user: CurrentUser, limit: int = 1000, seed: int = 0,
                     tie_margin: float = 0.02) -> int:
    """Vote on up to ``limit`` of the user's queued pairs; returns how many votes were cast."""
    rng = random.Random(seed)
    rules: dict[str, RegionRules] = {}
    cast = 0
    while cast < limit:
        item = next_item(session, user)
        if item is None:
            break
        if item.region_code not in rules:
            region = session.query(Region).filter_by(code=item.region_code).one()
            rules[item.region_code] = RegionRules.from_profile(region)
        task = TASK_KEYS.get(item.task, "ad_copy")
        left = regional_reward(item.left, rules[item.region_code], task)
        right = regional_reward(item.right, rules[item.region_code], task)
        if abs(left - right) < tie_margin:
            choice, strength = ("tie", None) if max(left, right) > 0 else ("both_bad", None)
        else:
            choice = "left" if left > right else "right"
            strength = "clear" if abs(left - right) > 0.2 else "slight"
        result = submit_vote(session, user, item.assignment_id, choice, strength,
                             seconds=round(rng.uniform(8, 40), 1))
        session.get(Vote, result.vote_id).source = "simulated"
        cast += 1
    session.flush()
    return cast
