"""Streamlit entry point: routing only. Page logic lives in tested functions in collect/, align/ and rewards/.

    streamlit run app.py
"""

import logging

import streamlit as st

from collect.markdown_text import escape_markdown
from ui.pages import admin as admin_page
from ui.pages import dashboard as dashboard_page
from ui.pages import data as data_page
from ui.pages import login as login_page
from ui.pages import overview as home_page
from ui.pages import review as review_page
from ui.pages import rounds as rounds_page
from ui.session import current_user, logout

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
st.set_page_config(page_title="GeoAlign", page_icon="🗺️", layout="wide")

user = current_user()
if user is None:
    pages = [st.Page(login_page.render, title="Log in", icon="🔑", url_path="login")]
else:
    pages = []
    if user.has("reviewer"):
        pages.append(st.Page(review_page.render, title="Review", icon="⚖️", url_path="review"))
    if user.has("engineer") or user.has("lead") or user.has("admin"):
        pages.append(st.Page(home_page.render, title="Overview", icon="🏠", url_path="overview"))
        pages.append(st.Page(dashboard_page.render, title="Dashboard", icon="📈", url_path="dashboard"))
    if user.has("engineer") or user.has("admin"):
        pages.append(st.Page(data_page.render, title="Data", icon="🗂️", url_path="data"))
        pages.append(st.Page(rounds_page.render, title="Rounds", icon="🔁", url_path="rounds"))
    if user.has("admin"):
        pages.append(st.Page(admin_page.render, title="Admin", icon="🛠️", url_path="admin"))
    with st.sidebar:
        st.caption(f"Signed in as **{escape_markdown(user.username)}** · {', '.join(sorted(user.roles))}")
        if user.regions:
            st.caption("Regions: " + escape_markdown(", ".join(user.regions)))
        if st.button("Log out", key="logout"):
            logout()
            st.rerun()
st.navigation(pages).run()
