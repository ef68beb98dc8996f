"""Which pair a reviewer sees next: ``next_assignment``. Reviewers' time is the scarcest resource, so each vote
goes where it buys the most certainty for the leads.

The policy, in order:

1. the reviewer's open assignment, if any (a reload or a second tab shows the same pair);
2. with probability ``gold_rate``, a gold pair (known answer) they have not seen;
3. a *target* comparison of one of their regions — the newest version vs its base and vs its parent, the win-rates
   leads watch — drawn with probability proportional to how much one more vote narrows its 95% interval (targets
   already within the wanted half-width weigh a tenth, decided ones nothing: the stopping rule), as Chatbot
   Arena's active sampling does; then the oldest open pair of that comparison the reviewer has never seen, made
   from stored generations when none is left. A round makes its pairs in a random order of prompts, so oldest
   first keeps the voted pairs a random sample of them (what ``rewards.ppi`` needs);
4. any other open pair in their regions, oldest first (e.g. self-pairs that only train the reward model).

A pair is claimed with one conditional update (``assigned < reviews_wanted``), so it never gets more reviewers than
wanted, however many ask at once; the unique (pair, reviewer) assignment means no reviewer sees a pair twice.
Per-region vote counts are read at most every ``stats_ttl`` seconds and bumped locally for each assignment made
in between, so the hot path is a handful of indexed lookups at millions of votes.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Engine, Select, Update, and_, exists, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from collect.pairing import make_pairs, pairs_per_prompt
from collect.review_policy import ReviewPolicy
from db import queries, rollups
from db.models import Assignment, Generation, ModelVersion, Pair, Prompt, Side, VersionStatus, Vote
from db.session import is_deadlock, is_disconnect
from rewards.decisions import Evidence, comparison_ppi, evidence
from rewards.winrate import half_width as ci_half_width

log = logging.getLogger(__name__)

Z95 = 1.959963984540054
DONE_WEIGHT = 0.1  # a comparison already as precise as leads need still improves, at a tenth of the priority
CANDIDATES = 8  # pairs considered per pick outside the targets


@dataclass
class Target:
    """A comparison leads watch in one region: ``new`` vs ``old`` (its base or parent), votes from new's side."""

    region_id: int
    new_id: int
    old_id: int
    kind: str  # "base" or "parent"
    wins: float = 0.0  # summed vote weights: a ranking's implied outcomes count 2/k each
    ties: float = 0.0
    losses: float = 0.0
    pending: int = 0  # assignments made since the counts were read, whose votes are yet to come
    decided: bool = False  # its 95% interval excludes 50% (prediction-powered where it can be): no more votes
    exhausted_until: float = 0.0  # no open pair and none could be made: skip until then

    @property
    def n(self) -> float:
        return self.wins + self.ties + self.losses

    def half_width(self) -> float:
        return ci_half_width(self.wins, self.ties, self.losses) if self.n else 0.5


def one_vote_gain(target: Target) -> float:
    """How much one more vote narrows the target's interval: z·σ·(1/√n − 1/√(n+1)), σ with a one-win-one-loss prior
    so a comparison nobody has judged yet gets the largest gain rather than a division by zero."""
    w, t, n = target.wins + 1, target.ties, target.n + 2
    score = (w + t / 2) / n
    sigma = math.sqrt(max((w + t / 4) / n - score * score, 1e-6))
    m = target.n + target.pending + 1
    return Z95 * sigma * (1 / math.sqrt(m) - 1 / math.sqrt(m + 1))


def choose_target(targets: Sequence[Target], rng: random.Random, goal: float = 0.05) -> Target | None:
    """Draw a target with probability proportional to its one-vote gain (a tenth for those already within ``goal``,
    none for decided ones: the stopping rule of ``rewards.decisions``)."""
    weights = [0.0 if t.decided else one_vote_gain(t) * (DONE_WEIGHT if t.half_width() <= goal else 1.0)
               for t in targets]
    if not targets or sum(weights) <= 0:
        return None
    return rng.choices(list(targets), weights=weights, k=1)[0]


@dataclass
class _RegionView:
    read_at: float
    targets: list[Target] = field(default_factory=list)


_VIEWS: dict[tuple[str, int], _RegionView] = {}
_LOCKS: dict[tuple[str, int], threading.Lock] = {}


def clear_cache() -> None:
    """Forget every cached region view (tests; after bulk changes)."""
    _VIEWS.clear()


