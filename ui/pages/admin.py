"""The Admin page: users, roles and regions, password resets, regions and the tag vocabulary."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from collect import admin
from db.errors import GeoAlignError
from db.models import Role
from db.session import session_scope
from ui.access import page_user
from ui.markdown_text import escape_markdown

ROLES = [r.value for r in Role]


def _do(action, success: str, show_result: bool = False) -> None:
    """Run ``action`` in one transaction and report it; ``show_result`` shows what it returned (a new password)."""
    try:
        with session_scope() as session:
            result = action(session)
    except GeoAlignError as exc:
        st.error(escape_markdown(exc))  # messages quote usernames and tag names
        return
    st.success(success)
    if show_result:
        st.code(result, language=None)  # exact and copyable, never read as Markdown


def render() -> None:
    actor = page_user("admin")
    st.title("Admin")
    with session_scope() as session:
        users = admin.users_table(session, actor)
        regions = admin.regions_table(session, actor)
        tags = admin.tags_table(session, actor)
        codes = [r["code"] for r in regions]
    t_users, t_regions, t_tags = st.tabs(["Users", "Regions", "Tags"])
    with t_users:
        st.dataframe(pd.DataFrame(users), hide_index=True, use_container_width=True)
        with st.form("admin_add_user", clear_on_submit=True):
            st.subheader("Add a user")
            name = st.text_input("Username", key="admin_new_name")
            roles = st.multiselect("Roles", ROLES, default=["reviewer"], key="admin_new_roles")
            regs = st.multiselect("Regions", codes, key="admin_new_regions")
            if st.form_submit_button("Add user"):
                _do(lambda s: admin.add_user(s, actor, name, roles, regs),
                    f"Created {escape_markdown(name.strip())}. Password (shown once):", show_result=True)
        if users:
            st.subheader("Change a user")
            who = st.selectbox("User", [u["username"] for u in users], key="admin_edit_user")
            row = next(u for u in users if u["username"] == who)
            with st.form("admin_edit_form"):
                roles = st.multiselect("Roles", ROLES, default=[r for r in row["roles"].split(", ") if r],
                                       key="admin_edit_roles")
                regs = st.multiselect("Regions", codes, default=[r for r in row["regions"].split(", ") if r],
                                      key="admin_edit_regions")
                active = st.checkbox("Active", value=row["active"], key="admin_edit_active")
                if st.form_submit_button("Save"):
                    _do(lambda s: admin.update_user(s, actor, who, roles, regs, active),
                        f"Saved {escape_markdown(who)}")
            if st.button(f"Reset password of {escape_markdown(who)}", key="admin_reset"):
                _do(lambda s: admin.reset_user_password(s, actor, who),
                    f"New password for {escape_markdown(who)} (shown once):", show_result=True)
    with t_regions:
        if regions:
            st.dataframe(pd.DataFrame(regions), hide_index=True, use_container_width=True)
        else:
            st.info("No regions yet: `geoalign import regions region.json` adds them.")
        st.caption("Regions and their profiles are imported from files: `geoalign import regions FILE`.")
    with t_tags:
        st.dataframe(pd.DataFrame(tags), hide_index=True, use_container_width=True)
        with st.form("admin_add_tag", clear_on_submit=True):
            c1, c2 = st.columns(2)
            name = c1.text_input("Name (slug)", key="admin_tag_name")
            label = c2.text_input("Label", key="admin_tag_label")
            description = st.text_input("Description", key="admin_tag_description")
            if st.form_submit_button("Add tag"):
                _do(lambda s: admin.add_vocabulary_tag(s, actor, name, label, description),
                    f"Added tag {escape_markdown(name)}")
        if tags:
            gone = st.selectbox("Remove an unused tag", [t["name"] for t in tags], key="admin_tag_remove")
            if st.button("Remove tag", key="admin_tag_remove_go"):
                _do(lambda s: admin.remove_vocabulary_tag(s, actor, gone), f"Removed tag {escape_markdown(gone)}")
