"""The Rounds page: queue an alignment round, follow it (stages, progress, loss curves, log), cancel or resume it,
promote a decided winner to serving, and browse the model versions rounds published, with their win-rates and
lineage.

The page only reads and queues; a worker (``geoalign worker``) runs the rounds. Its rows, frames, text and charts
come from ``ui/views.py``; those and the form's ``build_config`` are tested without Streamlit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st
import yaml
from sqlalchemy.orm import Session

from align.config import RL_ALGORITHMS, SECTIONS, STAGE_ORDER, RoundConfig, load_config
from align.jobs import request_cancel
from align.promotion import promote
from align.rounds import has_active_round, queue_resume, queue_round, scope_name
from collect.auth import CurrentUser
from collect.overview import region_codes
from db.errors import AuthError, ConfigError, GeoAlignError, PermissionDenied
from db.session import session_scope
from ui.access import page_user
from ui.markdown_text import escape_markdown
from ui.views import (
    age_text,
    history_frame,
    loss_chart,
    metrics_frame,
    published_text,
    rounds_view,
    stage_line,
    versions_view,
)

ROUNDS_SHOWN = 20  # newest rounds listed; older ones stay in the database and `geoalign jobs list`
LOG_LINES = 40  # enough to see the last stage's messages and a traceback's end
REFRESH_S = 5  # auto-refresh while a round is queued or running: a live loss curve, a light load on the database
STALE_S = 30  # the worker's default GEOALIGN_STALE_AFTER_S: older heartbeats mean the job is about to be reaped
NOTICE_KEY = "rounds_notice"
STATUS_ICONS = {"queued": ":material/hourglass_top:", "running": ":material/progress_activity:",
                "succeeded": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/block:"}
STAGE_LABELS = {"sft": "SFT", "reward": "Reward model", "dpo": "DPO", "rl": "Online RL"}
CONFIG_EXAMPLE = "lora: {r: 8}\nsft: {num_train_epochs: 3}\ndpo: {beta: 0.2}"


# ------------------------------------------------------------------------------------------- plain data


def build_config(text: str, stages: list[str], rl_algorithm: str) -> RoundConfig:
    """The round config from the form: the optional YAML text's sections, with the stage and RL widgets winning.

    Raises ConfigError naming the wrong section, key or value (``sft: unknown key(s) ['learning_rte'] ...``).
    """
    try:
        data = yaml.safe_load(text) if text and text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"the extra config is not valid YAML: {exc}") from exc
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError("the extra config must be a YAML mapping with the sections " + ", ".join(SECTIONS))
    if not stages:
        raise ConfigError("pick at least one stage (the reward model alone publishes a new reward model)")
    section = data.get("round") or {}
    if isinstance(section, dict):  # anything else is left for load_config to name
        data = {**data, "round": {**section, "stages": list(stages), "rl_algorithm": rl_algorithm}}
    return load_config(data)


def log_tail(log: str, lines: int = LOG_LINES) -> str:
    """The last ``lines`` lines of a job log."""
    return "\n".join(log.rstrip("\n").splitlines()[-lines:])


# ------------------------------------------------------------------------------------------- actions


def _act(action: Callable[[Session, CurrentUser], object], success: str) -> None:
    """Button callback: run ``action(session, user)`` and leave a notice; runs before the page is drawn again."""
    try:
        user = page_user("rounds")
        with session_scope() as session:
            action(session, user)
    except GeoAlignError as exc:
        st.session_state[NOTICE_KEY] = ("error", str(exc))
        return
    st.session_state[NOTICE_KEY] = ("success", success)


def _cancel(job_id: int, label: str) -> None:
    _act(lambda s, u: request_cancel(s, u, job_id), f"Cancel requested for {label} (job {job_id}).")


def _resume(round_id: int, label: str) -> None:
    _act(lambda s, u: queue_resume(s, u, round_id),
         f"{label} queued again; it continues after its last completed stage.")


def _promote(version: str, region_key: str) -> None:
    region = st.session_state.get(region_key)
    if not region:
        st.session_state[NOTICE_KEY] = ("error", "Choose the region to serve it in first.")
        return
    _act(lambda s, u: promote(s, u, version, region),
         f"{region} now serves {version}: the votes decided it beats its parent (running servers switch at their "
         "next request).")


def _promotion(row: dict[str, Any], codes: list[str], buttons) -> None:
    """Promote to serving, for a round that published a policy: allowed once its version is decided to beat its
    parent in the region (``align.promotion``); refused with the reason until then."""
    version = row["metrics"]["version"]
    key = f"rounds_promote_region_{row['id']}"
    if row["region"]:
        st.session_state[key] = row["region"]
    else:
        st.selectbox("Serve in", codes, key=key, index=None, placeholder="region to serve it in")
    buttons.button("Promote", key=f"rounds_promote_{row['id']}", icon=":material/rocket_launch:",
                   on_click=_promote, args=(version, key),
                   help=f"Promote to serving: the generation API serves {version} from now on, once the votes "
                        "have decided it beats its parent (Dashboard, Win-rates: the stopping rule).")


def _queue(user: CurrentUser, region: str | None, stages: list[str], rl_algorithm: str, text: str) -> None:
    try:
        with st.spinner("Checking the config…"):
            config = build_config(text, stages, rl_algorithm)
        with session_scope() as session:
            rnd, job = queue_round(session, user, region, config)
            number, job_id = rnd.number, job.id
    except GeoAlignError as exc:
        st.error(f"Nothing was queued: {exc}")
        return
    st.success(f"Round {number} ({scope_name(region)}) queued as job {job_id}; a worker (`geoalign worker`) "
               "will pick it up.")


# ------------------------------------------------------------------------------------------- page


def render_start(user: CurrentUser) -> None:
    """The form that queues a round."""
    st.subheader("Start a round")
    with session_scope() as session:
        codes = region_codes(session)
    if not codes:
        st.info("No regions yet: run `geoalign demo` or `geoalign import regions region.json` first.")
        return
    with st.form("rounds_start"):
        c1, c2 = st.columns(2)
        region = c1.selectbox("Scope", [None, *codes], key="rounds_scope",
                              format_func=lambda c: "all regions" if c is None else c)
        rl_algorithm = c2.selectbox("RL algorithm", RL_ALGORITHMS, key="rounds_rl_algorithm",
                                    help="The online RL trainer of the rl stage: TRL's GRPOTrainer or RLOOTrainer.")
        columns = st.columns(len(STAGE_ORDER))
        stages = [s for s, col in zip(STAGE_ORDER, columns, strict=True)
                  if col.checkbox(STAGE_LABELS[s], value=True, key=f"rounds_stage_{s}")]
        text = st.text_area(
            "Extra config (YAML, optional)", key="rounds_yaml", placeholder=CONFIG_EXAMPLE, height=120,
            help="Sections " + ", ".join(SECTIONS) + ": each key is a field of TRL's config of that stage (or "
                 "PEFT's LoraConfig). The stage boxes and the RL algorithm above override round.stages and "
                 "round.rl_algorithm.")
        submitted = st.form_submit_button("Queue round", type="primary")
    if submitted:
        _queue(user, region, stages, rl_algorithm, text)


def _round_card(row: dict[str, Any], codes: list[str]) -> None:
    job = row["job"]
    progress = (job or {}).get("progress") or {}
    job_status = (job or {}).get("status")
    live = job_status in ("queued", "running")
    label = f"{row['scope']} round {row['number']}"
    with st.container(border=True):
        head, buttons = st.columns([5, 1])
        head.markdown(f"**{label}** · {STATUS_ICONS.get(row['status'], '')} {row['status']}")
        details = [f"round id {row['id']}", f"queued {row['created_at']:%Y-%m-%d %H:%M}"]
        if job:
            details.append(f"job {job['id']} ({job_status})")
            if job["worker"]:
                age, seconds = age_text(job["heartbeat_at"])
                details.append(f"worker {job['worker']}, heartbeat {age}")
                if job_status == "running" and seconds is not None and seconds > STALE_S:
                    head.warning(f"No heartbeat for {age[:-4]}: is the worker still alive?")
        head.caption(" · ".join(details))
        current = progress.get("stage") if job_status == "running" else None
        st.markdown(stage_line(row["stages"], row["completed_stages"], current))
        if job_status == "running" and progress.get("total"):
            step, total = progress.get("step") or 0, progress["total"]
            st.progress(min(1.0, step / total), text=f"{progress.get('stage')}: step {step} of {total}")
        elif job_status == "running" and current:
            st.caption(f"{current}: starting…")
        elif job_status == "queued":
            st.caption("Waiting for a worker: start one with `geoalign worker`.")
        if job and job.get("cancel_requested") and job_status == "running":
            st.caption("Cancel requested: the worker stops at the next training step.")
        if row["error"]:
            st.error(row["error"])
        if row["metrics"].get("version"):
            st.caption(published_text(row["metrics"]))
        frame = history_frame(progress.get("history") or [])
        if not frame.empty:
            with st.expander("Training curves", expanded=job_status == "running"):
                st.altair_chart(loss_chart(frame))
        if row["metrics"]:
            with st.expander("Metrics"):
                st.dataframe(metrics_frame(row["metrics"]), hide_index=True, width="stretch")
        if job and job.get("log"):
            with st.expander(f"Log (last {LOG_LINES} lines)"):
                st.code(log_tail(job["log"]), language=None)
        if live and not job.get("cancel_requested"):
            buttons.button("Cancel", key=f"rounds_cancel_{job['id']}", on_click=_cancel, args=(job["id"], label))
        if row["status"] == "succeeded" and row["metrics"].get("version") and not row["metrics"].get("reward_only"):
            _promotion(row, codes, buttons)
        if row["status"] in ("failed", "cancelled") and not live:
            buttons.button("Resume", key=f"rounds_resume_{row['id']}", on_click=_resume, args=(row["id"], label),
                           help="Queue it again; it continues after its last completed stage.")


def _rounds_list(refreshing: bool) -> None:
    with session_scope() as session:
        if has_active_round(session) != refreshing:
            # a round started or ended since the page was drawn: redraw it all (refresh period, new versions)
            st.rerun()
        rows = rounds_view(session, ROUNDS_SHOWN)
        codes = region_codes(session)
    if notice := st.session_state.pop(NOTICE_KEY, None):
        (st.error if notice[0] == "error" else st.success)(notice[1])
    if not rows:
        st.info("No rounds yet — start one above.")
        return
    for row in rows:
        _round_card(row, codes)


def render_rounds() -> None:
    """The newest rounds, redrawn every few seconds while one is queued or running."""
    st.subheader("Rounds")
    with session_scope() as session:
        active = has_active_round(session)
    c1, c2 = st.columns([4, 1])
    live = c1.toggle(f"Refresh every {REFRESH_S} s while a round is queued or running", value=True,
                     key="rounds_live")
    c2.button("Refresh", key="rounds_refresh", icon=":material/refresh:")  # a click reruns the page
    st.fragment(run_every=REFRESH_S if live and active else None)(_rounds_list)(active)


def render_versions() -> None:
    """Model versions with win-rates, and one version's lineage and metrics."""
    with session_scope() as session:
        rows = versions_view(session)
    if not rows:
        st.info("No model versions yet: the first round registers the base model and publishes a version here.")
        return
    columns = ["name", "parent", "stage", "region", "status", "created", "judge vs parent", "judge vs base",
               "reward model vs parent", "reward model vs base"]
    st.dataframe(pd.DataFrame([{c: r[c] for c in columns} for r in rows]), hide_index=True, width="stretch")
    st.caption("Win-rates on held-out test briefs, with 95% intervals. **Judge**: the independent locality judge "
               "(sentence embeddings against local gold copy that no stage trains on): whether the copy got more "
               "local. **Reward model**: the round's own reward model, which online RL optimised, so it mostly says "
               "whether training did what it aimed at. Reviewers' votes on the Dashboard are the final word.")
    st.subheader("Lineage")
    name = st.selectbox("Version", [r["name"] for r in rows], key="rounds_version")
    row = next(r for r in rows if r["name"] == name)
    c1, c2 = st.columns(2)
    c1.caption("Lineage: parent, round, dataset hashes and counts, config")
    c1.json(row["lineage"], expanded=2)
    c2.caption("Metrics: per stage, and evaluation")
    c2.json(row["metrics"], expanded=2)


def render() -> None:
    """The page: for engineers and admins; anyone else gets a refusal."""
    try:
        user = page_user("rounds")
    except (AuthError, PermissionDenied) as exc:
        st.error(f"The Rounds page is for ML engineers and admins: {escape_markdown(exc)}.")  # quotes the username
        return
    st.title("Rounds")
    st.caption("A round trains a new model version on the reviewers' votes: SFT → reward model → DPO → online RL "
               "→ evaluation → publish. A worker (`geoalign worker`) runs queued rounds.")
    tab_rounds, tab_versions = st.tabs(["Rounds", "Model versions"])
    with tab_rounds:
        render_start(user)
        render_rounds()
    with tab_versions:
        render_versions()
