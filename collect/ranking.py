"""Rank sets: k outputs of one brief (k = 3 or 4) that a reviewer orders best to worst, ties allowed.

How a ranking reaches every consumer of votes: a rank set is created with its k(k-1)/2 *implied pairs*
(``Pair.rank_set_id``, ``reviews_wanted = 0`` so pairwise review never offers them), and a ranking is written as
one ``Ranking`` row plus one ``Vote`` per implied pair, weighted 2/k (``rewards.ranking``) and tied to the ranking
by ``Vote.ranking_id`` (ON DELETE CASCADE: undoing the ranking removes its votes in the same statement). The
running totals, win-rates, Bradley–Terry, the scheduler's counts and the preference datasets then read rankings
the way they read pairwise votes, at their weight, without a second code path each. The alternative, a table of
rankings that every consumer expands itself, would put the expansion (and its weighting) in five places.

The candidates of a rank set come from one comparison leads watch (``collect.scheduler.Target``: a newest version
and its base or parent), alternating new, old, new, old: two samples of the new version and one of the old for k = 3,
two of each for k = 4 (``align.sampling`` stores two per brief by default). Pairs of one version's samples are
stored too: they train the reward model, and the totals leave them out of win-rates as they do self-pairs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import combinations

from sqlalchemy import and_, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collect.review_policy import ReviewPolicy
from collect.scheduler import Target, choose_target, claim_first, free_ids, prompts_of_both, watched_targets
from collect.splits import normalize_text
from db.models import Assignment, Choice, Generation, Pair, Prompt, RankCandidate, Ranking, RankSet, Side, Vote
from rewards.ranking import check_k, implied_outcomes

CANDIDATES = 8  # rank sets considered per pick outside the targets


def _pick(gens: dict[int, list[Generation]], order: Sequence[int], k: int, taken: set[frozenset[int]],
          rng: random.Random) -> list[Generation] | None:
    """k generations alternating over the versions in ``order`` (distinct texts), as a set not in ``taken``."""
    pools = {v: rng.sample(gens.get(v, []), len(gens.get(v, []))) for v in order}
    picked: list[Generation] = []
    seen_texts: set[str] = set()
    for v in (order[i % len(order)] for i in range(4 * k)):
        if len(picked) == k:
            break
        while pools[v]:
            g = pools[v].pop()
            if normalize_text(g.text) not in seen_texts:
                picked.append(g)
                seen_texts.add(normalize_text(g.text))
                break
    if len(picked) < k or len({g.model_version_id for g in picked}) < len(set(order)):
        return None
    return None if frozenset(g.id for g in picked) in taken else picked


def make_rank_sets(session: Session, prompt_ids: list[int], version_ids: Sequence[int], k: int, per_prompt: int = 1,
                   round_id: int | None = None, seed: int = 0, policy: ReviewPolicy | None = None) -> int:
    """Rank sets of ``k`` outputs of ``version_ids`` (new first) per prompt, up to ``per_prompt`` per prompt for
    these versions; each with its implied pairs. Returns how many were created."""
    check_k(k)
    policy = policy or ReviewPolicy.from_env()
    rng = random.Random(seed)
    versions = list(dict.fromkeys(version_ids))
    gens: dict[int, dict[int, list[Generation]]] = {}
    for g in session.scalars(select(Generation).where(Generation.prompt_id.in_(prompt_ids),
                                                      Generation.model_version_id.in_(versions))
                             .order_by(Generation.id)):
        gens.setdefault(g.prompt_id, {}).setdefault(g.model_version_id, []).append(g)
    existing: dict[int, list[frozenset[int]]] = {}
    for rank_set_id, prompt_id in session.execute(select(RankSet.id, RankSet.prompt_id)
                                                  .where(RankSet.prompt_id.in_(prompt_ids), RankSet.k == k)).all():
        members = session.execute(select(RankCandidate.generation_id, RankCandidate.model_version_id)
                                  .where(RankCandidate.rank_set_id == rank_set_id)).all()
        if {v for _, v in members} == set(versions):
            existing.setdefault(prompt_id, []).append(frozenset(g for g, _ in members))
    region_of = dict(session.execute(select(Prompt.id, Prompt.region_id).where(Prompt.id.in_(prompt_ids))).all())
    created = 0
    for pid in prompt_ids:
        taken = set(existing.get(pid, []))
        for _ in range(per_prompt - len(taken)):
            picked = _pick(gens.get(pid, {}), versions, k, taken, rng)
            if picked is None:
                break
            taken.add(frozenset(g.id for g in picked))
            rank_set = RankSet(prompt_id=pid, region_id=region_of[pid], k=k, round_id=round_id,
                               reviews_wanted=policy.reviews_for_new_pair(rng),
                               candidates=[RankCandidate(position=p, generation_id=g.id,
                                                         model_version_id=g.model_version_id)
                                           for p, g in enumerate(picked)])
            session.add(rank_set)
            session.flush()
            for a, b in combinations(picked, 2):  # stored positions in order: a vote's "a" is the earlier one
                session.add(Pair(prompt_id=pid, region_id=region_of[pid], generation_a_id=a.id,
                                 generation_b_id=b.id, model_a_id=a.model_version_id, model_b_id=b.model_version_id,
                                 round_id=round_id, reviews_wanted=0, assigned=0, rank_set_id=rank_set.id))
            created += 1
    session.flush()
    return created


# ------------------------------------------------------------------------------------------------ scheduling


def _not_seen_by(user_id: int):
    return ~exists().where(Assignment.rank_set_id == RankSet.id, Assignment.user_id == user_id)


def _is_open():
    return RankSet.assigned < RankSet.reviews_wanted


def open_rank_assignments(user_id: int, region_ids: tuple[int, ...]):
    """The reviewer's rank assignments neither ranked nor skipped in ``region_ids`` (the ranking decides)."""
    ranked = exists().where(Ranking.rank_set_id == Assignment.rank_set_id, Ranking.user_id == user_id)
    return (select(Assignment).join(RankSet, Assignment.rank_set_id == RankSet.id)
            .where(Assignment.user_id == user_id, ~Assignment.voted, ~Assignment.skipped, ~ranked,
                   RankSet.region_id.in_(region_ids)))