def read_targets(session: Session, region_id: int) -> list[Target]:
    """The region's target comparisons with their vote counts: every newest ready version (no ready child) that
    has pairs in the region, against its parent and against its base."""
    versions = session.execute(select(ModelVersion.id, ModelVersion.parent_id)
                               .where(ModelVersion.status == VersionStatus.ready)).all()
    parent = dict(versions)
    children = {p for p in parent.values() if p is not None}

    def base_of(vid: int) -> int:
        while parent.get(vid) is not None:
            vid = parent[vid]
        return vid

    wanted: dict[tuple[int, int], Target] = {}
    for vid, pid in versions:
        if vid in children or pid is None:
            continue
        wanted[(vid, pid)] = Target(region_id, vid, pid, "parent")
        base = base_of(vid)
        if base != pid:
            wanted[(vid, base)] = Target(region_id, vid, base, "base")
    if not wanted:
        return []
    present = set()
    for a, b in wanted:  # a comparison with pairs in the region is a target even before its first vote
        if any(session.scalar(select(Pair.id).where(Pair.region_id == region_id, Pair.model_a_id == x,
                                                    Pair.model_b_id == y).limit(1)) is not None
               for x, y in ((a, b), (b, a))):  # one orientation per lookup: each is an ix_pairs_comparison probe
            present.add((a, b))
    return count_votes(session, [wanted[key] for key in present])


def count_votes(session: Session, targets: list[Target]) -> list[Target]:
    """``targets`` (all of one region) with their vote counts, from new's side, and whether each is decided."""
    if not targets:
        return targets
    by_key = {(t.new_id, t.old_id): t for t in targets}
    for ma, mb, choice, n in rollups.comparison_totals(session, targets[0].region_id, list(by_key)):
        t = by_key[(ma, mb)] if (ma, mb) in by_key else by_key[(mb, ma)]
        if choice == "both_bad":
            continue  # says nothing about which is better
        winner = {"a": ma, "b": mb}.get(choice)
        if winner is None:
            t.ties += n
        elif winner == t.new_id:
            t.wins += n
        else:
            t.losses += n
    predicted = queries.predicted_pairs(session, targets[0].region_id)  # one read for the region, not per target
    for t in targets:
        ev = target_evidence(session, t, predicted)
        t.decided = ev is not None and (ev.low > 0.5 or ev.high < 0.5)
    return targets


def target_evidence(session: Session, target: Target, predicted: pd.DataFrame | None = None) -> Evidence | None:
    """The interval leads see for a counted target (``rewards.decisions.evidence``): prediction-powered over the
    comparison's evaluation pairs where enough of them are voted, else the votes' own; None before any vote.
    ``predicted``: the region's ``queries.predicted_pairs``, when the caller has read them already."""
    if predicted is None:
        predicted = queries.predicted_pairs(session, target.region_id, (target.new_id, target.old_id))
    ends = {target.new_id, target.old_id}
    pairs = predicted[predicted["model_a"].isin(ends) & predicted["model_b"].isin(ends)
                      & (predicted["model_a"] != predicted["model_b"])]
    ppi = comparison_ppi(pairs, target.new_id) if not pairs.empty else None
    return evidence(target.wins, target.ties, target.losses, ppi)


def _refresh(engine: Engine, key: tuple[str, int], lock: threading.Lock) -> None:
    try:
        with Session(engine) as session:
            rollups.refresh(session)  # fold final votes into the running totals: the counts below stay cheap
            session.commit()
            _VIEWS[key] = _RegionView(time.monotonic(), read_targets(session, key[1]))
    except Exception as exc:  # the old counts keep serving; the next expiry tries again
        if is_disconnect(exc):  # a database restart: expected, and retried at the next expiry
            log.warning("re-reading the scheduler's vote counts for region %s: connection lost", key[1])
        else:
            log.exception("re-reading the scheduler's vote counts for region %s failed", key[1])
    finally:
        lock.release()


def _targets(session: Session, region_id: int, policy: ReviewPolicy) -> list[Target]:
    """The region's targets from the cache; no reviewer ever waits for the counts. A stale entry is served while
    one background thread re-reads it; before the first read completes there are no targets yet and the reviewer
    gets the oldest open pair. With ``stats_ttl == 0`` the counts are read right here, every time."""
    if policy.stats_ttl == 0:
        return read_targets(session, region_id)
    engine = session.get_bind()
    key = (engine.url.render_as_string(), region_id)
    view = _VIEWS.get(key)
    if view is not None and time.monotonic() - view.read_at < policy.stats_ttl:
        return view.targets
    lock = _LOCKS.setdefault(key, threading.Lock())
    if lock.acquire(blocking=False):
        threading.Thread(target=_refresh, args=(engine, key, lock), daemon=True).start()
    return view.targets if view is not None else []


