"""What the pages show, as plain rows, frames, text and Altair charts: no Streamlit here, so each is tested alone.

The Rounds page's rows (``rounds_view``, ``versions_view``), its metrics table, stage line and training curves; the
Dashboard's charts of the frames ``rewards.dashboard.load_dashboard`` computes. Text and rows that the CLI shows as
well live in ``align.reports``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import altair as alt
import pandas as pd
from sqlalchemy.orm import Session

from align.config import STAGE_ORDER
from align.registry import list_versions
from align.reports import jobs_for, region_names, reward_model_text, round_summary, win_rate_rows, win_rate_text
from align.rounds import POST_STAGES, list_rounds, scope_name

# Material icons (emoji render as empty boxes in headless Chromium)
STAGE_DONE = ":material/check_circle:"
STAGE_RUNNING = ":material/sync:"
STAGE_WAITING = ":material/circle:"

# ------------------------------------------------------------------------------------------- rounds


def rounds_view(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    """The newest rounds as ``round_summary`` dicts plus their scope code and their newest job's log and flags."""
    rounds = list_rounds(session, limit)
    jobs = jobs_for(session, [r.id for r in rounds])
    codes = region_names(session)
    rows = []
    for rnd in rounds:
        job = jobs.get(rnd.id)
        row = round_summary(rnd, job)
        row["scope"] = scope_name(codes.get(rnd.region_id) if rnd.region_id else None)
        row["region"] = codes.get(rnd.region_id) if rnd.region_id else None
        row["stages"] = row["stages"] or list(STAGE_ORDER)  # a config without round.stages runs them all
        if job is not None:
            row["job"] |= {"log": job.log or "", "error": job.error, "cancel_requested": job.cancel_requested}
        rows.append(row)
    return rows


def versions_view(session: Session) -> list[dict[str, Any]]:
    """Model versions, newest first, as plain rows with their parent's name and win-rates as text."""
    codes = region_names(session)
    rows = []
    for v in reversed(list_versions(session)):
        evaluation = (v.metrics or {}).get("eval") or {}
        rows.append({"name": v.name, "parent": v.parent.name if v.parent else "", "stage": v.stage,
                     "region": scope_name(codes.get(v.region_id) if v.region_id else None),
                     "status": v.status.value, "created": v.created_at,
                     "judge vs parent": win_rate_text(evaluation.get("judge_vs_parent")),
                     "judge vs base": win_rate_text(evaluation.get("judge_vs_base")),
                     "reward model vs parent": win_rate_text(evaluation.get("vs_parent")),
                     "reward model vs base": win_rate_text(evaluation.get("vs_base")),
                     "lineage": v.lineage or {}, "metrics": v.metrics or {}})
    return rows


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def metrics_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """Round.metrics as two text columns: one row per stage (its numbers) and one per win-rate comparison."""
    rows = []
    known = [s for s in STAGE_ORDER if s in metrics]
    for key in [*known, *sorted(k for k in metrics if k not in known)]:
        value = metrics[key]
        if key == "eval" and isinstance(value, dict):
            for label, rate in win_rate_rows(value):
                counts = f" (n={rate.get('n')}: {rate.get('wins')} won, {rate.get('ties')} tied, " \
                         f"{rate.get('losses')} lost)" if "n" in rate else ""
                rows.append({"what": f"win-rate {label}", "value": win_rate_text(rate) + counts})
            for name, number in value.items():
                if not isinstance(number, dict) and number is not None:
                    rows.append({"what": f"eval {name}", "value": _number(number)})
        elif isinstance(value, dict):
            rows.append({"what": key, "value": " · ".join(f"{k} {_number(v)}" for k, v in value.items())})
        else:
            rows.append({"what": key, "value": _number(value)})
    return pd.DataFrame(rows, columns=["what", "value"])


def published_text(metrics: dict[str, Any]) -> str:
    """What a finished round published, for its card: the new pairs, or a reward-only round's accuracies."""
    if metrics.get("reward_only"):
        accuracy = reward_model_text(metrics.get("reward") or {})
        return f"Published **{metrics['version']}**: a new reward model, the policy unchanged" \
            + (f" · accuracy {accuracy}" if accuracy else "")
    pairs = metrics.get("new_pairs") or {}
    made = sum(pairs.values()) if isinstance(pairs, dict) else pairs
    return f"Published **{metrics['version']}** · {made} new pairs for reviewers"


def history_frame(history: list[dict[str, Any]]) -> pd.DataFrame:
    """progress["history"] in long form, shape (points × metrics, 4): columns stage, step, metric, value."""
    rows = [{"stage": point.get("stage", "?"), "step": point["step"], "metric": key, "value": float(value)}
            for point in history if isinstance(point, dict) and "step" in point
            for key, value in point.items()
            if key not in ("stage", "step") and isinstance(value, int | float) and not isinstance(value, bool)]
    return pd.DataFrame(rows, columns=["stage", "step", "metric", "value"])