def unseen_rank_sets(user_id: int, region_ids: tuple[int, ...]):
    """A query of the rank sets the reviewer could still be given."""
    return select(RankSet.id).where(RankSet.region_id.in_(region_ids), _is_open(), _not_seen_by(user_id))


def _of_versions(new_id: int, old_id: int):
    """Rank sets whose candidates are exactly of these two versions."""
    def has(version_id: int):
        return exists().where(RankCandidate.rank_set_id == RankSet.id, RankCandidate.model_version_id == version_id)
    other = exists().where(RankCandidate.rank_set_id == RankSet.id,
                           RankCandidate.model_version_id.not_in([new_id, old_id]))
    return and_(has(new_id), has(old_id), ~other)


def _free(session: Session, stmt, limit: int) -> list[int]:
    return free_ids(session, stmt, RankSet.id, limit)


def _claim(session: Session, rank_set_ids: Sequence[int], user_id: int, rng: random.Random) -> Assignment | None:
    """Assign the first of ``rank_set_ids`` still free to the reviewer, its display order shuffled for them."""

    def assign(rank_set_id: int) -> Assignment:
        order = list(range(session.scalar(select(RankSet.k).where(RankSet.id == rank_set_id))))
        rng.shuffle(order)
        return Assignment(rank_set_id=rank_set_id, user_id=user_id, display_order=order)

    return claim_first(session, rank_set_ids, lambda rank_set_id: update(RankSet).where(
        RankSet.id == rank_set_id, _is_open()).values(assigned=RankSet.assigned + 1), assign)


def make_more_rank_sets(session: Session, target: Target, policy: ReviewPolicy) -> int:
    """New rank sets for a target from stored generations: one more per prompt of the region than the most any has
    (a fixed seed per comparison and count, so racing requests build the same sets)."""
    prompt_ids = prompts_of_both(session, target)
    if not prompt_ids:
        return 0
    per_prompt = session.execute(select(RankSet.prompt_id).where(RankSet.prompt_id.in_(prompt_ids),
                                                                 RankSet.k == policy.rank_k,
                                                                 _of_versions(target.new_id, target.old_id))).all()
    counts: dict[int, int] = {}
    for (pid,) in per_prompt:
        counts[pid] = counts.get(pid, 0) + 1
    most = max(counts.values(), default=0)
    try:
        with session.begin_nested():
            return make_rank_sets(session, prompt_ids, [target.new_id, target.old_id], policy.rank_k,
                                  per_prompt=most + 1, seed=hash((target.new_id, target.old_id, most)), policy=policy)
    except IntegrityError:
        return 0