def watched_targets(session: Session, region_ids: tuple[int, ...], policy: ReviewPolicy) -> list[Target]:
    """The comparisons leads watch in the reviewer's regions, from the cache, minus those found exhausted lately
    (what both pairwise and rank mode draw from)."""
    now = time.monotonic()
    return [t for r in region_ids for t in _targets(session, r, policy) if t.exhausted_until <= now]


def _not_seen_by(user_id: int):
    return ~exists().where(Assignment.pair_id == Pair.id, Assignment.user_id == user_id)


def _is_open():
    return and_(Pair.assigned < Pair.reviews_wanted, ~Pair.is_gold)


def unseen_pairs(user_id: int, region_ids: tuple[int, ...]):
    """A query of the pairs the reviewer could still be given: open ones and gold ones they have not seen."""
    return select(Pair.id).where(Pair.region_id.in_(region_ids), or_(_is_open(), Pair.is_gold),
                                 _not_seen_by(user_id)).order_by(Pair.id)


def open_assignment(session: Session, user_id: int, region_ids: tuple[int, ...]) -> Assignment | None:
    """The reviewer's oldest assignment that is neither voted nor skipped, in one of their current regions."""
    return session.scalar(open_assignments(user_id, region_ids).order_by(Assignment.created_at, Assignment.id)
                          .limit(1))


def open_assignments(user_id: int, region_ids: tuple[int, ...]):
    """The reviewer's assignments neither voted nor skipped in ``region_ids``. The ``voted`` flag narrows them to a
    few rows through ix_assignments_open; the vote itself decides."""
    voted = exists().where(Vote.pair_id == Assignment.pair_id, Vote.user_id == user_id)
    return (select(Assignment).join(Pair, Assignment.pair_id == Pair.id)
            .where(Assignment.user_id == user_id, ~Assignment.voted, ~Assignment.skipped, ~voted,
                   Pair.region_id.in_(region_ids)))


def claim_first(session: Session, ids: Sequence[int], claim: Callable[[int], Update],
                assign: Callable[[int], Assignment]) -> Assignment | None:
    """The reviewer's assignment to the first of ``ids`` whose ``claim(id)`` (a conditional ``UPDATE … SET
    assigned = assigned + 1``) takes a place, made by ``assign(id)``; None when none is left. Pairs and rank sets
    are claimed alike, each try in a savepoint."""
    for item_id in ids:
        try:
            with session.begin_nested():
                if session.execute(claim(item_id), execution_options={"synchronize_session": False}).rowcount != 1:
                    continue  # another reviewer took its last place a moment ago
                assignment = assign(item_id)
                session.add(assignment)
            return assignment
        except IntegrityError:
            continue  # this reviewer's other tab claimed it
        except OperationalError as exc:
            if not is_deadlock(exc):
                raise
            # concurrent claims locked candidates in opposite orders and PostgreSQL failed this one to break the
            # cycle; the savepoint keeps the transaction, the other claimant gets this one: try the next
            continue
    return None


def _claim(session: Session, pair_ids: Sequence[int], user_id: int, rng: random.Random,
           capped: bool = True) -> Assignment | None:
    """Assign the first of ``pair_ids`` still free to the reviewer (side shown left drawn at random)."""

    def claim(pair_id: int) -> Update:
        stmt = update(Pair).where(Pair.id == pair_id).values(assigned=Pair.assigned + 1)
        return stmt.where(Pair.assigned < Pair.reviews_wanted) if capped else stmt

    return claim_first(session, pair_ids, claim, lambda pair_id: Assignment(
        pair_id=pair_id, user_id=user_id, shown_left=rng.choice([Side.a, Side.b])))


def free_ids(session: Session, stmt: Select, id_column, limit: int) -> list[int]:
    """The first ``limit`` ids of ``stmt`` (ordered by ``id_column``) that no other request is claiming right now,
    locked for this one (PostgreSQL's SKIP LOCKED: concurrent reviewers take different items instead of queueing on
    one row; SQLite, which serialises writers anyway, ignores it). When every candidate is being claimed, they are
    returned unlocked, and the claim waits for the other request to finish rather than giving up."""
    stmt = stmt.order_by(id_column).limit(limit)
    return (list(session.scalars(stmt.with_for_update(skip_locked=True, of=id_column.table)))
            or list(session.scalars(stmt)))


def _free(session: Session, stmt: Select, limit: int) -> list[int]:
    return free_ids(session, stmt, Pair.id, limit)


