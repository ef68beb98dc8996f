"""What the leads' dashboard shows, computed without Streamlit: win-rates, ratings, throughput, agreement,
reviewer quality, reason tags, reward-model drift and the lift of A/B tests in live campaigns, plus the Altair
charts drawn from them.

``load_dashboard`` runs a few grouped queries (``db.queries``) and the statistics in ``rewards.ratings`` and
``rewards.quality``; ``Dashboard.region(code)`` narrows every table to one region. The page only lays them out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from typing import Protocol

import altair as alt
import pandas as pd
from sqlalchemy.orm import Session

from db import queries, rollups
from db.errors import AuthError, PermissionDenied
from db.queries import ALL_REGIONS
from rewards.lift import COLUMNS as LIFT_COLUMNS
from rewards.lift import lift_table
from rewards.quality import agreement, position_bias_from, reviewer_quality_from
from rewards.ratings import bradley_terry, version_win_rates

BOOTSTRAP_RESAMPLES = 200
WITH_ALL_REGIONS_ROWS = ("win_rates", "weekly", "leaderboard", "agreement")  # statistics also computed across regions


@dataclass
class Dashboard:
    win_rates: pd.DataFrame  # per region (and "All regions"), version and opponent (base / parent)
    weekly: pd.DataFrame  # the same per week of voting
    leaderboard: pd.DataFrame  # Bradley–Terry ratings with bootstrap CIs
    votes_daily: pd.DataFrame  # region, day, source, votes
    votes_by_reviewer: pd.DataFrame  # region, user, votes
    agreement: pd.DataFrame  # Krippendorff's alpha per region
    reviewers: pd.DataFrame  # reviewer quality, flags and reasons
    tags: pd.DataFrame  # reason tags per region and preferred version
    reward_model: pd.DataFrame  # reward-model accuracy per round and its drift on the newest votes
    abtests: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LIFT_COLUMNS))  # campaign lift
    position: dict = field(default_factory=dict)  # overall left/right bias
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part, for the bench

    @property
    def total_votes(self) -> int:
        return int(self.votes_daily["votes"].sum()) if not self.votes_daily.empty else 0

    @property
    def regions(self) -> list[str]:
        return sorted(set(self.votes_daily["region"])) if not self.votes_daily.empty else []

    def region(self, code: str) -> Dashboard:
        """Every table narrowed to region ``code``; ``ALL_REGIONS`` keeps the cross-region rows of the statistics
        and everything of throughput, reviewers, reasons and the reward model."""
        narrowed = {}
        for name, frame in self.tables().items():
            if name in WITH_ALL_REGIONS_ROWS:
                narrowed[name] = frame[frame["region"] == code].reset_index(drop=True)
            elif code == ALL_REGIONS:
                continue
            elif name == "reviewers":
                narrowed[name] = frame[frame["regions"].map(lambda r: code in str(r).split(", "))]
            elif name == "reward_model":  # a cross-region round's reward model judges this region's votes too
                narrowed[name] = frame[frame["region"].isin([code, ALL_REGIONS])].reset_index(drop=True)
            elif "region" in frame.columns:
                narrowed[name] = frame[frame["region"] == code].reset_index(drop=True)
        return replace(self, **narrowed)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table shown, by a file-friendly name, for the CSV downloads."""
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), pd.DataFrame)}


def _names(frame: pd.DataFrame, versions: pd.DataFrame, column: str = "version_id") -> pd.Series:
    return frame[column].map(dict(zip(versions["id"], versions["name"], strict=True)))


DASHBOARD_ROLES = ("lead", "engineer", "admin")  # reviewers never see win-rates or each other's quality


class Viewer(Protocol):
    """Who is asking (``collect.auth.CurrentUser`` satisfies it; ``rewards`` does not import ``collect``)."""

    username: str

    @property
    def expired(self) -> bool: ...

    def has(self, role: str) -> bool: ...


def _check_viewer(viewer: Viewer | None) -> None:
    """The checks of ``collect.auth.require`` for the dashboard's roles."""
    if viewer is None:
        raise AuthError("please log in")
    if viewer.expired:
        raise AuthError("your session has expired: please log in again")
    if not any(viewer.has(role) for role in DASHBOARD_ROLES):
        raise PermissionDenied(f"{viewer.username} lacks the role {' or '.join(DASHBOARD_ROLES)}")


