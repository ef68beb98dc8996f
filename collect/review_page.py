"""The Review page: one blind pair at a time, a quick form, skip and undo."""

from __future__ import annotations

import logging
import time

import streamlit as st

from collect.auth import require
from collect.review import last_undoable, next_item, progress, skip, submit_vote, undo_last_vote
from collect.session_state import current_user
from collect.tags import list_tags
from db.session import session_scope

log = logging.getLogger(__name__)

CHOICE_LABELS = {"left": "Left is better", "right": "Right is better", "tie": "About the same",
                 "both_bad": "Both are bad"}
STRENGTH_LABELS = {"slight": "Slightly", "clear": "Clearly"}


def _tag_options() -> dict[str, str]:
    with session_scope() as session:
        return {t.name: t.label for t in sorted(list_tags(session), key=lambda t: t.label)}


def render() -> None:
    user = require(current_user(), "reviewer")
    with session_scope() as session:
        item = next_item(session, user)
        prog = progress(session, user)
        can_undo = last_undoable(session, user) is not None
    st.title("Review")
    c1, c2, c3 = st.columns([1, 1, 2])
    c1.metric("Votes today", prog.votes_today)
    c2.metric("Pairs left", prog.pairs_left)
    if can_undo and c3.button("↶ Undo last vote", key="review_undo"):
        with session_scope() as session:
            undo_last_vote(session, user)
        st.toast("Last vote withdrawn")
        st.rerun()
    if saved := st.session_state.pop("review_saved", None):
        st.toast(saved)
    if item is None:
        st.success("All caught up: there are no pairs waiting in your regions. New pairs arrive after each "
                   "alignment round; thank you!")
        return

    shown_at = st.session_state.setdefault(f"review_shown_{item.assignment_id}", time.time())
    st.markdown(f"**{item.region_name}** · {item.task}")
    st.text(item.brief)  # plain text: briefs and outputs never render as markdown or HTML
    with st.expander("Region profile", expanded=False):
        st.text(item.profile)
        if item.climate:
            st.caption(item.climate)
    left, right = st.columns(2)
    with left.container(border=True):
        st.caption("LEFT")
        st.text(item.left)
    with right.container(border=True):
        st.caption("RIGHT")
        st.text(item.right)

    tags = _tag_options()
    k = f"review_{item.assignment_id}"  # per-pair widget keys: a new pair starts with an empty form
    with st.form(f"review_form_{item.assignment_id}"):
        choice = st.radio("Which is more authentic for this region?", list(CHOICE_LABELS), index=None,
                          format_func=CHOICE_LABELS.get, horizontal=True, key=f"{k}_choice")
        strength = st.radio("How much better?", list(STRENGTH_LABELS), index=0, format_func=STRENGTH_LABELS.get,
                            horizontal=True, key=f"{k}_strength")
        reasons = st.multiselect("Reasons", list(tags), format_func=tags.get, key=f"{k}_tags")
        comment = st.text_input("Comment (optional)", key=f"{k}_comment")
        rewrite = st.text_area("Rewrite the better output (optional)", key=f"{k}_rewrite",
                               help="For 'Both are bad' or 'About the same', say below which output you rewrote.")
        rewrite_side = st.radio("My rewrite improves…", ["left", "right"], index=None, horizontal=True,
                                format_func={"left": "the left output", "right": "the right output"}.get,
                                key=f"{k}_rewrite_side")
        submitted = st.form_submit_button("Submit vote", type="primary")
    if st.button("Skip this pair", key="review_skip"):
        with session_scope() as session:
            skip(session, user, item.assignment_id)
        st.rerun()
    if not submitted:
        return
    if choice is None:
        st.warning("Pick one of the four choices first.")
        return
    start = time.perf_counter()
    with session_scope() as session:
        result = submit_vote(session, user, item.assignment_id, choice, strength, reasons, comment, rewrite,
                             rewrite_side, seconds=round(time.time() - shown_at, 1))
    log.info("vote_server_ms=%.1f vote=%s duplicate=%s", (time.perf_counter() - start) * 1000, result.vote_id,
             result.duplicate)
    st.session_state["review_saved"] = "Vote saved" if not result.duplicate else "Already recorded"
    st.rerun()
