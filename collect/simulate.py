"""Simulated reviewers for load tests, benchmarks and offline demos of a full round.

A simulated reviewer goes through the same path as a person (``next_item`` → ``submit_vote``). By default it
judges by the rule-based regional reward: it prefers the output with more local terms, none of the references to
avoid, and a length that fits the task. A ``Taste`` replaces that, e.g. the independent locality judge
(``rewards.judge``) in ``bench/alignment.py``, where votes must not come from a reward that training also
optimises. Its votes are marked ``source = "simulated"`` so that win-rates and exports can tell them apart from
human judgement; never mix them into a production database.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from collect.accounts import create_user, new_password
from collect.auth import CurrentUser, act_as_system
from collect.prompting import TASK_LABELS
from collect.review import RankItem, ReviewItem, next_item, submit_ranking, submit_vote
from db.lookups import get_region, get_regions
from db.models import Ranking, Region, User, Vote
from rewards.rules import RegionRules, regional_reward

TASK_KEYS = {label: key for key, label in TASK_LABELS.items()}  # the review item shows the label


@dataclass(frozen=True)
class Taste:
    """How a simulated reviewer judges: ``score(texts, region_codes, task_types)`` and the gaps it notices."""

    score: Callable[[list[str], list[str], list[str]], list[float]]
    tie_margin: float  # a smaller score gap is a tie
    clear_margin: float  # a larger one is a "clear" preference, anything between "slight"
    floor: float | None = 0.0  # a tie where both score at or below this is "both bad" (None: never)


def rule_taste(session: Session) -> Taste:
    """The rule-based regional reward as a taste (the default; fine for load tests, circular for training tests)."""
    rules: dict[str, RegionRules] = {}

    def score(texts: list[str], regions: list[str], tasks: list[str]) -> list[float]:
        for code in set(regions) - set(rules):
            rules[code] = RegionRules.from_profile(get_region(session, code))
        return [regional_reward(t, rules[r], k) for t, r, k in zip(texts, regions, tasks, strict=True)]

    return Taste(score, tie_margin=0.02, clear_margin=0.2)


def taste_ranks(scores: list[float], tie_margin: float) -> list[int]:
    """Ranks (1 = best) of ``scores`` as a reviewer with ``tie_margin`` gives them: going down from the best, a score
    within ``tie_margin`` of the previous one shares its rank, a lower one starts the next rank."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    ranks, rank = [0] * len(scores), 0
    for n, i in enumerate(order):
        if n == 0 or scores[order[n - 1]] - scores[i] >= tie_margin:
            rank += 1
        ranks[i] = rank
    return ranks


def _judge_pair(taste: Taste, item: ReviewItem, task: str) -> tuple[str, str | None]:
    left, right = taste.score([item.left, item.right], [item.region_code] * 2, [task] * 2)
    if abs(left - right) < taste.tie_margin:
        bad = taste.floor is not None and max(left, right) <= taste.floor
        return ("both_bad", None) if bad else ("tie", None)
    return "left" if left > right else "right", "clear" if abs(left - right) > taste.clear_margin else "slight"


def simulate_reviews(session: Session, user: CurrentUser, limit: int = 1000, seed: int = 0,
                     taste: Taste | None = None) -> int:
    """Judge up to ``limit`` of the user's queued items (by ``taste``, default the rules): a vote on a pair, or, in
    rank mode (``GEOALIGN_RANK_K``), a ranking of a rank set; returns how many were judged."""
    rng = random.Random(seed)
    taste = taste or rule_taste(session)
    cast = 0
    while cast < limit:
        item = next_item(session, user)
        if item is None:
            break
        task = TASK_KEYS.get(item.task, "ad_copy")
        seconds = round(rng.uniform(8, 40), 1)
        if isinstance(item, RankItem):
            labels = [label for label, _ in item.candidates]
            scores = taste.score([text for _, text in item.candidates], [item.region_code] * item.k, [task] * item.k)
            result = submit_ranking(session, user, item.assignment_id,
                                    dict(zip(labels, taste_ranks(scores, taste.tie_margin), strict=True)),
                                    seconds=seconds * item.k / 2)
            ranking = session.get(Ranking, result.vote_id)
            ranking.source = "simulated"
            session.execute(update(Vote).where(Vote.ranking_id == ranking.id).values(source="simulated"))
        else:
            choice, strength = _judge_pair(taste, item, task)
            result = submit_vote(session, user, item.assignment_id, choice, strength, seconds=seconds)
            session.get(Vote, result.vote_id).source = "simulated"
        cast += 1
    session.flush()
    return cast


def simulate_all_regions(session: Session, regions: list[str] | None = None, per_region: int = 1000,
                         seed: int = 0, taste: Taste | None = None) -> dict[str, int]:
    """One simulated reviewer per region (system account ``simulated-<code>``) votes on its queued pairs."""
    known = {r.code: r for r in get_regions(session, regions)} if regions else \
        {r.code: r for r in session.scalars(select(Region).order_by(Region.code))}
    counts = {}
    for code in regions or list(known):
        name = f"simulated-{code}"[:64]
        user = session.scalar(select(User).where(User.username == name))
        if user is None:
            user = create_user(session, name, new_password(), ["reviewer"], [code])
            user.is_system, user.password_hash = True, "!"  # no password: a system account never logs in
            session.flush()
        counts[code] = simulate_reviews(session, act_as_system(user), limit=per_region, seed=seed, taste=taste)
    return counts
