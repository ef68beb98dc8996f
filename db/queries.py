"""Read-side aggregates for ratings, reviewer quality and the leads' dashboard.

Each function returns a pandas DataFrame whose columns are the contract that ``rewards/`` builds on. The vote
aggregates read the running totals of ``db.rollups`` plus the few votes cast since they were last summed, so they
stay small and fast at millions of votes (call ``db.rollups.refresh`` first to fold new votes in).
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import case, func, select, union_all
from sqlalchemy.orm import Session, aliased

from db import rollups
from db.models import (
    AbTest,
    AbVariant,
    Choice,
    JobStatus,
    ModelVersion,
    Pair,
    Ranking,
    Region,
    RollupComparison,
    RollupReviewer,
    RollupSeconds,
    RollupTag,
    Round,
    Tag,
    User,
    Vote,
)

CHOICES = ("a", "b", "tie", "both_bad")
ALL_REGIONS = "All regions"


def _week_of(day: pd.Series) -> pd.Series:
    day = pd.to_datetime(day)
    return day - pd.to_timedelta(day.dt.day_of_week, unit="D")


def versions_frame(session: Session) -> pd.DataFrame:
    """Every model version with its parent, the base at the root of its lineage, round number and region."""
    rows = session.execute(
        select(ModelVersion.id, ModelVersion.name, ModelVersion.parent_id, Round.number, ModelVersion.created_at,
               Region.code, ModelVersion.adapter_path)
        .outerjoin(Round, ModelVersion.round_id == Round.id).outerjoin(Region, ModelVersion.region_id == Region.id)
        .order_by(ModelVersion.id)
    ).all()
    frame = pd.DataFrame(rows, columns=["id", "name", "parent_id", "round_number", "created_at", "region", "adapter"])
    parent = dict(zip(frame["id"], frame["parent_id"], strict=True))

    def root(vid: int) -> int:
        while pd.notna(parent.get(vid)):
            vid = int(parent[vid])
        return vid

    frame["base_id"] = [root(v) for v in frame["id"]]
    frame["parent_id"] = frame["parent_id"].astype("Int64")
    frame["round_number"] = frame["round_number"].astype("Int64")
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).dt.tz_localize(None)
    return frame[["id", "name", "parent_id", "base_id", "round_number", "created_at", "region"]]


def vote_records(session: Session) -> pd.DataFrame:
    """One row per pairwise vote with what reviewer quality needs: who, which side was left, how long, gold answer
    (the votes a ranking implies have no side shown left: reviewer quality leaves them out, as ``db.rollups``)."""
    rows = session.execute(
        select(Vote.id, Vote.pair_id, Region.code, User.username, Vote.choice, Vote.shown_left, Vote.seconds_taken,
               Pair.is_gold, Pair.gold_choice, Vote.created_at, Vote.source, Pair.model_a_id, Pair.model_b_id)
        .join(Pair, Vote.pair_id == Pair.id).join(Region, Vote.region_id == Region.id)
        .join(User, Vote.user_id == User.id).where(Vote.ranking_id.is_(None)).order_by(Vote.id)
    ).all()
    frame = pd.DataFrame(rows, columns=["vote_id", "pair_id", "region", "user", "choice", "shown_left",
                                        "seconds_taken", "is_gold", "gold_choice", "created_at", "source",
                                        "model_a", "model_b"])
    for col in ("choice", "shown_left", "gold_choice"):
        frame[col] = [getattr(v, "value", v) for v in frame[col]]
    frame["seconds_taken"] = frame["seconds_taken"].astype(float)
    frame["is_gold"] = frame["is_gold"].astype(bool)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).dt.tz_localize(None)
    return frame


SHARED_PAIRS = 2_000  # agreement reads the votes of the newest multiply-reviewed pairs, not every vote ever cast


def shared_votes(session: Session, max_pairs: int = SHARED_PAIRS) -> pd.DataFrame:
    """Votes on the newest ``max_pairs`` pairs handed to two reviewers or more: what agreement is measured on.
    Pairs that got one vote only so far are dropped by the caller."""
    newest = list(session.scalars(select(Pair.id).where(Pair.assigned >= 2).order_by(Pair.id.desc())
                                  .limit(max_pairs)))  # ix_pairs_shared: pairs given to two reviewers or more
    # the ids as a list, not a subquery: the planner then probes the votes' (pair, reviewer) index instead of
    # scanning every vote; ids, not names, in the result: names are mapped on the few distinct ids
    rows = session.execute(select(Vote.pair_id, Vote.region_id, Vote.user_id, Vote.choice)
                           .where(Vote.pair_id.in_(newest), Vote.source != "import")
                           .order_by(Vote.pair_id, Vote.id)).all() if newest else []
    frame = pd.DataFrame([tuple(r) for r in rows], columns=["pair_id", "region", "user", "choice"])
    frame["region"] = frame["region"].map(_names(session, Region, Region.code))
    frame["user"] = frame["user"].map(_names(session, User, User.username))
    frame["choice"] = [getattr(c, "value", c) for c in frame["choice"]]
    return frame


def _names(session: Session, model, column) -> dict[int, str]:
    return dict(session.execute(select(model.id, column)).all())


def _totals(session: Session, table, tail, columns: list[str]) -> pd.DataFrame:
    """The rollup ``table``'s rows plus the same aggregate over the votes after the watermark."""
    rolled = session.execute(select(*(table.__table__.c[c] for c in columns))).all()
    fresh = session.execute(tail(session, rollups.watermark(session), None)).all()
    frame = pd.DataFrame([tuple(r) for r in (*rolled, *fresh)], columns=columns)  # plain tuples: far faster
    if "choice" in frame.columns:
        frame["choice"] = [getattr(c, "value", c) for c in frame["choice"]]
    return frame


