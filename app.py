"""Streamlit entry point: routing only. Page logic lives in tested functions in collect/, align/ and rewards/.

    streamlit run app.py
"""

import streamlit as st

from collect import data_page, home_page

st.set_page_config(page_title="GeoAlign", page_icon="🗺️", layout="wide")

pages = [
    st.Page(home_page.render, title="Overview", icon="🏠", url_path="overview", default=True),
    st.Page(data_page.render, title="Data", icon="🗂️", url_path="data"),
]
st.navigation(pages).run()
