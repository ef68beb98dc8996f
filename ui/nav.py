"""The pages, who sees each, and the sidebar's account block: what ``app.py`` routes over.

    PAGES = [(render, title, icon, url_path, roles), ...]

in menu order; a user's first page is where they land (a reviewer reviews, a lead sees the overview). The roles
come from ``ui.access.PAGE_ROLES``, the one list of them. Icons are Material icons, since emoji render as empty
boxes in headless Chromium.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from collect.auth import CurrentUser
from ui.access import roles_of
from ui.markdown_text import escape_markdown
from ui.pages import admin, dashboard, data, login, overview, review, rounds
from ui.session import logout

APP_ICON = ":material/map:"
LOGIN = (login.render, "Log in", ":material/login:", "login")

PAGES: list[tuple[Callable[[], None], str, str, str, tuple[str, ...]]] = [
    (review.render, "Review", ":material/balance:", "review", roles_of("review")),
    (overview.render, "Overview", ":material/home:", "overview", roles_of("overview")),
    (dashboard.render, "Dashboard", ":material/monitoring:", "dashboard", roles_of("dashboard")),
    (data.render, "Data", ":material/folder_open:", "data", roles_of("data")),
    (rounds.render, "Rounds", ":material/model_training:", "rounds", roles_of("rounds")),
    (admin.render, "Admin", ":material/admin_panel_settings:", "admin", roles_of("admin")),
]


def pages_for(user: CurrentUser | None) -> list[st.Page]:
    """The pages ``user`` may open, in menu order; the login page alone when nobody is logged in."""
    if user is None:
        render, title, icon, url_path = LOGIN
        return [st.Page(render, title=title, icon=icon, url_path=url_path)]
    return [st.Page(render, title=title, icon=icon, url_path=url_path)
            for render, title, icon, url_path, roles in PAGES if any(user.has(role) for role in roles)]


def account_sidebar(user: CurrentUser | None) -> None:
    """Who is signed in, with which roles and regions, and the Log out button; nothing when nobody is."""
    if user is None:
        return
    with st.sidebar:
        st.caption(f"Signed in as **{escape_markdown(user.username)}** · {', '.join(sorted(user.roles))}")
        if user.regions:
            st.caption("Regions: " + escape_markdown(", ".join(user.regions)))
        if st.button("Log out", key="logout"):
            logout()
            st.rerun()
