"""Simulated reviewers for load tests, benchmarks and offline demos of a full round.

A simulated reviewer goes through the same path as a person (``next_item`` → ``submit_vote``) and judges by the
rule-based regional reward: it prefers the output with more local terms, none of the references to avoid, and a
length that fits the task. Its votes are marked ``source = "simulated"`` so that win-rates and exports can tell
them apart from human judgement; never mix them into a production database.
"""

from __future__ import annotations

import random

from sqlalchemy import select
from sqlalchemy.orm import Session

from collect.auth import CurrentUser
from collect.prompting import TASK_LABELS
from collect.review import next_item, submit_vote
from db.models import Region, User, Vote
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
            region = session.scalar(select(Region).where(Region.code == item.region_code))
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


def simulate_all_regions(session: Session, regions: list[str] | None = None, per_region: int = 1000,
                         seed: int = 0) -> dict[str, int]:
    """One simulated reviewer per region (system account ``simulated-<code>``) votes on its queued pairs."""
    from collect.accounts import create_user, new_password
    from collect.auth import act_as_system
    from db.errors import NotFound

    known = {r.code: r for r in session.scalars(select(Region).order_by(Region.code))}
    missing = sorted(set(regions or ()) - set(known))
    if missing:
        raise NotFound(f"unknown region(s) {missing}; known: {', '.join(known) or 'none'}")
    counts = {}
    for code in regions or list(known):
        name = f"simulated-{code}"[:64]
        user = session.scalar(select(User).where(User.username == name))
        if user is None:
            user = create_user(session, name, new_password(), ["reviewer"], [code])
            user.is_system, user.password_hash = True, "!"  # no password: a system account never logs in
            session.flush()
        counts[code] = simulate_reviews(session, act_as_system(user), limit=per_region, seed=seed)
    return counts
