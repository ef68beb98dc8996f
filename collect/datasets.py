"""Training datasets built from the database as plain rows (TRL's prompt/completion and prompt/chosen/rejected).

The test split is held out: the builders refuse it unless ``allow_test`` is passed explicitly, which only the
audit export does; training code never passes it.

Preference rules (also in the README):

* votes on one pair aggregate to the majority of "A better" vs "B better"; ``agreement`` is the share of all
  votes on the pair that agree with the majority, and ``margin`` = agreement × mean strength of the majority's
  votes (clear 1.0, slight 0.5, unspecified 1.0);
* a gold pair (known answer) gives the known answer with margin 1.0, whatever its reviewers said
  (``kind="gold"``; ``agreement`` is the share of votes that got it right);
* a pair whose A and B votes are level (ties included) is dropped and counted in ``ties_dropped``; a pair with
  only "both bad" votes is dropped and counted in ``both_bad``;
* a reviewer's rewrite beats both outputs: ``rewrite > chosen`` and ``rewrite > rejected`` (for "both bad" and
  "tie": ``rewrite > A`` and ``rewrite > B``), each with margin 1.0;
* a ranking of k outputs gives one row per strictly ordered pair of its outputs (``kind="ranking"``; ties give
  none), with ``weight`` 2/k (one ranking is k-1 comparisons' worth, see ``rewards.ranking``), ``ranking_id``, and
  ``margin`` = rank gap / (k-1) (the best over the worst is a clearer preference than two neighbours). Every other
  row has ``weight`` 1.0 and ``ranking_id`` None.

With ``reliability`` (``round.vote_weighting: reliability``, estimated by ``collect.reliability``), a vote counts its
reviewer's reliability w in [0, 1] instead of 1 (w is 1 for a reviewer without an estimate, see
``rewards.reliability``):

* the side with the larger sum of w wins; level sums (say, only random clickers' votes, at w = 0) are a tie;
* ``weighted_agreement`` = the winners' sum of w / the number of votes (with every w = 1 it is ``agreement``), and
  ``margin`` = weighted_agreement × the w-weighted mean strength of the winners' votes: one vote of a reviewer at
  w = 0.3 gives a third of the margin one at w = 1 gives, where plain agreement would give both 1.0;
* ``vote_weight``, what a weighted DPO multiplies the row's loss by, is weighted_agreement; a ranking row's
  margin, weighted_agreement and vote_weight are its plain values × its author's w (its ``weight`` 2/k stays, for
  ``rankings_at_their_weight``); gold and rewrite rows keep margin 1.0, with weighted_agreement and vote_weight 1.0.

Without ``reliability`` the rows have neither key and are exactly as described above.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, aliased

from collect.prompting import PROMPT_FORMATS, BriefContext, dataset_completion, dataset_prompt
from collect.splits import content_hash
from db.errors import GeoAlignError, ValidationError
from db.models import (
    Choice,
    Example,
    Generation,
    ModelVersion,
    Pair,
    Prompt,
    RankCandidate,
    Ranking,
    Region,
    Split,
    Strength,
    Vote,
)

if TYPE_CHECKING:  # only annotated here; collect.reliability builds one
    from rewards.reliability import Reliability

STRENGTH_WEIGHT = {Strength.clear: 1.0, Strength.slight: 0.5, None: 1.0}


@dataclass
class DatasetFilter:
    """Which rows go into a dataset. ``None`` means no restriction."""

    splits: tuple[str, ...] = ("train",)
    regions: tuple[str, ...] | None = None
    rounds: tuple[int, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None
    allow_test: bool = False  # only for evaluation and audit exports, never for training

    def checked_splits(self) -> list[Split]:
        try:
            wanted = [Split(s) for s in self.splits]
        except ValueError as exc:
            raise ValidationError(f"unknown split in {list(self.splits)}; choose from train, val, test") from exc
        if Split.test in wanted and not self.allow_test:
            raise ValidationError("the test split is held out for evaluation and never goes into a training dataset")
        return wanted


@dataclass
class PreferenceStats:
    """What the aggregation kept and dropped."""

    pairs_with_votes: int = 0
    pairs_kept: int = 0
    ties_dropped: int = 0
    both_bad: int = 0
    rewrite_rows: int = 0
    votes: int = 0
    rankings: int = 0  # rankings read (their implied votes are not in ``votes``)
    ranking_rows: int = 0  # rows from their strictly ordered pairs
    choices: Counter = field(default_factory=Counter)


def _check_format(fmt: str) -> None:
    if fmt not in PROMPT_FORMATS:
        raise ValidationError(f"unknown prompt format {fmt!r}; choose from {', '.join(PROMPT_FORMATS)}")


def _prompt_value(fmt: str, region: Region, prompt: Prompt):
    return dataset_prompt(BriefContext.of_prompt(region, prompt), fmt)


def _where_prompt(stmt: Select, f: DatasetFilter, created_col) -> Select:
    stmt = stmt.where(Prompt.split.in_(f.checked_splits()))
    if f.regions is not None:
        stmt = stmt.where(Region.code.in_(f.regions))
    if f.since is not None:
        stmt = stmt.where(created_col >= f.since)
    if f.until is not None:
        stmt = stmt.where(created_col < f.until)
    return stmt


def sft_rows(session: Session, f: DatasetFilter | None = None, prompt_format: str = "conversational") -> list[dict]:
    """Gold examples and reviewer rewrites as ``prompt``/``completion`` rows with region, task type and split.

    ``prompt_format`` is one of ``collect.prompting.PROMPT_FORMATS``: conversational rows hold message lists
    (TRL's conversational prompt-completion format), text rows the plain prompt and the copy as strings.
    """
    _check_format(prompt_format)
    f = f or DatasetFilter()
    rows, seen = [], set()
    stmt = (select(Example, Prompt, Region).join(Prompt, Example.prompt_id == Prompt.id)
            .join(Region, Prompt.region_id == Region.id).order_by(Example.id))
    if f.rounds is None:
        for ex, prompt, region in session.execute(_where_prompt(stmt, f, Example.created_at)):
            seen.add((region.id, ex.content_hash))
            rows.append({"prompt": _prompt_value(prompt_format, region, prompt),
                         "completion": dataset_completion(ex.text, prompt_format),
                         "region": region.code, "task_type": prompt.task_type.value, "split": prompt.split.value,
                         "source": "rewrite" if ex.vote_id else "gold"})
    # rewrites written in votes and not (yet) stored as examples
    vstmt = (select(Vote, Prompt, Region).join(Pair, Vote.pair_id == Pair.id).join(Prompt, Pair.prompt_id == Prompt.id)
             .join(Region, Prompt.region_id == Region.id).where(Vote.rewrite.is_not(None)).order_by(Vote.id))
    if f.rounds is not None:
        vstmt = vstmt.where(Pair.round_id.in_(f.rounds))
    for vote, prompt, region in session.execute(_where_prompt(vstmt, f, Vote.created_at)):
        h = content_hash(prompt.content_hash, vote.rewrite)
        if not vote.rewrite.strip() or (region.id, h) in seen:
            continue
        seen.add((region.id, h))
        rows.append({"prompt": _prompt_value(prompt_format, region, prompt),
                     "completion": dataset_completion(vote.rewrite, prompt_format),
                     "region": region.code, "task_type": prompt.task_type.value, "split": prompt.split.value,
                     "source": "rewrite"})
    return rows


def preference_rows(session: Session, f: DatasetFilter | None = None, prompt_format: str = "conversational",
                    reliability: Reliability | None = None) -> tuple[list[dict], PreferenceStats]:
    """Votes aggregated into ``prompt``/``chosen``/``rejected``/``margin`` rows with metadata, and rankings as a row
    per strictly ordered pair with their ``weight`` and ``ranking_id`` (see module doc).

    In the conversational format ``chosen`` and ``rejected`` are one assistant message each (TRL's
    conversational preference format); in the text format they are strings. With ``reliability`` each vote counts
    its reviewer's reliability, and rows carry ``weighted_agreement`` and ``vote_weight`` (see module doc).
    """
    _check_format(prompt_format)
    f = f or DatasetFilter()

    def as_completion(text: str):
        return dataset_completion(text, prompt_format)

    gen_a, gen_b = aliased(Generation), aliased(Generation)
    ver_a, ver_b = aliased(ModelVersion), aliased(ModelVersion)
    stmt = (select(Vote, Pair, Prompt, Region, gen_a.text, gen_b.text, ver_a.name, ver_b.name)
            .join(Pair, Vote.pair_id == Pair.id).join(Prompt, Pair.prompt_id == Prompt.id)
            .join(Region, Prompt.region_id == Region.id)
            .join(gen_a, Pair.generation_a_id == gen_a.id).join(gen_b, Pair.generation_b_id == gen_b.id)
            .join(ver_a, Pair.model_a_id == ver_a.id).join(ver_b, Pair.model_b_id == ver_b.id)
            .order_by(Pair.id, Vote.id))
    if f.rounds is not None:
        stmt = stmt.where(Pair.round_id.in_(f.rounds))
    by_pair: dict[int, list] = defaultdict(list)
    ranked: list = []
    for row in session.execute(_where_prompt(stmt, f, Vote.created_at)):
        (ranked if row[0].ranking_id is not None else by_pair[row[1].id]).append(row)

    stats = PreferenceStats(pairs_with_votes=len(by_pair))
    out: list[dict] = _ranking_rows(session, ranked, prompt_format, stats, reliability)
    for pair_rows in by_pair.values():
        _, pair, prompt, region, text_a, text_b, name_a, name_b = pair_rows[0]
        votes = [r[0] for r in pair_rows]
        stats.votes += len(votes)
        counts = Counter(v.choice for v in votes)
        stats.choices.update(c.value for c in counts.elements())
        meta = {"prompt": _prompt_value(prompt_format, region, prompt), "region": region.code,
                "round": pair.round_id, "split": prompt.split.value, "pair_id": pair.id, "num_votes": len(votes),
                "weight": 1.0, "ranking_id": None}
        side = {Choice.a: (text_a, name_a), Choice.b: (text_b, name_b)}
        # each vote's say: its reviewer's reliability in this region, or 1 for every vote without weighting
        say = {v.id: reliability.weight(region.code, v.user_id) if reliability else 1.0 for v in votes}
        score = {c: sum(say[v.id] for v in votes if v.choice == c) for c in (Choice.a, Choice.b)}
        unit = {"weighted_agreement": 1.0, "vote_weight": 1.0} if reliability else {}
        if pair.is_gold and pair.gold_choice in side:  # the known answer outranks reviewers who got it wrong
            win = pair.gold_choice
            lose = Choice.b if win == Choice.a else Choice.a
            out.append(meta | {"chosen": as_completion(side[win][0]), "rejected": as_completion(side[lose][0]),
                               "margin": 1.0,
                               "agreement": round(counts[win] / len(votes), 4), "chosen_model": side[win][1],
                               "rejected_model": side[lose][1], "kind": "gold"} | unit)
            stats.pairs_kept += 1
        elif abs(score[Choice.a] - score[Choice.b]) > 1e-9:
            win, lose = (Choice.a, Choice.b) if score[Choice.a] > score[Choice.b] else (Choice.b, Choice.a)
            winners = [v for v in votes if v.choice == win]
            agreement = len(winners) / len(votes)
            weighted = score[win] / len(votes)  # = agreement when every say is 1
            strength = sum(say[v.id] * STRENGTH_WEIGHT[v.strength] for v in winners) / score[win]
            extra = {"weighted_agreement": round(weighted, 4), "vote_weight": round(weighted, 4)} \
                if reliability else {}
            out.append(meta | {"chosen": as_completion(side[win][0]), "rejected": as_completion(side[lose][0]),
                               "margin": round(weighted * strength, 4), "agreement": round(agreement, 4),
                               "chosen_model": side[win][1], "rejected_model": side[lose][1], "kind": "vote"}
                       | extra)
            stats.pairs_kept += 1
        elif counts[Choice.both_bad] == len(votes):
            stats.both_bad += 1
        else:
            stats.ties_dropped += 1
        for v in votes:
            if not (v.rewrite and v.rewrite.strip()):
                continue
            if v.choice in (Choice.a, Choice.b):
                beaten = [side[v.choice], side[Choice.b if v.choice == Choice.a else Choice.a]]
            else:
                beaten = [side[Choice.a], side[Choice.b]]
            for text, name in beaten:
                out.append(meta | {"chosen": as_completion(v.rewrite), "rejected": as_completion(text), "margin": 1.0,
                                   "agreement": 1.0,
                                   "chosen_model": "rewrite", "rejected_model": name, "kind": "rewrite"} | unit)
                stats.rewrite_rows += 1
    return out, stats


def _ranking_rows(session: Session, rows: list, prompt_format: str, stats: PreferenceStats,
                  reliability: Reliability | None = None) -> list[dict]:
    """The strictly ordered pairs of rankings as preference rows (see the module docstring)."""
    if not rows:
        return []
    ranking_ids = sorted({r[0].ranking_id for r in rows})
    ranks = dict(session.execute(select(Ranking.id, Ranking.ranks).where(Ranking.id.in_(ranking_ids))).all())
    position = {(rs, g): p for rs, g, p in session.execute(
        select(RankCandidate.rank_set_id, RankCandidate.generation_id, RankCandidate.position)
        .join(Pair, Pair.rank_set_id == RankCandidate.rank_set_id)
        .where(Pair.id.in_({r[1].id for r in rows}))).all()}
    stats.rankings = len(ranking_ids)
    out = []
    for vote, pair, prompt, region, text_a, text_b, name_a, name_b in rows:
        stats.choices[vote.choice.value] += 1
        if vote.choice not in (Choice.a, Choice.b):
            continue  # a tie orders nothing
        order = ranks[vote.ranking_id]
        gap = abs(order[position[(pair.rank_set_id, pair.generation_a_id)]]
                  - order[position[(pair.rank_set_id, pair.generation_b_id)]])
        sides = [(text_a, name_a), (text_b, name_b)]
        (win, win_name), (lose, lose_name) = sides if vote.choice == Choice.a else sides[::-1]
        say = reliability.weight(region.code, vote.user_id) if reliability else 1.0
        extra = {"weighted_agreement": round(say, 4), "vote_weight": round(say, 4)} if reliability else {}
        out.append({"prompt": _prompt_value(prompt_format, region, prompt), "region": region.code,
                    "round": pair.round_id, "split": prompt.split.value, "pair_id": pair.id, "num_votes": 1,
                    "chosen": dataset_completion(win, prompt_format),
                    "rejected": dataset_completion(lose, prompt_format),
                    "margin": round(say * gap / (len(order) - 1), 4), "agreement": 1.0, "chosen_model": win_name,
                    "rejected_model": lose_name, "kind": "ranking", "weight": vote.weight,
                    "ranking_id": vote.ranking_id} | extra)
        stats.ranking_rows += 1
    return out


def rankings_at_their_weight(rows: list[dict]) -> list[dict]:
    """The rows a trainer without per-row weights should see: each ranking's rows thinned to k-1 of them, drawn
    (reproducibly, seeded by the ranking id) from its strictly ordered pairs; every other row kept as it is.

    TRL's reward and DPO trainers weigh every row alike, so a ranking's k(k-1)/2 rows at full weight would count
    it as that many independent comparisons. Its ``weight`` (2/k) says it is worth k-1 (``rewards.ranking``): k-1
    rows at weight 1 carry the same evidence, in expectation over which pairs are kept. Ties already gave no row,
    so a ranking with ties may have fewer than k-1 rows; then all of them are kept.
    """
    by_ranking: dict[int, list[dict]] = defaultdict(list)
    out = []
    for row in rows:
        (by_ranking[row["ranking_id"]] if row.get("ranking_id") is not None else out).append(row)
    for ranking_id, group in sorted(by_ranking.items()):
        keep = round(2 / group[0]["weight"]) - 1  # k - 1
        out += random.Random(ranking_id).sample(group, min(keep, len(group)))
    return out


def regions_of(rows: Iterable[dict]) -> Counter:
    """Rows per region, for reports."""
    return Counter(r["region"] for r in rows)


def tiny_model_texts(session: Session) -> list[str]:
    """The tiny test model's training texts: each train-split gold example as its plain prompt plus its copy."""
    rows = sft_rows(session, prompt_format="text")
    if not rows:
        raise GeoAlignError("no train-split gold examples in the database: run `geoalign demo --no-app` first")
    return [r["prompt"] + r["completion"] for r in rows]
