"""Blind review: what a reviewer sees, and where a vote (``submit_vote``) or a ranking (``submit_ranking``) is
written.

Pairwise review works in terms of the sides the reviewer saw ("left"/"right"); the mapping to the pair's stored
generations ("a"/"b") is the assignment's ``shown_left``, drawn at random per reviewer. In rank mode
(``GEOALIGN_RANK_K`` 3 or 4, ``collect.ranking``) the reviewer sees k outputs labelled A, B, C, D in an order
shuffled for them and ranks them by those labels. Nothing returned to the page names a model or version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload

from collect.auth import CurrentUser, require
from collect.pii import scrub
from collect.prompting import TASK_LABELS, BriefContext
from collect.ranking import next_rank_assignment, open_rank_assignments, unseen_rank_sets, write_ranking
from collect.review_policy import ReviewPolicy
from collect.scheduler import next_assignment, open_assignments, unseen_pairs
from collect.splits import content_hash
from db.errors import NotFound, PermissionDenied, ValidationError
from db.models import (
    Assignment,
    AuditEvent,
    Choice,
    Example,
    Pair,
    Ranking,
    RankSet,
    Region,
    Side,
    Strength,
    Tag,
    Vote,
    user_regions,
)
from rewards.ranking import check_ranks

UNDO_SECONDS = 120  # long enough to notice a mis-click, short enough that the vote is not yet trained on
CHOICES = ("left", "right", "tie", "both_bad")


@dataclass(frozen=True)
class ReviewItem:
    """One pair as the reviewer sees it: brief, region context, and the two outputs in display order."""

    assignment_id: int
    region_code: str
    region_name: str
    profile: str
    climate: str  # the region's climate in the brief's month (or the current month)
    task: str
    brief: str
    left: str
    right: str


LABELS = "ABCD"  # a rank item's outputs as the reviewer sees them: opaque, and shuffled per reviewer


@dataclass(frozen=True)
class RankItem:
    """One rank set as the reviewer sees it: brief, region context, and ``k`` outputs as (label, text) in display
    order; a ranking names them by label."""

    assignment_id: int
    region_code: str
    region_name: str
    profile: str
    climate: str
    task: str
    brief: str
    candidates: tuple[tuple[str, str], ...]

    @property
    def k(self) -> int:
        return len(self.candidates)


@dataclass(frozen=True)
class VoteResult:
    vote_id: int
    duplicate: bool  # True when this assignment had already been voted: nothing new was written


PROGRESS_CAP = 100  # "pairs left" is counted up to here: past it a reviewer only needs to know there is plenty


@dataclass(frozen=True)
class Progress:
    votes_today: int  # a ranking counts as one judgement
    pairs_left: int  # pairs and rank sets, at most PROGRESS_CAP
    more: bool = False  # True when there are more than PROGRESS_CAP

    @property
    def pairs_left_text(self) -> str:
        return f"{self.pairs_left:,}+" if self.more else f"{self.pairs_left:,}"


def _other(side: Side) -> Side:
    return Side.b if side == Side.a else Side.a


def _reviews_region(session: Session, user: CurrentUser, region_id: int) -> bool:
    """Whether the reviewer reviews the region now: the session's list and the database must both say so (an admin
    may have moved them out since the session last refreshed)."""
    if region_id not in user.region_ids:
        return False
    return session.scalar(select(user_regions.c.region_id).where(user_regions.c.user_id == user.id,
                                                                 user_regions.c.region_id == region_id)) is not None


def _assignment_of(session: Session, user: CurrentUser, assignment_id: int) -> Assignment:
    assignment = session.get(Assignment, assignment_id)
    if assignment is None:
        raise NotFound(f"assignment {assignment_id} does not exist")
    if assignment.user_id != user.id:
        raise PermissionDenied("this item was assigned to another reviewer")
    return assignment


def _own_assignment(session: Session, user: CurrentUser, assignment_id: int) -> tuple[Assignment, Pair]:
    assignment = _assignment_of(session, user, assignment_id)
    if assignment.pair_id is None:
        raise ValidationError(f"assignment {assignment_id} is a ranking of several outputs: submit a ranking")
    # the pair's texts and prompt load only if this request needs them (a rewrite or comment to scrub)
    pair = session.get(Pair, assignment.pair_id, options=[lazyload("*")])
    if not _reviews_region(session, user, pair.region_id):
        raise PermissionDenied(f"{user.username} does not review this pair's region")
    return assignment, pair


def _own_rank_assignment(session: Session, user: CurrentUser, assignment_id: int) -> tuple[Assignment, RankSet]:
    assignment = _assignment_of(session, user, assignment_id)
    if assignment.rank_set_id is None:
        raise ValidationError(f"assignment {assignment_id} is a pair: submit a vote, not a ranking")
    rank_set = session.get(RankSet, assignment.rank_set_id)
    if not _reviews_region(session, user, rank_set.region_id):  # re-checked in the database, as for votes
        raise PermissionDenied(f"{user.username} does not review this ranking's region")
    return assignment, rank_set


def _voted(session: Session, user: CurrentUser, assignment: Assignment) -> int | None:
    """The reviewer's vote on the assignment's pair (or ranking of its rank set), if any (it decides; the flag may
    lag behind it)."""
    if assignment.rank_set_id is not None:
        return session.scalar(select(Ranking.id).where(Ranking.rank_set_id == assignment.rank_set_id,
                                                       Ranking.user_id == user.id))
    return session.scalar(select(Vote.id).where(Vote.pair_id == assignment.pair_id, Vote.user_id == user.id))


def next_item(session: Session, user: CurrentUser, policy: ReviewPolicy | None = None) -> ReviewItem | RankItem | None:
    """The pair (or, in rank mode, the rank set) to review now, or None when the reviewer's queue is empty.

    Rank mode (``policy.rank_k`` 3 or 4, from ``GEOALIGN_RANK_K``) serves rank sets of the comparisons leads watch
    and falls back to pairs when none can be made (e.g. a fresh demo with only the base model's two samples per
    brief), so a reviewer is never idle while work is left. In pairwise mode a rank set still open for the reviewer
    (handed out while rank mode was on) comes first."""
    require(user, "reviewer")
    policy = policy or ReviewPolicy.from_env()
    if policy.ranks:
        assignment = next_rank_assignment(session, user.id, user.region_ids, policy=policy)
        if assignment is not None:
            return _rank_item(session, assignment)
    else:
        # a rank set handed out before the mode went back to pairwise is finished first, not left holding its place
        assignment = session.scalar(open_rank_assignments(user.id, user.region_ids)
                                    .order_by(Assignment.created_at, Assignment.id).limit(1))
        if assignment is not None:
            return _rank_item(session, assignment)
    assignment = next_assignment(session, user.id, user.region_ids, policy=policy)
    if assignment is None:
        return None
    pair = session.get(Pair, assignment.pair_id)
    prompt, region = pair.prompt, session.get(Region, pair.region_id)
    texts = {Side.a: pair.generation_a.text, Side.b: pair.generation_b.text}
    context = BriefContext.of_prompt(region, prompt)  # what the model was prompted with, too
    return ReviewItem(
        assignment_id=assignment.id, region_code=region.code, region_name=region.name, profile=region.profile,
        climate=context.season, task=TASK_LABELS[prompt.task_type.value],
        brief=prompt.text, left=texts[assignment.shown_left], right=texts[_other(assignment.shown_left)],
    )


def _rank_item(session: Session, assignment: Assignment) -> RankItem:
    rank_set = session.get(RankSet, assignment.rank_set_id)
    prompt, region = rank_set.prompt, session.get(Region, rank_set.region_id)
    text_at = {c.position: c.generation.text for c in rank_set.candidates}
    context = BriefContext.of_prompt(region, prompt)
    return RankItem(
        assignment_id=assignment.id, region_code=region.code, region_name=region.name, profile=region.profile,
        climate=context.season, task=TASK_LABELS[prompt.task_type.value], brief=prompt.text,
        candidates=tuple((LABELS[slot], text_at[position]) for slot, position in enumerate(assignment.display_order)),
    )


def submit_ranking(session: Session, user: CurrentUser, assignment_id: int, ranks: dict[str, int],
                   seconds: float | None = None) -> VoteResult:
    """Record the reviewer's ranking of a rank set: ``ranks`` maps each shown label (A, B, ...) to its rank, 1 the
    best, equal ranks for ties (``{"A": 2, "B": 1, "C": 2}``). Idempotent: a second submit returns the first
    ranking (``VoteResult.vote_id`` is then the ranking's id).

    Stored as one ranking plus the k(k-1)/2 pairwise votes it implies, each weighted 2/k (``rewards.ranking``).
    Refused (ValidationError naming the field, nothing written) for a skipped assignment, labels other than the
    ones shown, and ranks outside 1..k; refused (PermissionDenied) once the reviewer no longer reviews the region.
    """
    require(user, "reviewer")
    assignment, rank_set = _own_rank_assignment(session, user, assignment_id)
    existing = _voted(session, user, assignment)
    if existing is not None:
        return VoteResult(existing, duplicate=True)
    if assignment.skipped:  # its place went back to the pool
        raise ValidationError("you skipped this ranking; it was not recorded (reload for your next item)")
    shown = list(LABELS[:rank_set.k])
    if not isinstance(ranks, dict) or sorted(ranks) != shown:
        given = sorted(ranks) if isinstance(ranks, dict) else type(ranks).__name__
        raise ValidationError(f"ranks: rank exactly the outputs shown, {', '.join(shown)} (got {given})")
    by_slot = check_ranks([ranks[label] for label in shown], rank_set.k)
    by_position = [0] * rank_set.k
    for slot, position in enumerate(assignment.display_order):
        by_position[position] = by_slot[slot]
    ranking_id, duplicate = write_ranking(session, user.id, assignment, rank_set, by_position, seconds)
    return VoteResult(ranking_id, duplicate=duplicate)


def submit_vote(session: Session, user: CurrentUser, assignment_id: int, choice: str, strength: str | None = None,
                tags: list[str] | tuple[str, ...] = (), comment: str = "", rewrite: str | None = None,
                rewrite_side: str | None = None, seconds: float | None = None) -> VoteResult:
    """Record the reviewer's judgement of an assignment. Idempotent: a second submit returns the first vote.

    Refused (ValidationError, nothing written) for a skipped assignment and for any invalid choice, strength,
    ``rewrite_side`` or tag; refused (PermissionDenied) once the reviewer no longer reviews the pair's region.

    ``choice`` is left/right/tie/both_bad as displayed; ``rewrite`` improves the better output (for left/right)
    or, for both_bad and tie, the side named by ``rewrite_side`` (or neither in particular when it is None).
    """
    require(user, "reviewer")
    assignment, pair = _own_assignment(session, user, assignment_id)
    existing = _voted(session, user, assignment)
    if existing is not None:
        return VoteResult(existing, duplicate=True)
    if assignment.skipped:  # its place went back to the pool: another reviewer may be judging it now
        raise ValidationError("you skipped this pair; it was not voted (reload for your next pair)")
    if choice not in CHOICES:
        raise ValidationError(f"choice {choice!r} is not one of {CHOICES}")
    if strength not in (None, "slight", "clear"):
        raise ValidationError(f"strength {strength!r} is not one of slight, clear")
    if rewrite_side not in (None, "left", "right"):
        raise ValidationError(f"rewrite_side {rewrite_side!r} is not left or right")
    if strength is not None and choice not in ("left", "right"):
        strength = None  # a tie or "both bad" has no direction to be strong about
    left, right = assignment.shown_left, _other(assignment.shown_left)
    stored_choice = {"left": Choice(left.value), "right": Choice(right.value), "tie": Choice.tie,
                     "both_bad": Choice.both_bad}[choice]
    rewrite = (rewrite or "").strip() or None
    rewrite_of = None
    if rewrite is not None:
        side = {"left": "left", "right": "right"}.get(choice, rewrite_side)
        rewrite_of = {"left": left, "right": right, None: None}[side]
        rewrite, _ = scrub(rewrite, pair.prompt.region.country)
    tag_rows = list(session.scalars(select(Tag).where(Tag.name.in_(list(tags))))) if tags else []
    unknown = set(tags) - {t.name for t in tag_rows}
    if unknown:
        raise ValidationError(f"unknown reason tags {sorted(unknown)}")
    comment, _ = scrub(comment.strip(), pair.prompt.region.country) if comment else ("", None)

    vote = Vote(pair_id=pair.id, user_id=user.id, region_id=pair.region_id, choice=stored_choice,
                strength=Strength(strength) if strength else None, comment=comment, rewrite=rewrite,
                rewrite_of=rewrite_of, shown_left=assignment.shown_left, seconds_taken=seconds, tags=tag_rows)
    try:
        with session.begin_nested():  # the unique (pair, reviewer) constraint settles a double-click race
            session.add(vote)
    except IntegrityError:
        existing = session.scalar(select(Vote.id).where(Vote.pair_id == pair.id, Vote.user_id == user.id))
        return VoteResult(existing, duplicate=True)
    assignment.voted = True
    if rewrite is not None:
        h = content_hash(pair.prompt.content_hash, rewrite)
        if session.scalar(select(Example.id).where(Example.region_id == pair.region_id,
                                                   Example.content_hash == h)) is None:
            session.add(Example(prompt_id=pair.prompt_id, region_id=pair.region_id, text=rewrite, source="rewrite",
                                vote_id=vote.id, content_hash=h))
    session.flush()
    return VoteResult(vote.id, duplicate=False)


def skip(session: Session, user: CurrentUser, assignment_id: int) -> None:
    """Set the pair (or rank set) aside for this reviewer; it will not come back to them. A voted pair or a ranked
    set cannot be skipped.

    ``assignment_id`` is the one the page showed: a stale tab's Skip then names a pair already voted (refused)
    or already skipped (nothing to do), never the pair that replaced it.
    """
    require(user, "reviewer")
    if _assignment_of(session, user, assignment_id).rank_set_id is not None:
        assignment, item = _own_rank_assignment(session, user, assignment_id)
        table, what = RankSet, "ranking"
    else:
        assignment, item = _own_assignment(session, user, assignment_id)
        table, what = Pair, "pair"
    if assignment.voted or _voted(session, user, assignment) is not None:
        # its place is used by the vote: freeing it would hand the pair to one reviewer too many
        raise ValidationError(f"this {what} is already {'ranked' if what == 'ranking' else 'voted'}, so it cannot "
                              f"be skipped (undo the {'ranking' if what == 'ranking' else 'vote'} first)")
    if not assignment.skipped:
        assignment.skipped = True
        # its place goes back to the pool, so another reviewer can judge it instead
        session.execute(update(table).where(table.id == item.id, table.assigned > 0)
                        .values(assigned=table.assigned - 1), execution_options={"synchronize_session": False})
    session.flush()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def last_undoable(session: Session, user: CurrentUser, now: datetime | None = None) -> Vote | Ranking | None:
    """The reviewer's latest pairwise vote or ranking if it is still inside the undo window and in a region they
    still review."""
    now = now or datetime.now(timezone.utc)
    vote = session.scalar(select(Vote).where(Vote.user_id == user.id, Vote.source == "review",
                                             Vote.ranking_id.is_(None))
                          .order_by(Vote.created_at.desc(), Vote.id.desc()).limit(1))
    ranking = session.scalar(select(Ranking).where(Ranking.user_id == user.id, Ranking.source == "review")
                             .order_by(Ranking.created_at.desc(), Ranking.id.desc()).limit(1))
    latest = max((x for x in (vote, ranking) if x is not None), key=lambda x: _aware(x.created_at), default=None)
    if latest is None or not _reviews_region(session, user, latest.region_id):
        return None
    return latest if now - _aware(latest.created_at) <= timedelta(seconds=UNDO_SECONDS) else None


def undo_last_vote(session: Session, user: CurrentUser, now: datetime | None = None) -> bool:
    """Withdraw the latest vote or ranking within the undo window; its pair or rank set comes back first. False if
    nothing to undo."""
    require(user, "reviewer")
    vote = last_undoable(session, user, now)
    if vote is None:
        return False
    if isinstance(vote, Ranking):
        session.add(AuditEvent(user_id=user.id, action="undo_ranking", entity="rank_set",
                               entity_id=vote.rank_set_id, details={"ranks": vote.ranks}))
        session.execute(update(Assignment).where(Assignment.rank_set_id == vote.rank_set_id,
                                                 Assignment.user_id == user.id)
                        .values(voted=False), execution_options={"synchronize_session": False})
        # its implied votes go with it (votes.ranking_id ON DELETE CASCADE), in this statement
        session.delete(vote)
        session.flush()
        return True
    for example in session.scalars(select(Example).where(Example.vote_id == vote.id)):
        session.delete(example)
    session.add(AuditEvent(user_id=user.id, action="undo_vote", entity="pair", entity_id=vote.pair_id,
                           details={"choice": vote.choice.value}))
    session.execute(update(Assignment).where(Assignment.pair_id == vote.pair_id, Assignment.user_id == user.id)
                    .values(voted=False), execution_options={"synchronize_session": False})
    session.delete(vote)
    session.flush()
    return True


def progress(session: Session, user: CurrentUser, now: datetime | None = None) -> Progress:
    """Votes and rankings the reviewer made today (UTC), and pairs and rank sets still waiting for them (counted up
    to ``PROGRESS_CAP``)."""
    now = now or datetime.now(timezone.utc)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = session.scalar(select(func.count()).select_from(Vote)
                           .where(Vote.user_id == user.id, Vote.created_at >= start, Vote.source == "review",
                                  Vote.ranking_id.is_(None))) or 0
    today += session.scalar(select(func.count()).select_from(Ranking)
                            .where(Ranking.user_id == user.id, Ranking.created_at >= start,
                                   Ranking.source == "review")) or 0
    if not user.region_ids:
        return Progress(today, 0)
    # each count stops at the cap (LIMIT inside the count): at a million pairs an exact count of the unseen ones
    # was most of the Review page's database time, for a number nobody reads past "plenty"
    waiting = 0
    for query in (unseen_pairs(user.id, user.region_ids), open_assignments(user.id, user.region_ids),
                  unseen_rank_sets(user.id, user.region_ids), open_rank_assignments(user.id, user.region_ids)):
        waiting += session.scalar(select(func.count()).select_from(query.limit(PROGRESS_CAP + 1).subquery())) or 0
        if waiting > PROGRESS_CAP:
            return Progress(today, PROGRESS_CAP, more=True)
    return Progress(today, waiting)