def comparison_counts(session: Session) -> pd.DataFrame:
    """Human votes between two different versions on non-gold pairs, per (region, week, model_a < model_b), as
    summed weights (floats): a pairwise vote counts 1, each outcome a ranking of k implies 2/k."""
    columns = ["region", "week", "model_a", "model_b", "a_wins", "b_wins", "ties", "both_bad"]
    raw = _totals(session, RollupComparison, rollups.comparisons,
                  ["day", "region_id", "model_a_id", "model_b_id", "choice", "votes"])
    if raw.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c.startswith("model") else "float64")
                             for c in columns}).astype(
            {"region": "object", "week": "datetime64[ns]"})
    raw["region"] = raw["region_id"].map(_names(session, Region, Region.code))
    swap = raw["model_a_id"] > raw["model_b_id"]  # canonical orientation: the smaller id is model_a
    raw["model_a"] = raw["model_a_id"].where(~swap, raw["model_b_id"])
    raw["model_b"] = raw["model_b_id"].where(~swap, raw["model_a_id"])
    raw.loc[swap, "choice"] = raw.loc[swap, "choice"].map({"a": "b", "b": "a", "tie": "tie", "both_bad": "both_bad"})
    raw["week"] = _week_of(raw["day"])
    out = raw.pivot_table(index=["region", "week", "model_a", "model_b"], columns="choice", values="votes",
                          aggfunc="sum", fill_value=0)
    out = out.reindex(columns=list(CHOICES), fill_value=0).rename(
        columns={"a": "a_wins", "b": "b_wins", "tie": "ties"}).reset_index()
    out.columns.name = None
    return out[columns].astype({"model_a": "int64", "model_b": "int64"} | {c: "float64" for c in columns[4:]})


REVIEWER_COLUMNS = ["day", "region_id", "user_id", "source", "votes", "decisive_votes", "left_picks", "gold_votes",
                    "gold_correct"]


def reviewer_days(session: Session) -> pd.DataFrame:
    """Per (day, region, reviewer, source): votes, decisive ones, left-side picks, gold votes and correct ones
    (the input of ``votes_per_day`` and ``reviewer_activity``, read once for both)."""
    frame = _totals(session, RollupReviewer, rollups.reviewers, REVIEWER_COLUMNS)
    frame["region"] = frame["region_id"].map(_names(session, Region, Region.code))
    frame["user"] = frame["user_id"].map(_names(session, User, User.username))
    frame["day"] = pd.to_datetime(frame["day"])
    return frame


