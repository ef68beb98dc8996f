"""Streamlit entry point: routing only. The pages live in ui/pages/, who sees which in ui/nav.py.

    streamlit run app.py
"""

import logging

import streamlit as st

from ui.nav import APP_ICON, account_sidebar, pages_for
from ui.session import current_user

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
st.set_page_config(page_title="GeoAlign", page_icon=APP_ICON, layout="wide")

user = current_user()
account_sidebar(user)
st.navigation(pages_for(user)).run()