def _open_of(target: Target):
    """Per orientation, a query of the target's open pairs (each an ix_pairs_open probe)."""
    return [select(Pair.id).where(Pair.region_id == target.region_id, Pair.model_a_id == a, Pair.model_b_id == b,
                                  _is_open())
            for a, b in ((target.new_id, target.old_id), (target.old_id, target.new_id))]


def _not_of(targets: Iterable[Target]) -> list:
    """Conditions leaving out the pairs of ``targets`` (either orientation) in their regions."""
    return [~and_(Pair.region_id == t.region_id, or_(*(and_(Pair.model_a_id == a, Pair.model_b_id == b)
                                                        for a, b in ((t.new_id, t.old_id), (t.old_id, t.new_id)))))
            for t in targets]


def _target_pairs(session: Session, target: Target, user_id: int) -> list[int]:
    """The oldest free open pair of the target in each orientation that the reviewer has never seen."""
    return sorted(i for stmt in _open_of(target) for i in _free(session, stmt.where(_not_seen_by(user_id)), 1))


def _has_open_pairs(session: Session, target: Target) -> bool:
    """Whether anyone could still be given a pair of the target (a plain lookup: nothing is claimed or locked)."""
    return any(session.scalar(stmt.limit(1)) is not None for stmt in _open_of(target))


def prompts_of_both(session: Session, target: Target) -> list[int]:
    """The target region's prompts with stored outputs of both of the target's versions."""
    both = select(Generation.prompt_id).where(Generation.model_version_id == target.new_id).intersect(
        select(Generation.prompt_id).where(Generation.model_version_id == target.old_id)).subquery()
    return list(session.scalars(select(Prompt.id).where(Prompt.region_id == target.region_id,
                                                        Prompt.id.in_(select(both.c[0])))))


def make_more_pairs(session: Session, target: Target, policy: ReviewPolicy) -> int:
    """New pairs for a target from stored generations: one more per prompt of the region than the most any has.

    The seed is fixed by the comparison and the pair count, so two requests racing here build the same pairs and
    the unique constraint turns the loser into a no-op instead of a second, mirrored copy.
    """
    prompt_ids = prompts_of_both(session, target)
    if not prompt_ids:
        return 0
    done = pairs_per_prompt(session, prompt_ids, {target.new_id, target.old_id})
    most = max(done.values(), default=0)
    new, old = session.get(ModelVersion, target.new_id), session.get(ModelVersion, target.old_id)
    try:
        with session.begin_nested():
            return make_pairs(session, prompt_ids, new, old, per_prompt=most + 1, seed=hash((new.id, old.id, most)),
                              policy=policy)
    except IntegrityError:
        return 0


def next_assignment(session: Session, user_id: int, region_ids: tuple[int, ...], rng: random.Random | None = None,
                    policy: ReviewPolicy | None = None) -> Assignment | None:
    """The assignment to show now, creating one if needed; None when nothing is left for this reviewer."""
    if not region_ids:
        return None
    current = open_assignment(session, user_id, region_ids)
    if current is not None:
        return current
    rng = rng or random.SystemRandom()
    policy = policy or ReviewPolicy.from_env()
    seen = _not_seen_by(user_id)

    if policy.gold_rate and rng.random() < policy.gold_rate:
        gold = list(session.scalars(select(Pair.id).where(Pair.is_gold, Pair.region_id.in_(region_ids), seen)
                                    .order_by(Pair.id).limit(4 * CANDIDATES)))
        rng.shuffle(gold)
        if (assignment := _claim(session, gold, user_id, rng, capped=False)) is not None:
            return assignment

    now = time.monotonic()
    targets = watched_targets(session, region_ids, policy)
    while targets:
        target = choose_target(targets, rng, policy.target_half_width)
        if target is None:
            break
        ids = _target_pairs(session, target, user_id)
        if not ids and make_more_pairs(session, target, policy):
            ids = _target_pairs(session, target, user_id)
        if not ids and not _has_open_pairs(session, target):
            target.exhausted_until = now + max(policy.stats_ttl, 1.0)  # nobody has anything here: don't look again
        if (assignment := _claim(session, ids, user_id, rng)) is not None:
            target.pending += 1
            return assignment
        targets.remove(target)

    done = _not_of(t for t in watched_targets(session, region_ids, policy) if t.decided)
    for _ in range(3):  # pairs outside the targets, oldest first
        ids = _free(session, select(Pair.id).where(Pair.region_id.in_(region_ids), _is_open(), seen, *done),
                    CANDIDATES)
        if not ids:
            break
        if (assignment := _claim(session, ids, user_id, rng)) is not None:
            return assignment
    return open_assignment(session, user_id, region_ids)