def loss_chart(frame: pd.DataFrame) -> alt.FacetChart:
    """Loss, reward and accuracy against step, one panel per stage in pipeline order (a history_frame)."""
    present = list(dict.fromkeys(frame["stage"]))
    order = [s for s in STAGE_ORDER if s in present] + [s for s in present if s not in STAGE_ORDER]
    lines = alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("step:Q", title="step", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=None),
        color=alt.Color("metric:N", title="metric"),
        tooltip=["stage:N", "step:Q", "metric:N", alt.Tooltip("value:Q", format=".4g")],
    ).properties(width=320, height=200)
    # each stage has its own step counter and losses on its own scale
    return lines.facet(facet=alt.Facet("stage:N", sort=order, title=None), columns=2).resolve_scale(
        x="independent", y="independent")


def stage_line(stages: list[str], completed: list[str], current: str | None) -> str:
    """The round's stages with ticks, as Markdown: done, running or waiting, e.g. (icons as words)
    ``done sft → running dpo → waiting rl → waiting eval → waiting publish``.

    A reward-only round has no evaluation (no policy changed): ``done reward → waiting publish``; nor has a round that
    published without one because its policy stages were all skipped.
    """
    reward_only = stages == ["reward"] or ("publish" in completed and "eval" not in completed)
    post = tuple(s for s in POST_STAGES if s != "eval") if reward_only else POST_STAGES
    marks = []
    for stage in [*stages, *post]:
        icon = STAGE_DONE if stage in completed else STAGE_RUNNING if stage == current else STAGE_WAITING
        marks.append(f"{icon} {stage}")
    return " → ".join(marks)


def age_text(when: datetime | None, now: datetime | None = None) -> tuple[str, float | None]:
    """How long ago ``when`` was, as text ("12 s ago") and seconds; SQLite's naive datetimes are UTC."""
    if when is None:
        return "never", None
    when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when
    seconds = max(0.0, ((now or datetime.now(timezone.utc)) - when).total_seconds())
    if seconds < 90:
        return f"{seconds:.0f} s ago", seconds
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago", seconds
    return f"{seconds / 3600:.1f} h ago", seconds


# ------------------------------------------------------------------------------------------- dashboard

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


def predicted_frame(predicted: pd.DataFrame) -> pd.DataFrame:
    """Prediction-powered rows in long form for the chart: one row per comparison and estimate (human votes only,
    prediction-powered), with rate, low, high and the votes it is worth."""
    if predicted.empty:
        return pd.DataFrame(columns=["comparison", "estimate", "rate", "low", "high", "votes"])
    label = predicted["version"] + " vs " + predicted["opponent"]
    human = pd.DataFrame({"comparison": label, "estimate": "human votes only", "rate": predicted["human_rate"],
                          "low": predicted["human_low"], "high": predicted["human_high"], "votes": predicted["n"]})
    ppi = pd.DataFrame({"comparison": label, "estimate": "prediction-powered", "rate": predicted["rate"],
                        "low": predicted["low"], "high": predicted["high"], "votes": predicted["effective_votes"]})
    return pd.concat([human, ppi], ignore_index=True)


def predicted_chart(predicted: pd.DataFrame) -> alt.Chart:
    """Per comparison, the human-only 95% interval beside the prediction-powered one: how much narrower the reward
    model's predictions make it, at the same votes."""
    data = predicted_frame(predicted)
    y = alt.Y("comparison:N", title=None, axis=alt.Axis(labelLimit=240))
    color = alt.Color("estimate:N", title=None, scale=alt.Scale(domain=["human votes only", "prediction-powered"]))
    band = alt.Chart(data).mark_rule(strokeWidth=4, opacity=0.6).encode(
        x=alt.X("low:Q", title="win-rate, 95% interval", scale=alt.Scale(domain=[0, 1])), x2="high:Q", y=y,
        color=color, yOffset="estimate:N")
    points = alt.Chart(data).mark_point(filled=True, size=70).encode(
        x="rate:Q", y=y, color=color, yOffset="estimate:N",
        tooltip=["comparison", "estimate", alt.Tooltip("rate:Q", format=".2f"), alt.Tooltip("low:Q", format=".2f"),
                 alt.Tooltip("high:Q", format=".2f"), alt.Tooltip("votes:Q", format=".0f", title="worth votes")])
    even = alt.Chart(pd.DataFrame({"x": [0.5]})).mark_rule(strokeDash=[4, 4], color="gray").encode(x="x:Q")
    return (band + points + even).properties(height=max(120, 60 * data["comparison"].nunique()))


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
    """Votes per day, stacked by where they came from (the vote's source)."""
    data = daily.groupby(["day", "source"], as_index=False)["votes"].sum()
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("day:T", title="day"), y=alt.Y("votes:Q", title="votes"), color=alt.Color("source:N", title="source"),
        tooltip=[alt.Tooltip("day:T"), "source", "votes"]).properties(height=220)


def votes_per_reviewer_chart(by_reviewer: pd.DataFrame, top: int = 25) -> alt.Chart:
    """The ``top`` reviewers by votes, most first."""
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
