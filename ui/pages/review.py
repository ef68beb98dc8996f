"""The Review page: one blind pair at a time, a quick form, skip and undo, all by keyboard (``ui/keyboard.py``).
In rank mode (``GEOALIGN_RANK_K`` 3 or 4) it shows k outputs of one brief, labelled A–D in a shuffled order, to be
ranked best to worst with ties allowed; Enter submits and S skips there too.

The pair, its form and the buttons are one ``st.fragment``: a vote, skip or undo reruns only that part, not the
whole app (routing, the sidebar, the session check of ``app.py``), so the next pair shows sooner.
"""

from __future__ import annotations

import logging
import time

import streamlit as st

from collect.review import (
    RankItem,
    ReviewItem,
    last_undoable,
    next_item,
    progress,
    skip,
    submit_ranking,
    submit_vote,
    undo_last_vote,
)
from collect.tags import list_tags
from db.errors import GeoAlignError
from db.session import get_engine, in_transaction, session_scope
from ui.access import page_user
from ui.keyboard import CHOICE_KEYS, SKIP_KEY, STRENGTH_KEYS, SUBMIT_KEY, UNDO_KEY, hint, install_review_keys
from ui.markdown_text import escape_markdown

log = logging.getLogger(__name__)

CHOICE_LABELS = {"left": "Left is better", "right": "Right is better", "tie": "About the same",
                 "both_bad": "Both are bad"}
STRENGTH_LABELS = {"slight": "Slightly", "clear": "Clearly"}
NOTICE_KEY = "review_notice"  # (kind, message) left by a button callback for the next run to show


def _skip(assignment_id: int) -> None:
    """Skip button callback, bound to the pair the page showed: a stale tab never skips a pair it did not show."""
    try:
        user = page_user("review")
        # skip and vote are idempotent, so a connection lost mid-request (a database restart) is simply retried
        in_transaction(None, lambda session: skip(session, user, assignment_id))
    except GeoAlignError as exc:
        st.session_state[NOTICE_KEY] = ("error", str(exc))


def _submit(assignment_id: int) -> None:
    """Submit button callback, bound to the pair the page showed; reads that pair's form from the session state."""
    k = f"review_{assignment_id}"
    state = st.session_state
    if state.get(f"{k}_choice") is None:
        state[NOTICE_KEY] = ("warning", "Pick one of the four choices first.")
        return
    shown_at = state.get(f"review_shown_{assignment_id}", time.time())
    start = time.perf_counter()
    try:
        user = page_user("review")
        seconds = round(time.time() - shown_at, 1)
        result = in_transaction(None, lambda session: submit_vote(
            session, user, assignment_id, state[f"{k}_choice"], state.get(f"{k}_strength"),
            state.get(f"{k}_tags") or [], state.get(f"{k}_comment") or "", state.get(f"{k}_rewrite"),
            state.get(f"{k}_rewrite_side"), seconds=seconds))
    except GeoAlignError as exc:
        state[NOTICE_KEY] = ("error", str(exc))
        return
    log.info("vote_server_ms=%.1f vote=%s duplicate=%s", (time.perf_counter() - start) * 1000, result.vote_id,
             result.duplicate)
    state["review_saved"] = "Vote saved" if not result.duplicate else "Already recorded"


def _submit_ranking(assignment_id: int, labels: tuple[str, ...]) -> None:
    """Submit callback of a rank set, bound to the set the page showed: every output needs a rank (ties share one)."""
    k = f"review_{assignment_id}"
    state = st.session_state
    ranks = {label: state.get(f"{k}_rank_{label}") for label in labels}
    if any(rank is None for rank in ranks.values()):
        missing = ", ".join(label for label, rank in ranks.items() if rank is None)
        state[NOTICE_KEY] = ("warning", f"Give every output a rank first (missing: {missing}).")
        return
    shown_at = state.get(f"review_shown_{assignment_id}", time.time())
    try:
        user = page_user("review")
        seconds = round(time.time() - shown_at, 1)
        result = in_transaction(None, lambda session: submit_ranking(session, user, assignment_id, ranks,
                                                                     seconds=seconds))
    except GeoAlignError as exc:
        state[NOTICE_KEY] = ("error", str(exc))
        return
    state["review_saved"] = "Ranking saved" if not result.duplicate else "Already recorded"


def _undo() -> None:
    """Undo button callback: withdraws the reviewer's latest vote if it is still inside the undo window."""
    try:
        user = page_user("review")
        with session_scope() as session:
            undone = undo_last_vote(session, user)
    except GeoAlignError as exc:
        st.session_state[NOTICE_KEY] = ("error", str(exc))
        return
    st.session_state["review_saved"] = "Last vote withdrawn" if undone else "Nothing to undo"


@st.cache_data(ttl=60, show_spinner=False)
def _tag_options(database_url: str) -> dict[str, str]:
    """Reason tags by name, with their labels, sorted by label; per database, re-read each minute (tags are rarely
    added, and reading them cost a query on every pair)."""
    with session_scope() as session:
        return {t.name: t.label for t in sorted(list_tags(session), key=lambda t: t.label)}


def render() -> None:
    st.title("Review")
    _review_area()
    install_review_keys()