def ranking_days(session: Session) -> pd.DataFrame:
    """Rankings per (day, region, reviewer, source), each one judgement (its implied votes are left out of the
    reviewer totals, which hold pairwise votes only)."""
    day = rollups.day_of(session, Ranking.created_at).label("day")
    rows = session.execute(select(day, Ranking.region_id, Ranking.user_id, Ranking.source,
                                  func.count().label("votes"))
                           .group_by(day, Ranking.region_id, Ranking.user_id, Ranking.source)).all()
    frame = pd.DataFrame(rows, columns=["day", "region_id", "user_id", "source", "votes"])
    frame["region"] = frame["region_id"].map(_names(session, Region, Region.code))
    frame["user"] = frame["user_id"].map(_names(session, User, User.username))
    frame["day"] = pd.to_datetime(frame["day"])
    return frame


def votes_per_day(session: Session, days: pd.DataFrame | None = None) -> pd.DataFrame:
    """Judgements per (region, UTC day, reviewer, source): pairwise votes plus rankings (one each), for throughput
    charts without loading single votes."""
    frame = reviewer_days(session) if days is None else days
    columns = ["region", "day", "user", "source", "votes"]
    ranked = ranking_days(session)
    if not ranked.empty:
        frame = pd.concat([frame[columns], ranked[columns]], ignore_index=True)
    return (frame.groupby(["region", "day", "user", "source"], as_index=False)["votes"].sum()
            .astype({"votes": "int64"})[columns])


