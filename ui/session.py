"""Who is logged in, kept in Streamlit's session state as plain data."""

from __future__ import annotations

import streamlit as st

from collect.auth import CurrentUser, refresh
from db.errors import AuthError
from db.session import session_scope

KEY = "geoalign_user"


def current_user() -> CurrentUser | None:
    """The logged-in user with fresh roles and regions, or None (also after expiry or deactivation)."""
    user: CurrentUser | None = st.session_state.get(KEY)
    if user is None:
        return None
    if user.expired:
        st.session_state.pop(KEY, None)
        st.session_state["login_notice"] = "Your session expired: please log in again."
        return None
    try:
        with session_scope() as session:
            user = refresh(session, user)
    except AuthError as exc:
        st.session_state.pop(KEY, None)
        st.session_state["login_notice"] = str(exc)
        return None
    st.session_state[KEY] = user
    return user


def set_user(user: CurrentUser) -> None:
    st.session_state[KEY] = user


def logout() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]