def load_dashboard(session: Session, viewer: Viewer | None, n_boot: int = BOOTSTRAP_RESAMPLES,
                   seed: int = 0) -> Dashboard:
    """Everything the dashboard shows, for all regions at once (``Dashboard.region`` narrows it); leads,
    engineers and admins only."""
    _check_viewer(viewer)
    timings: dict[str, float] = {}

    def timed(name, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[name] = time.perf_counter() - start
        return out

    timed("refresh_totals", rollups.refresh, session)  # fold in the votes that became final since last time
    counts = timed("query_counts", queries.comparison_counts, session)
    versions = timed("query_versions", queries.versions_frame, session)
    days = timed("query_reviewer_days", queries.reviewer_days, session)
    daily = queries.votes_per_day(session, days)
    activity = queries.reviewer_activity(session, days)
    medians = timed("query_seconds", queries.seconds_medians, session)
    shared = timed("query_shared", queries.shared_votes, session)
    tag_counts = timed("query_tags", queries.reason_tag_counts, session)
    rm = timed("query_rounds", queries.round_metrics, session)
    abtests = timed("abtests", lambda: lift_table(queries.ab_results(session)))

    win_rates = timed("win_rates", version_win_rates, counts, versions)
    weekly = timed("weekly", version_win_rates, counts, versions, by="week")
    leaderboard = timed("bradley_terry", bradley_terry, counts, versions, n_boot=n_boot, seed=seed)
    agree = timed("agreement", agreement, shared)
    reviewers = timed("reviewers", reviewer_quality_from, activity, medians, shared)
    position = position_bias_from(activity) if not activity.empty else {}

    by_reviewer = (daily.groupby(["region", "user"], as_index=False)["votes"].sum()
                   .sort_values(["region", "votes"], ascending=[True, False]).reset_index(drop=True))
    tags = tag_counts.assign(version=_names(tag_counts, versions))
    tags = tags.assign(share=tags["votes"] / tags.groupby(["region", "version_id"])["votes"].transform("sum"))
    if not rm.empty:
        rm = rm.assign(drift=rm["newest_accuracy"] - rm["val_accuracy"])
    timings["total"] = sum(timings.values())
    return Dashboard(win_rates=win_rates, weekly=weekly, leaderboard=leaderboard, votes_daily=daily,
                     votes_by_reviewer=by_reviewer, agreement=agree, reviewers=reviewers, tags=tags,
                     reward_model=rm, abtests=abtests, position=position, timings=timings)


# ------------------------------------------------------------------------------------------- charts

OPPONENT_COLORS = alt.Scale(domain=["base", "parent"], range=["#4c78a8", "#f58518"])


def win_rate_by_round_chart(win_rates: pd.DataFrame) -> alt.Chart:
    """Each version's win-rate vs base and vs parent, in round order, with its 95% band; 0.5 = no better."""
    data = win_rates.sort_values(["round_number", "version_id"]).assign(
        label=lambda d: d["version"] + " (round " + d["round_number"].astype("string").fillna("–") + ")")
    order = list(dict.fromkeys(data["label"]))
    x = alt.X("label:N", sort=order, title="model version", axis=alt.Axis(labelAngle=0, labelLimit=240))
    color = alt.Color("opponent:N", scale=OPPONENT_COLORS, title="vs")
    band = alt.Chart(data).mark_rule(strokeWidth=3, opacity=0.6).encode(
        x=x, y=alt.Y("low:Q", title="win-rate (ties count half)", scale=alt.Scale(domain=[0, 1])), y2="high:Q",
        color=color, xOffset="opponent:N")
    points = alt.Chart(data).mark_point(filled=True, size=70).encode(
        x=x, y="rate:Q", color=color, xOffset="opponent:N",
        tooltip=["version", "opponent", "opponent_version", alt.Tooltip("rate:Q", format=".2f"),
                 alt.Tooltip("low:Q", format=".2f"), alt.Tooltip("high:Q", format=".2f"), "n", "both_bad"])
    even = alt.Chart(pd.DataFrame({"y": [0.5]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="y:Q")
    return (band + points + even).properties(height=320)


def win_rate_over_time_chart(weekly: pd.DataFrame, opponent: str = "base") -> alt.Chart:
    """Per week of voting, each version's win-rate vs ``opponent`` with a CI band."""
    data = weekly[weekly["opponent"] == opponent]
    base = alt.Chart(data).encode(x=alt.X("week:T", title="week of voting"),
                                  color=alt.Color("version:N", title="version", scale=alt.Scale(scheme="category10")))
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("low:Q", title=f"win-rate vs {opponent}",
                                                      scale=alt.Scale(domain=[0, 1])), y2="high:Q")
    line = base.mark_line(point=True).encode(
        y="rate:Q", tooltip=["version", alt.Tooltip("week:T"), alt.Tooltip("rate:Q", format=".2f"),
                             alt.Tooltip("low:Q", format=".2f"), alt.Tooltip("high:Q", format=".2f"), "n"])
    even = alt.Chart(pd.DataFrame({"y": [0.5]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="y:Q")
    return (band + line + even).properties(height=280)


def leaderboard_chart(leaderboard: pd.DataFrame) -> alt.Chart:
    """Bradley–Terry ratings (base = 1000) with bootstrap 95% intervals, best first."""
    order = list(leaderboard.sort_values("rank")["version"])
    y = alt.Y("version:N", sort=order, title=None)
    bars = alt.Chart(leaderboard).mark_rule(strokeWidth=3, opacity=0.6).encode(
        x=alt.X("low:Q", title="rating (Bradley–Terry, base = 1000)", scale=alt.Scale(zero=False)), x2="high:Q", y=y)
    points = alt.Chart(leaderboard).mark_point(filled=True, size=80).encode(
        x="rating:Q", y=y, tooltip=["rank", "version", alt.Tooltip("rating:Q", format=".0f"),
                                    alt.Tooltip("low:Q", format=".0f"), alt.Tooltip("high:Q", format=".0f"), "games"])
    return (bars + points).properties(height=max(120, 32 * len(order)))


def votes_per_day_chart(daily: pd.DataFrame) -> alt.Chart:
    data = daily.groupby(["day", "source"], as_index=False)["votes"].sum()
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("day:T", title="day"), y=alt.Y("votes:Q", title="votes"), color=alt.Color("source:N", title="source"),
        tooltip=[alt.Tooltip("day:T"), "source", "votes"]).properties(height=220)


def votes_per_reviewer_chart(by_reviewer: pd.DataFrame, top: int = 25) -> alt.Chart:
    data = by_reviewer.groupby("user", as_index=False)["votes"].sum().nlargest(top, "votes")
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("votes:Q"), y=alt.Y("user:N", sort="-x", title=None), tooltip=["user", "votes"]
    ).properties(height=max(120, 22 * len(data)))


def tags_chart(tags: pd.DataFrame) -> alt.Chart:
    """Why reviewers preferred each version: share of each reason tag among the votes it won."""
    data = tags.groupby(["version", "tag"], as_index=False)["votes"].sum()
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("votes:Q", stack="normalize", title="share of reason tags"), y=alt.Y("version:N", title=None),
        color=alt.Color("tag:N", title="reason"), tooltip=["version", "tag", "votes"]
    ).properties(height=max(120, 30 * data["version"].nunique()))


def reward_model_chart(rm: pd.DataFrame) -> alt.Chart:
    """Reward-model accuracy per round: on its validation split, on the newest votes, and the previous model's."""
    data = rm.melt(id_vars=["round_id", "round", "region"], value_vars=[
        "val_accuracy", "newest_accuracy", "previous_model_accuracy"], var_name="measure", value_name="accuracy"
    ).dropna(subset=["accuracy"])
    data["measure"] = data["measure"].map({"val_accuracy": "validation", "newest_accuracy": "newest votes",
                                           "previous_model_accuracy": "previous model, newest votes"})
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("round_id:O", title="round"), y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("measure:N", title=None), tooltip=["round_id", "region", "measure",
                                                           alt.Tooltip("accuracy:Q", format=".2f")]
    ).properties(height=240)


