"""Turn stored generations into ``Pair`` rows for the review queue."""

from __future__ import annotations

import itertools
import random
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from collect.review_policy import ReviewPolicy
from collect.splits import normalize_text
from db.lookups import get_region, get_regions
from db.models import Generation, ModelVersion, Pair, Prompt, Region, Split


def make_pairs(session: Session, prompt_ids: list[int], version_a: ModelVersion, version_b: ModelVersion | None = None,
               per_prompt: int = 1, round_id: int | None = None, seed: int = 0,
               policy: ReviewPolicy | None = None, generation_ids: Collection[int] | None = None) -> int:
    """Pair generations of ``version_a`` with those of ``version_b`` (or two of ``version_a``'s own samples).

    Each pair is two different, non-identical texts for the same prompt; a pair of generations is never stored
    twice (in either order) and a prompt gets at most ``per_prompt`` pairs per version pairing. Which generation
    becomes "a" is shuffled with ``seed``, and the side shown left is drawn again per reviewer assignment.
    How many reviewers each pair wants comes from ``policy`` (default: the environment's). ``generation_ids``, when
    given, are the only generations paired (a round's evaluation pairs only the samples it drew). Returns how many
    pairs were created.
    """
    version_b = version_b or version_a
    policy = policy or ReviewPolicy.from_env()
    rng = random.Random(seed)
    stmt = select(Generation).where(Generation.prompt_id.in_(prompt_ids),
                                    Generation.model_version_id.in_({version_a.id, version_b.id}))
    if generation_ids is not None:
        stmt = stmt.where(Generation.id.in_(list(generation_ids)))
    gens = session.scalars(stmt.order_by(Generation.id)).all()
    by_key: dict[tuple[int, int], list[Generation]] = {}
    for g in gens:
        by_key.setdefault((g.prompt_id, g.model_version_id), []).append(g)
    gen_ids = [g.id for g in gens]
    existing = {frozenset(ab) for ab in session.execute(  # a rank set's implied pairs are not reviewed pairwise
        select(Pair.generation_a_id, Pair.generation_b_id).where(Pair.generation_a_id.in_(gen_ids),
                                                                 Pair.rank_set_id.is_(None))
    ).all()}
    versions = {version_a.id, version_b.id}
    done_per_prompt = pairs_per_prompt(session, prompt_ids, versions)
    region_of = dict(session.execute(select(Prompt.id, Prompt.region_id).where(Prompt.id.in_(prompt_ids))).all())

    created = 0
    for pid in prompt_ids:
        if version_a.id == version_b.id:
            candidates = list(itertools.combinations(by_key.get((pid, version_a.id), []), 2))
        else:
            candidates = list(itertools.product(by_key.get((pid, version_a.id), []),
                                                by_key.get((pid, version_b.id), [])))
        budget = per_prompt - done_per_prompt.get(pid, 0)
        for g1, g2 in candidates:
            if budget <= 0:
                break
            if frozenset((g1.id, g2.id)) in existing or normalize_text(g1.text) == normalize_text(g2.text):
                continue
            a, b = (g1, g2) if rng.random() < 0.5 else (g2, g1)
            session.add(Pair(prompt_id=pid, region_id=region_of[pid], generation_a_id=a.id, generation_b_id=b.id,
                             model_a_id=a.model_version_id, model_b_id=b.model_version_id, round_id=round_id,
                             reviews_wanted=policy.reviews_for_new_pair(rng)))
            existing.add(frozenset((g1.id, g2.id)))
            budget -= 1
            created += 1
    session.flush()
    return created


def pairs_per_prompt(session: Session, prompt_ids: list[int], versions: set[int]) -> dict[int, int]:
    """Pairs for pairwise review already stored per prompt between exactly these versions (one version:
    self-pairs)."""
    counts: dict[int, int] = {}
    rows = session.execute(
        select(Pair.prompt_id, Pair.model_a_id, Pair.model_b_id).where(Pair.prompt_id.in_(prompt_ids),
                                                                       Pair.rank_set_id.is_(None))
    ).all()
    for pid, ma, mb in rows:
        if {ma, mb} == versions:
            counts[pid] = counts.get(pid, 0) + 1
    return counts


def prompts_to_sample(session: Session, splits: list[str], regions: list[str] | None = None,
                      limit: int = 50) -> list[int]:
    """Ids of at most ``limit`` prompts in ``splits`` and ``regions`` (default: all), in a stable order."""
    stmt = select(Prompt.id).join(Region).where(Prompt.split.in_([Split(s) for s in splits]))
    if regions:
        get_regions(session, regions)
        stmt = stmt.where(Region.code.in_(regions))
    return list(session.scalars(stmt.order_by(Prompt.content_hash).limit(limit)))


def first_pair_prompts(session: Session, per_region: int) -> dict[str, list[int]]:
    """Prompt ids for a region's first pairs, by region code: ``per_region`` train-split prompts spread over task
    types, plus about a quarter as many val-split ones, whose votes let the first round's reward model and DPO
    validate."""
    out: dict[str, list[int]] = {}
    for region in session.scalars(select(Region).order_by(Region.code)):
        picked: list[int] = []
        for split, wanted in ((Split.train, per_region), (Split.val, round(per_region / 4))):
            prompts = session.scalars(
                select(Prompt).where(Prompt.region_id == region.id, Prompt.split == split)
                .order_by(Prompt.content_hash)
            ).all()
            by_task: dict[str, list[int]] = {}
            for p in prompts:
                by_task.setdefault(p.task_type.value, []).append(p.id)
            chosen: list[int] = []
            while len(chosen) < wanted and any(by_task.values()):  # round-robin over task types
                for ids in by_task.values():
                    if ids and len(chosen) < wanted:
                        chosen.append(ids.pop(0))
            picked += chosen
        out[region.code] = picked
    return out


def newest_pairs(session: Session, limit: int, region: str | None = None) -> list[Pair]:
    """The ``limit`` newest pairs, of one region or all."""
    stmt = select(Pair).order_by(Pair.id.desc()).limit(limit)
    if region:
        stmt = stmt.where(Pair.region_id == get_region(session, region).id)
    return list(session.scalars(stmt))
