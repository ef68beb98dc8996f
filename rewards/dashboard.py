"""What the leads' dashboard shows, computed without Streamlit: win-rates (human-only and prediction-powered) with
the stopping rule's verdicts, ratings, throughput, agreement, reviewer quality, reason tags, reward-model drift and
the lift of A/B tests in live campaigns.

``load_dashboard`` runs a few grouped queries (``db.queries``) and the statistics in ``rewards.ratings`` and
``rewards.quality``; ``Dashboard.region(code)`` narrows every table to one region. The page (``ui/pages/dashboard.py``)
lays them out with the charts of ``ui/views.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from typing import Protocol

import pandas as pd
from sqlalchemy.orm import Session

from db import queries, rollups
from db.errors import AuthError, PermissionDenied
from db.queries import ALL_REGIONS
from rewards.decisions import DECISION_COLUMNS, PREDICTED_COLUMNS, decisions, prediction_powered_win_rates
from rewards.lift import COLUMNS as LIFT_COLUMNS
from rewards.lift import lift_table
from rewards.quality import agreement, position_bias_from, reviewer_quality_from
from rewards.ratings import bradley_terry, version_win_rates

BOOTSTRAP_RESAMPLES = 200
# statistics also computed across regions
WITH_ALL_REGIONS_ROWS = ("win_rates", "weekly", "leaderboard", "agreement", "predicted", "decisions")


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
    # prediction-powered win-rates (reward-model predictions corrected by the votes) and the stopping rule's verdicts
    predicted: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PREDICTED_COLUMNS))
    decisions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DECISION_COLUMNS))
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
    predicted_pairs = timed("query_predicted", queries.predicted_pairs, session)

    win_rates = timed("win_rates", version_win_rates, counts, versions)
    weekly = timed("weekly", version_win_rates, counts, versions, by="week")
    predicted = timed("prediction_powered", prediction_powered_win_rates, predicted_pairs, versions)
    verdicts = decisions(win_rates, predicted, versions)
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
                     reward_model=rm, abtests=abtests, predicted=predicted, decisions=verdicts, position=position,
                     timings=timings)