def lift_chart(abtests: pd.DataFrame) -> alt.Chart:
    """Each A/B test's lift of the tuned copy over the generic one, per rate, with its 95% interval; right of
    the zero line the tuned copy does better in the campaign."""
    data = abtests.assign(label=abtests["test"] + " (" + abtests["tuned_version"] + ")")
    y = alt.Y("label:N", title=None, axis=alt.Axis(labelLimit=260))
    color = alt.Color("metric:N", title="rate", scale=alt.Scale(
        domain=["click-through", "conversion", "conversion per click"], range=["#4c78a8", "#f58518", "#54a24b"]))
    bars = alt.Chart(data).mark_rule(strokeWidth=3, opacity=0.6).encode(
        x=alt.X("low:Q", title="lift of tuned over generic", axis=alt.Axis(format="%")), x2="high:Q", y=y,
        color=color, yOffset="metric:N")
    points = alt.Chart(data).mark_point(filled=True, size=70).encode(
        x="lift:Q", y=y, color=color, yOffset="metric:N",
        tooltip=["test", "region", "tuned_version", "metric", alt.Tooltip("generic_rate:Q", format=".2%"),
                 alt.Tooltip("tuned_rate:Q", format=".2%"), alt.Tooltip("lift:Q", format="+.1%"),
                 alt.Tooltip("low:Q", format="+.1%"), alt.Tooltip("high:Q", format="+.1%"),
                 alt.Tooltip("p_value:Q", format=".3g"), "generic_n", "tuned_n"])
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4], color="gray").encode(x="x:Q")
    return (bars + points + zero).properties(height=max(120, 60 * data["label"].nunique()))
