"""The home page: what data each region has and how many pairs wait for review."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from collect.overview import model_version_count, region_overview
from db.session import session_scope
from ui.access import page_user

EMPTY_STATE = "No regions yet. Run `geoalign demo` (or `geoalign import regions …`) to load data."


def overview_frame() -> pd.DataFrame:
    """Per-region counts as a DataFrame with display column names (empty frame when there are no regions)."""
    with session_scope() as session:
        rows = region_overview(session)
    frame = pd.DataFrame(rows, columns=["region", "name", "prompts", "examples", "pairs", "votes", "pairs_waiting"])
    return frame.rename(columns={"pairs_waiting": "waiting for review"})


def render() -> None:
    page_user("overview")
    st.title("GeoAlign")
    st.caption("Human preferences on regional marketing copy, turned into better models round after round.")
    frame = overview_frame()
    if frame.empty:
        st.info(EMPTY_STATE)
        return
    with session_scope() as session:
        versions = model_version_count(session)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Regions", len(frame))
    c2.metric("Gold examples", int(frame["examples"].sum()))
    c3.metric("Pairs waiting", int(frame["waiting for review"].sum()))
    c4.metric("Model versions", versions)
    st.dataframe(frame, hide_index=True, use_container_width=True)
