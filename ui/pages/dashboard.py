"""The Dashboard page (leads): does each round's adapter beat the base and its parent, per region and over time,
and can the votes behind that be trusted? Every number comes from ``rewards.dashboard.load_dashboard``."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from collect.auth import CurrentUser
from db.queries import ALL_REGIONS
from db.session import get_engine, session_scope
from rewards.dashboard import Dashboard, load_dashboard
from ui.access import page_user
from ui.markdown_text import escape_markdown
from ui.views import (
    leaderboard_chart,
    lift_chart,
    predicted_chart,
    reward_model_chart,
    tags_chart,
    votes_per_day_chart,
    votes_per_reviewer_chart,
    win_rate_by_round_chart,
    win_rate_over_time_chart,
)

CACHE_S = 60  # aggregates over every vote: recomputed at most once a minute, or on "Refresh"
EMPTY_STATE = ("No votes yet. Reviewers' judgements appear here as soon as they are cast: win-rates of every model "
               "version against the base and its parent, ratings, throughput and agreement. "
               "On the demo, `geoalign votes simulate` casts a batch.")

AB_EMPTY = ("No A/B results yet. `geoalign abtest export` writes a generic and a tuned variant per brief for a "
            "campaign tool; `geoalign abtest import-results` brings back impressions, clicks and conversions.")

AB_SHOWN = ["test", "region", "tuned_version", "metric", "briefs", "generic_n", "generic_rate", "tuned_n",
            "tuned_rate", "lift", "low", "high", "p_value", "significant", "note"]
AB_PERCENT = ["generic_rate", "tuned_rate", "lift", "low", "high"]


@st.cache_data(ttl=CACHE_S, show_spinner="Computing win-rates and ratings…")
def _dashboard(database_url: str, _viewer: CurrentUser) -> Dashboard:
    # the cache is shared by everyone allowed to see it; the leading underscore keeps the viewer out of its key
    with session_scope(get_engine(database_url)) as session:
        return load_dashboard(session, _viewer)


def _download(frame: pd.DataFrame, name: str, region: str) -> None:
    slug = region.lower().replace(" ", "-")
    st.download_button(f"Download {name.replace('_', ' ')} (CSV)", frame.to_csv(index=False).encode("utf-8"),
                       file_name=f"geoalign-{name}-{slug}.csv", mime="text/csv", key=f"csv-{name}")


def _table(frame: pd.DataFrame, name: str, region: str, empty: str) -> None:
    if frame.empty:
        st.caption(empty)
        return
    st.dataframe(frame, hide_index=True, width="stretch")
    _download(frame, name, region)


def _charted(frame: pd.DataFrame, chart, name: str, region: str, empty: str) -> None:
    """A chart of ``frame`` with the table and its CSV download below, or the empty-state caption."""
    if frame.empty:
        st.caption(empty)
        return
    st.altair_chart(chart(frame), width="stretch")
    _table(frame, name, region, "")


def _headline(d: Dashboard) -> None:
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Votes", f"{d.total_votes:,}")
    c2.metric("Reviewers", int(d.votes_by_reviewer["user"].nunique()) if not d.votes_by_reviewer.empty else 0)
    newest = d.win_rates[d.win_rates["opponent"] == "base"].sort_values(["round_number", "version_id"])
    if not newest.empty:
        row = newest.iloc[-1]
        c3.metric(f"{row['version']} vs base", f"{row['rate']:.0%}", help=f"95% CI {row['low']:.0%}–{row['high']:.0%}"
                  f" over {int(row['n'])} votes; ties count half")
    else:
        c3.metric("Newest vs base", "–")
    alpha = d.agreement["alpha"].dropna() if not d.agreement.empty else pd.Series(dtype=float)
    c4.metric("Agreement (α)", f"{alpha.iloc[0]:.2f}" if len(alpha) else "–",
              help="Krippendorff's alpha on pairs judged by several reviewers; 1 = perfect, 0 = chance")


def _decisions(d: Dashboard) -> None:
    """The stopping rule, one line per watched comparison: decided, or about how many more votes."""
    st.subheader("Did it win?")
    if d.decisions.empty:
        st.caption("No votes yet on the newest versions against their parent or base.")
        return
    for _, row in d.decisions.iterrows():
        where = "" if row["region"] == ALL_REGIONS else f"{row['region']} · "
        text = escape_markdown(f"{where}{row['verdict']}") + f" · {row['source']}"
        if row["decided"] and row["winner"] == "new":
            st.success(text, icon=":material/check_circle:")
        elif row["decided"]:
            st.error(text, icon=":material/cancel:")
        else:
            st.info(text, icon=":material/hourglass_top:")
    st.caption("Decided: the 95% interval of the win-rate excludes 50%. Otherwise, the votes still needed for a "
               "±5-point interval at the current variance; the scheduler stops sending decided comparisons to "
               "reviewers, and the Rounds page promotes a decided winner to serving.")


def render() -> None:
    viewer = page_user("dashboard")
    st.title("Dashboard")
    top = st.columns([3, 1])
    if top[1].button("Refresh", help=f"Figures are cached for {CACHE_S} s"):
        _dashboard.clear()
    everything = _dashboard(get_engine().url.render_as_string(hide_password=False), viewer)
    if everything.total_votes == 0:
        st.info(EMPTY_STATE)
        if not everything.abtests.empty:  # campaign results can come back before any vote is cast
            _ab_section(everything, ALL_REGIONS)
        return
    region = top[0].selectbox("Region", [ALL_REGIONS, *everything.regions], key="dashboard_region")
    d = everything.region(region)
    _headline(d)

    wins, ratings, throughput, reviewers, reasons, reward, campaigns = st.tabs(
        ["Win-rates", "Leaderboard", "Throughput", "Reviewers", "Reasons", "Reward model", "A/B tests"])
    with wins:
        _decisions(d)
        st.subheader("Win-rate of each version vs the base and vs its parent")
        st.caption("Human votes only; ties count half; “both bad” is left out of the rate and counted beside it. "
                   "Bars are 95% confidence intervals; above the dashed line the version is preferred.")
        if d.win_rates.empty:
            st.caption("No votes between different versions here yet (base-vs-base pairs train the reward model).")
        else:
            st.altair_chart(win_rate_by_round_chart(d.win_rates), width="stretch")
            opponent = st.radio("Over time, against", ["base", "parent"], horizontal=True, key="dashboard_opponent")
            st.altair_chart(win_rate_over_time_chart(d.weekly, opponent), width="stretch")
            _table(d.win_rates, "win_rates", region, "")
            _download(d.weekly, "weekly_win_rates", region)
        st.subheader("Prediction-powered win-rates")
        st.caption("The round's reward model predicts every evaluation pair; the votes on a random sample of them "
                   "correct its bias (PPI++), so the interval is valid whatever the model's quality and narrower "
                   "the more it agrees with reviewers. “Worth votes”: human votes alone would need that many for "
                   "an interval this narrow.")
        _charted(d.predicted, predicted_chart, "predicted", region,
                 "None yet: it needs a round's evaluation pairs (which carry the reward model's predictions) with "
                 "10 or more votes.")
    with ratings:
        st.subheader("Bradley–Terry leaderboard")
        st.caption("All versions on one scale from every comparison (base = 1000; +100 ≈ 64% expected win-rate), "
                   "with bootstrap 95% intervals.")
        _charted(d.leaderboard, leaderboard_chart, "leaderboard", region, "No comparisons between versions yet.")
    with throughput:
        st.subheader("Votes per day")
        st.altair_chart(votes_per_day_chart(d.votes_daily), width="stretch")
        _download(d.votes_daily, "votes_per_day", region)
        st.subheader("Votes per reviewer")
        _charted(d.votes_by_reviewer, votes_per_reviewer_chart, "votes_per_reviewer", region, "No votes yet.")
    with reviewers:
        st.subheader("Agreement")
        _table(d.agreement, "agreement", region, "No pair has been judged by two reviewers yet.")
        if d.position:
            st.caption(f"Left side picked in {d.position['left_share']:.0%} of {d.position['n']:,} decisive votes "
                       f"(p = {d.position['p_value']:.3g}); 50% means no position bias.")
        st.subheader("Reviewer quality")
        flagged = d.reviewers[d.reviewers["flagged"]] if not d.reviewers.empty else d.reviewers
        if len(flagged):
            st.warning(f"{len(flagged)} reviewer(s) flagged: " + "; ".join(
                f"{escape_markdown(u)} ({r})" for u, r in zip(flagged["user"], flagged["reasons"], strict=True)))
        _table(d.reviewers, "reviewers", region, "No reviewer votes yet.")
    with reasons:
        st.subheader("Why reviewers preferred each version")
        _charted(d.tags, tags_chart, "reason_tags", region, "No reason tags given yet.")
    with reward:
        st.subheader("Reward-model accuracy per round")
        st.caption("Drift = accuracy on the newest votes minus validation accuracy: a falling line means reviewers' "
                   "taste moved away from what the reward model learned.")
        _charted(d.reward_model, reward_model_chart, "reward_model", region, "No finished round yet.")
    with campaigns:
        _ab_section(d, region)


def _ab_section(d: Dashboard, region: str) -> None:
    """The A/B tests tab: each test's lift with its interval, the table in percent and its CSV."""
    st.subheader("Lift in live campaigns")
    st.caption("Tuned copy vs the base model's generic copy on the same briefs, from the campaign tool's "
               "impressions, clicks and conversions. Lift = tuned rate / generic rate − 1, with 95% intervals "
               "(rate ratio, log method); p from Fisher's exact test.")
    if d.abtests.empty:
        st.caption(AB_EMPTY)
    else:
        st.altair_chart(lift_chart(d.abtests), width="stretch")
        pct = {"format": "%.2f%%"}
        st.dataframe(d.abtests[AB_SHOWN].assign(**{c: d.abtests[c] * 100 for c in AB_PERCENT}), hide_index=True,
                     width="stretch", column_config={
                         "generic_rate": st.column_config.NumberColumn("generic rate", **pct),
                         "tuned_rate": st.column_config.NumberColumn("tuned rate", **pct),
                         "lift": st.column_config.NumberColumn("lift", format="%+.1f%%"),
                         "low": st.column_config.NumberColumn("95% CI low", format="%+.1f%%"),
                         "high": st.column_config.NumberColumn("95% CI high", format="%+.1f%%"),
                         "p_value": st.column_config.NumberColumn("p", format="%.3g")})
        _download(d.abtests, "ab_tests", region)
