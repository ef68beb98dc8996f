"""The login page."""

from __future__ import annotations

import streamlit as st

from collect.auth import login
from db.errors import AuthError
from db.session import session_scope
from ui.session import set_user


def render() -> None:
    st.title("GeoAlign")
    st.caption("Sign in to review regional copy, run rounds or watch win-rates.")
    notice = st.session_state.pop("login_notice", None)
    if notice:
        st.info(notice)
    with st.form("login_form"):
        username = st.text_input("Username", key="login_username")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return
    try:
        with session_scope() as session:
            user = login(session, username, password)
    except AuthError as exc:
        st.error(str(exc).capitalize())
        return
    set_user(user)
    st.rerun()
