"""Who may open each page: the one list of roles per page.

``ui/nav.py`` shows a page to these roles, and each page's own gate (and its button callbacks) requires them, so a
page rendered on its own (``AppTest.from_function``) refuses the same users. The table lives here rather than in
``ui/nav.py`` because the pages import it and ``ui/nav.py`` imports the pages. Where the domain authorizes an action
itself, its roles are used here, not restated: ``align.rounds.ROUNDS_ROLES`` guards queue_round and queue_resume,
``rewards.dashboard.DASHBOARD_ROLES`` guards load_dashboard.
"""

from __future__ import annotations

from align.rounds import ROUNDS_ROLES
from collect.auth import CurrentUser, require
from rewards.dashboard import DASHBOARD_ROLES
from ui.session import current_user

PAGE_ROLES: dict[str, tuple[str, ...]] = {  # by url_path; the login page is for whoever is not logged in
    "review": ("reviewer",),
    "overview": ("engineer", "lead", "admin"),
    "dashboard": DASHBOARD_ROLES,
    "data": ("engineer", "admin"),
    "rounds": ROUNDS_ROLES,
    "admin": ("admin",),
}


def roles_of(url_path: str) -> tuple[str, ...]:
    """The roles that may open the page at ``url_path`` (any one of them is enough)."""
    return PAGE_ROLES[url_path]


def page_user(url_path: str) -> CurrentUser:
    """The logged-in user if they may open the page, else AuthError or PermissionDenied (``collect.auth.require``)."""
    return require(current_user(), *roles_of(url_path))