def reviewer_activity(session: Session, days: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per reviewer and region: votes, decisive (a/b) votes, how many of those picked the side shown left, gold
    votes and how many matched the known answer; import votes left out."""
    columns = ["votes", "decisive_votes", "left_picks", "gold_votes", "gold_correct"]
    frame = reviewer_days(session) if days is None else days
    frame = frame[frame["source"] != "import"]
    out = frame.groupby(["user", "region"], as_index=False)[columns].sum()
    return out[["user", "region", *columns]].astype({c: "int64" for c in columns})


def seconds_medians(session: Session) -> pd.DataFrame:
    """Median seconds per vote and timed votes per reviewer, from the histogram of ``db.rollups.seconds`` (exact to
    a tenth of a second below 10 s, to the second above)."""
    tail = rollups.seconds(session, rollups.watermark(session), None).subquery()
    t = RollupSeconds
    both = union_all(select(t.user_id, t.tenths, t.votes), select(tail.c.user_id, tail.c.tenths, tail.c.votes)) \
        .subquery()
    hist = select(both.c.user_id, both.c.tenths, func.sum(both.c.votes).label("votes")) \
        .group_by(both.c.user_id, both.c.tenths).subquery()
    ranked = select(hist.c.user_id, hist.c.tenths,
                    func.sum(hist.c.votes).over(partition_by=hist.c.user_id, order_by=hist.c.tenths).label("cum"),
                    func.sum(hist.c.votes).over(partition_by=hist.c.user_id).label("total")).subquery()

    # the middle one or two timed votes, the ((n+1)//2)-th and the (n//2 + 1)-th fastest, found in one pass
    lower = func.min(case((ranked.c.cum >= (ranked.c.total + 1) // 2, ranked.c.tenths)))
    upper = func.min(case((ranked.c.cum >= ranked.c.total // 2 + 1, ranked.c.tenths)))
    rows = session.execute(select(ranked.c.user_id, lower, upper, func.max(ranked.c.total))
                           .group_by(ranked.c.user_id)).all()
    users = _names(session, User, User.username)
    out = [{"user": users[u], "median_seconds": (lo + hi) / 20, "timed_votes": int(n)} for u, lo, hi, n in rows]
    return pd.DataFrame(out, columns=["user", "median_seconds", "timed_votes"]).sort_values("user").reset_index(
        drop=True).astype({"median_seconds": float, "timed_votes": "int64"})


def reason_tag_counts(session: Session) -> pd.DataFrame:
    """How often each reason tag was given, per region and per version the vote preferred (on a tie or "both
    bad", both versions)."""
    frame = _totals(session, RollupTag, rollups.tags, ["region_id", "model_id", "tag_id", "votes"])
    frame = frame.groupby(["region_id", "model_id", "tag_id"], as_index=False)["votes"].sum()
    return pd.DataFrame({"region": frame["region_id"].map(_names(session, Region, Region.code)),
                         "version_id": frame["model_id"], "tag": frame["tag_id"].map(_names(session, Tag, Tag.name)),
                         "votes": frame["votes"].astype("int64")})


def round_metrics(session: Session) -> pd.DataFrame:
    """Finished rounds with their reward-model accuracy figures (validation, newest votes, previous model)."""
    rows = session.execute(
        select(Round.id, Round.number, Region.code, Round.finished_at, Round.metrics)
        .outerjoin(Region, Round.region_id == Region.id).where(Round.status == JobStatus.succeeded).order_by(Round.id)
    ).all()
    records = []
    for rid, number, code, finished, metrics in rows:
        reward = (metrics or {}).get("reward") or {}
        records.append({"round_id": rid, "round": number, "region": code or ALL_REGIONS, "finished_at": finished,
                        "version": (metrics or {}).get("version"),
                        "val_accuracy": reward.get("val_accuracy"),
                        "newest_accuracy": reward.get("newest_accuracy"),
                        "previous_model_accuracy": reward.get("newest_accuracy_previous_model")})
    return pd.DataFrame(records, columns=["round_id", "round", "region", "finished_at", "version", "val_accuracy",
                                          "newest_accuracy", "previous_model_accuracy"])


def ab_results(session: Session) -> pd.DataFrame:
    """Every A/B variant with imported results, with its test, region and the two versions' names (the input of
    ``rewards.lift.lift_table``)."""
    generic, tuned = aliased(ModelVersion), aliased(ModelVersion)
    rows = session.execute(
        select(AbTest.name, Region.code, generic.name, tuned.name, AbVariant.row_key, AbVariant.arm,
               AbVariant.impressions, AbVariant.clicks, AbVariant.conversions)
        .join(AbVariant, AbVariant.test_id == AbTest.id).join(Region, AbTest.region_id == Region.id)
        .join(generic, AbTest.generic_version_id == generic.id).join(tuned, AbTest.tuned_version_id == tuned.id)
        .where(AbVariant.impressions.is_not(None)).order_by(AbTest.id, AbVariant.id)).all()
    return pd.DataFrame(rows, columns=["test", "region", "generic_version", "tuned_version", "row_key", "arm",
                                       "impressions", "clicks", "conversions"])


PREDICTED_COLUMNS = ["region", "pair_id", "model_a", "model_b", "predicted_a", "a", "b", "tie", "both_bad"]


def predicted_pairs(session: Session, region_id: int | None = None,
                    versions: tuple[int, int] | None = None) -> pd.DataFrame:
    """Every pair with a reward-model prediction (evaluation pairs), voted or not, with its summed vote weights per
    choice (zeros for an unvoted pair): the input of ``rewards.ppi``. Optionally one region and one comparison
    (``versions``, in either orientation)."""
    choice_sum = {c: func.coalesce(func.sum(case((Vote.choice == Choice(c), Vote.weight), else_=0.0)), 0.0).label(c)
                  for c in CHOICES}
    stmt = (select(Region.code, Pair.id, Pair.model_a_id, Pair.model_b_id, Pair.predicted_a, *choice_sum.values())
            .join(Region, Pair.region_id == Region.id).outerjoin(Vote, Vote.pair_id == Pair.id)
            .where(Pair.predicted_a.is_not(None), ~Pair.is_gold, Pair.rank_set_id.is_(None))
            .group_by(Region.code, Pair.id, Pair.model_a_id, Pair.model_b_id, Pair.predicted_a))
    if region_id is not None:
        stmt = stmt.where(Pair.region_id == region_id)
    if versions is not None:
        x, y = versions
        stmt = stmt.where(((Pair.model_a_id == x) & (Pair.model_b_id == y))
                          | ((Pair.model_a_id == y) & (Pair.model_b_id == x)))
    rows = session.execute(stmt.order_by(Pair.id)).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=PREDICTED_COLUMNS)
    return frame.astype({"pair_id": "int64", "model_a": "int64", "model_b": "int64", "predicted_a": "float64"}
                        | {c: "float64" for c in CHOICES})