@st.fragment
def _review_area() -> None:
    start = time.perf_counter()
    user = page_user("review")  # a fragment rerun skips app.py, so the session is checked again here
    with session_scope() as session:
        item = next_item(session, user)
        prog = progress(session, user)
        can_undo = last_undoable(session, user) is not None
    reads_ms = (time.perf_counter() - start) * 1000
    c1, c2, c3 = st.columns([1, 1, 2])
    c1.metric("Votes today", prog.votes_today)
    c2.metric("Pairs left", prog.pairs_left_text)
    if can_undo:
        c3.button("Undo last vote", key="review_undo", icon=":material/undo:", on_click=_undo, shortcut=UNDO_KEY)
    if saved := st.session_state.pop("review_saved", None):
        st.toast(saved)
    if notice := st.session_state.pop(NOTICE_KEY, None):
        kind, message = notice
        (st.warning if kind == "warning" else st.error)(escape_markdown(message))
    if item is None:
        st.success("All caught up: there are no pairs waiting in your regions. New pairs arrive after each "
                   "alignment round; thank you!")
        return
    if isinstance(item, RankItem):
        _rank_set_and_form(item)
    else:
        _pair_and_form(item)
    log.info("review_render_ms=%.1f reads_ms=%.1f", (time.perf_counter() - start) * 1000, reads_ms)


def _brief(item: ReviewItem | RankItem) -> None:
    """The region, task, brief and region profile above the outputs; starts the item's clock."""
    st.session_state.setdefault(f"review_shown_{item.assignment_id}", time.time())
    # region names and climates are imported text: escaped, so image or link syntax in them shows as typed
    st.markdown(f"**{escape_markdown(item.region_name)}** · {escape_markdown(item.task)}")
    st.text(item.brief)  # plain text: briefs and outputs never render as markdown or HTML
    with st.expander("Region profile", expanded=False):
        st.text(item.profile)
        if item.climate:
            st.caption(escape_markdown(item.climate))


def _rank_set_and_form(item: RankItem) -> None:
    """The brief, the k outputs side by side, a rank for each (1 = best; equal ranks for a tie) and Skip."""
    _brief(item)
    labels = tuple(label for label, _ in item.candidates)
    for column, (label, text) in zip(st.columns(item.k), item.candidates, strict=True):
        with column.container(border=True):
            st.caption(f"OUTPUT {label}")
            st.text(text)
    k = f"review_{item.assignment_id}"
    with st.form(f"review_form_{item.assignment_id}"):
        st.caption(f"Rank the {item.k} outputs by how authentic they are for this region: 1 is the best. Give two "
                   "outputs the same rank when you cannot tell them apart.")
        for column, label in zip(st.columns(item.k), labels, strict=True):
            column.radio(f"Rank of {label}", list(range(1, item.k + 1)), index=None, horizontal=True,
                         key=f"{k}_rank_{label}")
        st.form_submit_button("Submit ranking", type="primary", on_click=_submit_ranking,
                              args=(item.assignment_id, labels), key=f"{k}_submit", shortcut=SUBMIT_KEY)
    st.button("Skip these outputs", key=f"review_skip_{item.assignment_id}", on_click=_skip,
              args=(item.assignment_id,), shortcut=SKIP_KEY)


def _pair_and_form(item: ReviewItem) -> None:
    """The brief, the two outputs, the form and Skip, all keyed by the shown assignment."""
    _brief(item)
    left, right = st.columns(2)
    with left.container(border=True):
        st.caption("LEFT")
        st.text(item.left)
    with right.container(border=True):
        st.caption("RIGHT")
        st.text(item.right)

    tags = _tag_options(get_engine().url.render_as_string())
    # per-pair keys: a new pair starts with an empty form, and a click on a pair no longer shown matches nothing
    k = f"review_{item.assignment_id}"
    with st.form(f"review_form_{item.assignment_id}"):
        st.radio("Which is more authentic for this region?", list(CHOICE_LABELS), index=None,
                 format_func=lambda c: hint(CHOICE_LABELS[c], CHOICE_KEYS[c]), horizontal=True, key=f"{k}_choice")
        st.radio("How much better?", list(STRENGTH_LABELS), index=0,
                 format_func=lambda s: hint(STRENGTH_LABELS[s], STRENGTH_KEYS[s]), horizontal=True,
                 key=f"{k}_strength")
        st.multiselect("Reasons", list(tags), format_func=tags.get, key=f"{k}_tags")
        st.text_input("Comment (optional)", key=f"{k}_comment")
        st.text_area("Rewrite the better output (optional)", key=f"{k}_rewrite",
                     help="For 'Both are bad' or 'About the same', say below which output you rewrote.")
        st.radio("My rewrite improves…", ["left", "right"], index=None, horizontal=True,
                 format_func={"left": "the left output", "right": "the right output"}.get, key=f"{k}_rewrite_side")
        st.form_submit_button("Submit vote", type="primary", on_click=_submit, args=(item.assignment_id,),
                              key=f"{k}_submit", shortcut=SUBMIT_KEY)
    st.button("Skip this pair", key=f"review_skip_{item.assignment_id}", on_click=_skip, args=(item.assignment_id,),
              shortcut=SKIP_KEY)