def next_rank_assignment(session: Session, user_id: int, region_ids: tuple[int, ...],
                         rng: random.Random | None = None, policy: ReviewPolicy | None = None) -> Assignment | None:
    """The rank set to show now (rank mode of ``collect.scheduler.next_assignment``), creating one if needed:
    the reviewer's open one; else one of a watched comparison drawn as for pairs (new sets made from stored
    generations when it has none left); else any open one in their regions, oldest first; never one of a decided
    comparison. None when nothing can be ranked (the caller then falls back to pairwise review)."""
    if not region_ids:
        return None
    current = session.scalar(open_rank_assignments(user_id, region_ids)
                             .order_by(Assignment.created_at, Assignment.id).limit(1))
    if current is not None:
        return current
    rng = rng or random.SystemRandom()
    policy = policy or ReviewPolicy.from_env()
    seen = _not_seen_by(user_id)
    targets = watched_targets(session, region_ids, policy)
    while targets:
        target = choose_target(targets, rng, policy.target_half_width)
        if target is None:
            break
        query = select(RankSet.id).where(RankSet.region_id == target.region_id, RankSet.k == policy.rank_k,
                                         _is_open(), seen, _of_versions(target.new_id, target.old_id))
        ids = _free(session, query, 1)
        if not ids and make_more_rank_sets(session, target, policy):
            ids = _free(session, query, 1)
        if (assignment := _claim(session, ids, user_id, rng)) is not None:
            # one ranking of k alternating candidates adds (2/k) x (cross-version pairs) comparisons to the target
            target.pending += 1
            return assignment
        targets.remove(target)
    decided = [~and_(RankSet.region_id == t.region_id, _of_versions(t.new_id, t.old_id))
               for t in watched_targets(session, region_ids, policy) if t.decided]  # the stopping rule
    ids = _free(session, select(RankSet.id).where(RankSet.region_id.in_(region_ids), RankSet.k == policy.rank_k,
                                                  _is_open(), seen, *decided), CANDIDATES)
    return _claim(session, ids, user_id, rng)


# ------------------------------------------------------------------------------------------------ writing


def write_ranking(session: Session, user_id: int, assignment: Assignment, rank_set: RankSet, ranks: list[int],
                  seconds: float | None, source: str = "review") -> tuple[int, bool]:
    """Store a checked ranking (``ranks`` by stored position) and the weighted votes it implies; returns (ranking id,
    duplicate). The unique (rank set, reviewer) constraint settles a double-submit race: the loser writes nothing."""
    order = list(assignment.display_order or [])
    ranking = Ranking(rank_set_id=rank_set.id, user_id=user_id, region_id=rank_set.region_id,
                      assignment_id=assignment.id, ranks=ranks, display_order=order, seconds_taken=seconds,
                      source=source)
    try:
        with session.begin_nested():
            session.add(ranking)
            session.flush()
    except IntegrityError:
        existing = session.scalar(select(Ranking.id).where(Ranking.rank_set_id == rank_set.id,
                                                           Ranking.user_id == user_id))
        return existing, True
    generation_at = {c.position: c.generation_id for c in rank_set.candidates}
    pair_of = {(a, b): pid for pid, a, b in session.execute(
        select(Pair.id, Pair.generation_a_id, Pair.generation_b_id).where(Pair.rank_set_id == rank_set.id)).all()}
    shown_at = {position: slot for slot, position in enumerate(order)}
    for o in implied_outcomes(ranks):
        ga, gb = generation_at[o.first], generation_at[o.second]
        choice = {"first": Choice.a, "second": Choice.b, "tie": Choice.tie}[o.outcome]
        # the side "shown left" of an implied pair is the candidate the reviewer saw earlier on the page
        shown_first = Side.a if shown_at.get(o.first, 0) < shown_at.get(o.second, 0) else Side.b
        session.add(Vote(pair_id=pair_of[(ga, gb)], user_id=user_id, region_id=rank_set.region_id, choice=choice,
                         shown_left=shown_first, seconds_taken=None, source=source, weight=o.weight,
                         ranking_id=ranking.id))
    assignment.voted = True
    session.flush()
    return ranking.id, False
