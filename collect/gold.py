"""Gold pairs: pairs whose right answer is known, mixed into reviewers' queues to measure how accurate they are.

An engineer writes a better and a worse output for a brief (``create_gold_pair``) or gives an existing pair its
known answer (``mark_gold``). Gold texts are stored like imported ones: as generations of the ``external`` model
version, PII-scrubbed, with a content hash so entering the same pair again finds the stored one. Gold pairs stay out
of win-rates (``db.queries.comparison_counts`` skips them); votes on them feed ``rewards.quality``.

    with session_scope() as session:
        pair_id = create_gold_pair(session, engineer, prompt_id, better="Ey up! ...", worse="Hello, dear customer")
"""

from __future__ import annotations

import numbers
import random

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from collect.auth import CurrentUser, require
from collect.ingest import MAX_TEXT_CHARS, ensure_import_identity
from collect.pii import scrub
from collect.prompting import TASK_LABELS
from collect.splits import content_hash, normalize_text
from db import rollups
from db.errors import NotFound, ValidationError
from db.models import AuditEvent, Choice, Generation, Pair, Prompt, Region, Vote

GOLD_ROLES = ("engineer", "admin")
GOLD_CHOICES = tuple(c.value for c in Choice)


def _clean_text(name: str, text: str, country: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"{name}: the {name} output is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise ValidationError(f"{name}: {len(text)} characters, over the {MAX_TEXT_CHARS} limit")
    return scrub(text.strip(), country)[0]


def _generation(session: Session, prompt: Prompt, version_id: int, text: str) -> Generation:
    """The external version's generation of ``text`` for ``prompt``, stored once (as the importer does)."""
    h = content_hash(prompt.content_hash, text)
    found = session.scalar(select(Generation).where(Generation.model_version_id == version_id,
                                                    Generation.prompt_id == prompt.id, Generation.content_hash == h)
                           .order_by(Generation.id).limit(1))
    if found is None:
        found = Generation(prompt_id=prompt.id, model_version_id=version_id, text=text, params={"purpose": "gold"},
                           seed=0, content_hash=h)
        session.add(found)
        session.flush()
    return found


def _pair(session: Session, id_1: int, id_2: int) -> Pair | None:
    """The pair of these two generations in either order."""
    return session.scalar(select(Pair).where(
        ((Pair.generation_a_id == id_1) & (Pair.generation_b_id == id_2))
        | ((Pair.generation_a_id == id_2) & (Pair.generation_b_id == id_1))
    ).order_by(Pair.id).limit(1))


def create_gold_pair(session: Session, actor: CurrentUser | None, prompt_id: int, better: str, worse: str,
                     seed: int | None = None) -> int:
    """Store ``better`` vs ``worse`` for a prompt as a gold pair and return its id; engineers and admins only.

    Which side ("a" or "b") the better output lands on is drawn at random (``seed`` for tests), so the right
    answer is not always "a". Idempotent: entering the same two texts again returns the stored pair. If the texts
    already form a pair that is not gold (typically an imported preference pair), that pair becomes the gold pair;
    if they form a gold pair with the opposite (or another) answer, nothing changes and ValidationError says so.
    """
    require(actor, *GOLD_ROLES)
    prompt = session.get(Prompt, int(prompt_id)) if isinstance(prompt_id, numbers.Integral) else None
    if prompt is None:
        raise NotFound(f"prompt_id: prompt {prompt_id!r} does not exist")
    country = prompt.region.country
    better_text = _clean_text("better", better, country)
    worse_text = _clean_text("worse", worse, country)
    if normalize_text(better_text) == normalize_text(worse_text):
        raise ValidationError("worse: the worse output is the same text as the better one")

    version, _ = ensure_import_identity(session)
    good = _generation(session, prompt, version.id, better_text)
    bad = _generation(session, prompt, version.id, worse_text)
    pair = _pair(session, good.id, bad.id)
    if pair is not None:
        answer = Choice.a if pair.generation_a_id == good.id else Choice.b
        if pair.is_gold:
            if pair.gold_choice != answer:
                known = pair.gold_choice.value if pair.gold_choice else "none"
                raise ValidationError(f"better: pair {pair.id} already holds these outputs as a gold pair whose "
                                      f"answer is {known!r}, not {answer.value!r}; change it with mark_gold")
            return pair.id
        pair.is_gold, pair.gold_choice = True, answer
        details = {"prompt_id": prompt.id, "gold_choice": answer.value, "existing_pair": True}
    else:
        rng = random.Random(seed) if seed is not None else random.SystemRandom()
        a, b = (good, bad) if rng.random() < 0.5 else (bad, good)
        answer = Choice.a if a is good else Choice.b
        pair = Pair(prompt_id=prompt.id, region_id=prompt.region_id, generation_a_id=a.id, generation_b_id=b.id,
                    model_a_id=version.id, model_b_id=version.id, is_gold=True, gold_choice=answer)
        session.add(pair)
        session.flush()
        details = {"prompt_id": prompt.id, "gold_choice": answer.value}
    session.add(AuditEvent(user_id=actor.id, action="create_gold_pair", entity="pair", entity_id=pair.id,
                           details=details))
    session.flush()
    return pair.id


def _get_pair(session: Session, pair_id: int) -> Pair:
    pair = session.get(Pair, int(pair_id)) if isinstance(pair_id, numbers.Integral) else None
    if pair is None:
        raise NotFound(f"pair_id: pair {pair_id!r} does not exist")
    return pair


def mark_gold(session: Session, actor: CurrentUser | None, pair_id: int, choice: str) -> None:
    """Make an existing pair gold with the known answer ``choice`` (a/b/tie/both_bad, in stored orientation).

    Its votes then count towards reviewers' gold accuracy and leave the win-rates. Setting the answer it already
    has changes nothing and writes no audit event.
    """
    require(actor, *GOLD_ROLES)
    if choice not in GOLD_CHOICES:
        raise ValidationError(f"choice: {choice!r} is not one of {', '.join(GOLD_CHOICES)}")
    pair = _get_pair(session, pair_id)
    previous = pair.gold_choice.value if pair.is_gold and pair.gold_choice else None
    if previous == choice:
        return
    pair.is_gold, pair.gold_choice = True, Choice(choice)
    session.add(AuditEvent(user_id=actor.id, action="mark_gold", entity="pair", entity_id=pair.id,
                           details={"gold_choice": choice, "previous": previous}))
    _votes_changed_meaning(session, pair)


def unmark_gold(session: Session, actor: CurrentUser | None, pair_id: int) -> None:
    """Turn a gold pair back into an ordinary one (its answer is forgotten); a no-op for a pair that is not gold."""
    require(actor, *GOLD_ROLES)
    pair = _get_pair(session, pair_id)
    if not pair.is_gold:
        return
    previous = pair.gold_choice.value if pair.gold_choice else None
    pair.is_gold, pair.gold_choice = False, None
    session.add(AuditEvent(user_id=actor.id, action="unmark_gold", entity="pair", entity_id=pair.id,
                           details={"previous": previous}))
    _votes_changed_meaning(session, pair)


def _votes_changed_meaning(session: Session, pair: Pair) -> None:
    """Votes already cast on the pair now count differently (gold pairs stay out of win-rates): the dashboard's
    running totals are recomputed at their next refresh."""
    session.flush()
    if session.scalar(select(Vote.id).where(Vote.pair_id == pair.id).limit(1)) is not None:
        rollups.request_rebuild(session)


def gold_pairs(session: Session, actor: CurrentUser | None, region: str | None = None) -> list[dict]:
    """Gold pairs (newest first), optionally of one region, with reviewer votes so far and their accuracy.

    Engineers and admins only: the answers are what reviewers are measured against. Keys: id, region, brief, a, b
    (the two texts in stored orientation), gold_choice, votes (reviewer votes, the import account's excluded),
    correct, accuracy (correct / votes; None before the first vote).
    """
    require(actor, *GOLD_ROLES)
    stmt = (select(Pair, Region.code).join(Region, Pair.region_id == Region.id).where(Pair.is_gold)
            .order_by(Pair.id.desc()))
    if region is not None:
        stmt = stmt.where(Region.code == region)
    rows = session.execute(stmt).all()
    ids = [pair.id for pair, _ in rows]
    tallies = {pid: (n, right) for pid, n, right in session.execute(
        select(Vote.pair_id, func.count(), func.sum(case((Vote.choice == Pair.gold_choice, 1), else_=0)))
        .join(Pair, Vote.pair_id == Pair.id).where(Vote.pair_id.in_(ids), Vote.source != "import")
        .group_by(Vote.pair_id)
    )} if ids else {}
    out = []
    for pair, code in rows:
        n, right = tallies.get(pair.id, (0, 0))
        out.append({"id": pair.id, "region": code, "brief": pair.prompt.text, "a": pair.generation_a.text,
                    "b": pair.generation_b.text, "gold_choice": pair.gold_choice.value if pair.gold_choice else None,
                    "votes": int(n), "correct": int(right or 0), "accuracy": (right or 0) / n if n else None})
    return out


def prompt_options(session: Session, actor: CurrentUser | None, region: str) -> list[tuple[int, str]]:
    """(prompt id, "task: brief") for every prompt of ``region``, for picking the brief of a new gold pair."""
    require(actor, *GOLD_ROLES)
    rows = session.execute(select(Prompt.id, Prompt.task_type, Prompt.text).join(Region, Prompt.region_id == Region.id)
                           .where(Region.code == region).order_by(Prompt.id)).all()
    return [(pid, f"{TASK_LABELS[task.value]}: {text}") for pid, task, text in rows]
