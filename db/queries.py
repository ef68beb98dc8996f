"""Read-side aggregates for ratings, reviewer quality and the leads' dashboard.

Each function runs one grouped query and returns a pandas DataFrame whose columns are the contract that
``rewards/`` builds on. Grouping happens in the database, so the frames stay small at millions of votes.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Date, cast, func, select
from sqlalchemy.orm import Session, aliased

from db.models import Choice, JobStatus, ModelVersion, Pair, Region, Round, Tag, User, Vote, vote_tags

CHOICES = ("a", "b", "tie", "both_bad")
ALL_REGIONS = "All regions"


def _day(session: Session, column):
    """The UTC calendar day of a timestamp column, as the backend spells it."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


def _week_of(day: pd.Series) -> pd.Series:
    day = pd.to_datetime(day)
    return day - pd.to_timedelta(day.dt.day_of_week, unit="D")


def comparison_counts(session: Session) -> pd.DataFrame:
    """Human votes between two different versions on non-gold pairs, per (region, week, model_a < model_b)."""
    day = _day(session, Vote.created_at).label("day")
    rows = session.execute(
        select(Region.code, day, Pair.model_a_id, Pair.model_b_id, Vote.choice, func.count())
        .join(Pair, Vote.pair_id == Pair.id).join(Region, Vote.region_id == Region.id)
        .where(Pair.is_gold.is_(False), Pair.model_a_id != Pair.model_b_id)
        .group_by(Region.code, day, Pair.model_a_id, Pair.model_b_id, Vote.choice)
    ).all()
    columns = ["region", "week", "model_a", "model_b", "a_wins", "b_wins", "ties", "both_bad"]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in columns}).astype(
            {"region": "object", "week": "datetime64[ns]"})
    raw = pd.DataFrame(rows, columns=["region", "day", "ma", "mb", "choice", "n"])
    raw["choice"] = [c.value if hasattr(c, "value") else c for c in raw["choice"]]
    swap = raw["ma"] > raw["mb"]  # canonical orientation: the smaller id is model_a
    raw["model_a"] = raw["ma"].where(~swap, raw["mb"])
    raw["model_b"] = raw["mb"].where(~swap, raw["ma"])
    raw.loc[swap, "choice"] = raw.loc[swap, "choice"].map({"a": "b", "b": "a", "tie": "tie", "both_bad": "both_bad"})
    raw["week"] = _week_of(raw["day"])
    out = raw.pivot_table(index=["region", "week", "model_a", "model_b"], columns="choice", values="n",
                          aggfunc="sum", fill_value=0)
    out = out.reindex(columns=list(CHOICES), fill_value=0).rename(
        columns={"a": "a_wins", "b": "b_wins", "tie": "ties"}).reset_index()
    out.columns.name = None
    return out[columns].astype({c: "int64" for c in columns[2:]})


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
    """One row per vote with what reviewer quality needs: who, which side was left, how long, gold answer."""
    rows = session.execute(
        select(Vote.id, Vote.pair_id, Region.code, User.username, Vote.choice, Vote.shown_left, Vote.seconds_taken,
               Pair.is_gold, Pair.gold_choice, Vote.created_at, Vote.source, Pair.model_a_id, Pair.model_b_id)
        .join(Pair, Vote.pair_id == Pair.id).join(Region, Vote.region_id == Region.id)
        .join(User, Vote.user_id == User.id).order_by(Vote.id)
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


def votes_per_day(session: Session) -> pd.DataFrame:
    """Votes per (region, UTC day, reviewer, source): throughput charts without loading single votes."""
    day = _day(session, Vote.created_at).label("day")
    rows = session.execute(
        select(Region.code, day, User.username, Vote.source, func.count())
        .join(Region, Vote.region_id == Region.id).join(User, Vote.user_id == User.id)
        .group_by(Region.code, day, User.username, Vote.source)
    ).all()
    frame = pd.DataFrame(rows, columns=["region", "day", "user", "source", "votes"])
    frame["day"] = pd.to_datetime(frame["day"])
    return frame


def reason_tag_counts(session: Session) -> pd.DataFrame:
    """How often each reason tag was given, per region and per version the vote preferred.

    A tag on a decisive vote explains the winner; on a tie or "both bad" it is attributed to both versions.
    """
    winner_a = select(Vote.region_id, Vote.choice, Pair.model_a_id.label("model"), Tag.name) \
        .join(Pair, Vote.pair_id == Pair.id).join(vote_tags, vote_tags.c.vote_id == Vote.id) \
        .join(Tag, Tag.id == vote_tags.c.tag_id).where(Vote.choice != Choice.b, Pair.is_gold.is_(False))
    winner_b = select(Vote.region_id, Vote.choice, Pair.model_b_id.label("model"), Tag.name) \
        .join(Pair, Vote.pair_id == Pair.id).join(vote_tags, vote_tags.c.vote_id == Vote.id) \
        .join(Tag, Tag.id == vote_tags.c.tag_id).where(Vote.choice != Choice.a, Pair.is_gold.is_(False))
    both = winner_a.union_all(winner_b).subquery()
    region = aliased(Region)
    rows = session.execute(
        select(region.code, both.c.model, both.c.name, func.count())
        .join(region, region.id == both.c.region_id).group_by(region.code, both.c.model, both.c.name)
    ).all()
    return pd.DataFrame(rows, columns=["region", "version_id", "tag", "votes"])


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
