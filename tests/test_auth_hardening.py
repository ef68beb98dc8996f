"""Accounts under attack: concurrent guessing, username enumeration, sessions outliving a reset, Markdown in names."""

import inspect
import threading
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import pytest
from argon2 import PasswordHasher, extract_parameters
from markdown_it import MarkdownIt
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from collect import admin
from collect.accounts import reset_password, set_access
from collect.auth import LOCK_MINUTES, LOGIN_FAILED, MAX_FAILURES, login, refresh
from db.errors import AuthError, ConfigError, PermissionDenied
from db.models import AuditEvent, User
from db.session import session_scope
from db.settings import Settings
from tests.conftest import cast, lineage, login_as

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PASSWORD = "long-password-1"
NOW = datetime(2026, 11, 16, 9, tzinfo=timezone.utc)


def _attempt(engine, username: str, password: str, now: datetime = NOW) -> str | None:
    """The refusal message of one login, or None when it succeeds."""
    try:
        with session_scope(engine) as s:
            login(s, username, password, now=now)
    except AuthError as exc:
        return str(exc)
    return None


def _row(engine, username: str) -> User:
    with session_scope(engine) as s:
        return s.scalar(select(User).where(User.username == username))


def _locks(engine) -> int:
    with session_scope(engine) as s:
        return s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "login_locked"))


# 1. lockout under concurrent guessing


def test_concurrent_wrong_passwords_lock_the_account(any_engine):
    """Guesses racing in parallel threads all count: the account locks, once, and then refuses the right password."""
    login_as(any_engine, "lee")
    threads, start, results = 12, threading.Barrier(12), []

    def guess(i: int) -> None:
        start.wait()
        results.append(_attempt(any_engine, "lee", f"wrong password {i}"))

    workers = [threading.Thread(target=guess, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert results == [LOGIN_FAILED] * threads
    user = _row(any_engine, "lee")
    assert user.locked_until is not None and _locks(any_engine) == 1
    assert _attempt(any_engine, "lee", PASSWORD) == LOGIN_FAILED  # locked: even the right password is refused
    assert _attempt(any_engine, "lee", PASSWORD, now=NOW + timedelta(minutes=LOCK_MINUTES + 1)) is None


def test_the_lock_comes_after_exactly_max_failures(any_engine):
    login_as(any_engine, "lee")
    for i in range(MAX_FAILURES - 1):
        assert _attempt(any_engine, "lee", f"wrong {i}") == LOGIN_FAILED
    assert _row(any_engine, "lee").failed_logins == MAX_FAILURES - 1 and _locks(any_engine) == 0
    assert _attempt(any_engine, "lee", PASSWORD) is None  # a success starts the count again
    assert _row(any_engine, "lee").failed_logins == 0
    for i in range(MAX_FAILURES):
        assert _row(any_engine, "lee").locked_until is None
        _attempt(any_engine, "lee", f"wrong {i}")
    assert _row(any_engine, "lee").locked_until is not None and _locks(any_engine) == 1
    assert _attempt(any_engine, "lee", PASSWORD, now=NOW + timedelta(minutes=LOCK_MINUTES - 1)) == LOGIN_FAILED


# 9. no username enumeration


def test_every_refusal_says_the_same(any_engine):
    """Unknown, wrong password, locked, deactivated and system accounts: one message, right password or not."""
    for name in ("lee", "locked", "gone", "importer"):
        login_as(any_engine, name)
    for i in range(MAX_FAILURES):
        _attempt(any_engine, "locked", f"wrong {i}")
    with session_scope(any_engine) as s:
        set_access(s, "gone", active=False)
        s.scalar(select(User).where(User.username == "importer")).is_system = True
    messages = {
        "unknown": _attempt(any_engine, "nobody", PASSWORD),
        "wrong password": _attempt(any_engine, "lee", "wrong password"),
        "locked, right password": _attempt(any_engine, "locked", PASSWORD),
        "locked, wrong password": _attempt(any_engine, "locked", "wrong password"),
        "deactivated, right password": _attempt(any_engine, "gone", PASSWORD),
        "deactivated, wrong password": _attempt(any_engine, "gone", "wrong password"),
        "system account": _attempt(any_engine, "importer", PASSWORD),
    }
    assert set(messages.values()) == {LOGIN_FAILED}, messages


def test_an_unknown_username_costs_a_full_argon2_check(engine, monkeypatch):
    login_as(engine, "lee")
    real = _row(engine, "lee").password_hash
    checked = []
    verify = PasswordHasher.verify

    def counting(self, password_hash, password):
        try:
            return verify(self, password_hash, password)
        except Exception as exc:
            checked.append((extract_parameters(password_hash), type(exc).__name__))
            raise

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    assert _attempt(engine, "nobody", PASSWORD) == LOGIN_FAILED
    assert _attempt(engine, "lee", "wrong password") == LOGIN_FAILED
    # the same parameters as a real hash, and a real mismatch (not a malformed hash that fails at once)
    assert checked == [(extract_parameters(real), "VerifyMismatchError")] * 2


# 4. credential changes end live sessions


def test_password_reset_ends_live_sessions(any_engine):
    current = login_as(any_engine, "lee")
    with session_scope(any_engine) as s:
        assert refresh(s, current).username == "lee"
        reset_password(s, "lee", "another-password-2")
    with session_scope(any_engine) as s, pytest.raises(AuthError, match="session ended.*log in again"):
        refresh(s, current)
    assert _attempt(any_engine, "lee", PASSWORD) == LOGIN_FAILED
    with session_scope(any_engine) as s:
        fresh = login(s, "lee", "another-password-2")
    with session_scope(any_engine) as s:
        assert refresh(s, fresh).username == "lee"  # a session begun after the reset is valid


def test_deactivation_ends_sessions_but_role_changes_do_not(any_engine):
    current = login_as(any_engine, "lee", roles=("reviewer", "lead"))
    with session_scope(any_engine) as s:
        set_access(s, "lee", roles=["reviewer"])
    with session_scope(any_engine) as s:
        assert refresh(s, current).roles == {"reviewer"}  # the same session, with the new roles
        set_access(s, "lee", active=False)
    with session_scope(any_engine) as s:
        set_access(s, "lee", active=True)
    with session_scope(any_engine) as s, pytest.raises(AuthError, match="session ended"):
        refresh(s, current)  # reactivating does not bring the old session back
    assert _row(any_engine, "lee").session_epoch == 1


def test_the_app_sends_a_reset_user_back_to_login(loaded):
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["geoalign_user"] = login_as(loaded, "lee", regions=["en-GB-leeds"])
    at.run()
    assert at.title[0].value == "Review"
    with session_scope(loaded) as s:
        admin.reset_user_password(s, login_as(loaded, "root", roles=["admin"]), "lee")
    at.run()
    assert "session ended" in at.info[0].value and at.text_input(key="login_username") is not None


def test_session_length_comes_from_the_settings(engine, monkeypatch):
    login_as(engine, "lee")
    monkeypatch.setenv("GEOALIGN_SESSION_MINUTES", "60")
    with session_scope(engine) as s:
        assert login(s, "lee", PASSWORD, now=NOW).expires_at == NOW + timedelta(minutes=60)
    for bad in ("soon", "0", "²"):
        with pytest.raises(ConfigError, match="GEOALIGN_SESSION_MINUTES"):
            Settings.from_env({"GEOALIGN_SESSION_MINUTES": bad})


# admin actions check the role themselves

ADMIN_CALLS = {
    "users_table": (),
    "add_user": ("intruder", ["admin"], []),
    "update_user": ("root", ["reviewer"], [], False),
    "reset_user_password": ("root",),
    "regions_table": (),
    "tags_table": (),
    "add_vocabulary_tag": ("sneaky", "Sneaky"),
    "remove_vocabulary_tag": ("sneaky",),
}


def test_every_admin_action_is_listed_here():
    public = {n for n, f in inspect.getmembers(admin, inspect.isfunction) if f.__module__ == admin.__name__}
    assert public == set(ADMIN_CALLS)


@pytest.mark.parametrize("name", sorted(ADMIN_CALLS))
def test_admin_actions_refuse_non_admins(engine, name):
    login_as(engine, "root", roles=["admin"])
    with session_scope(engine) as s:
        admin.add_vocabulary_tag(s, login_as(engine, "boss", roles=["admin"]), "sneaky", "Sneaky")
    for actor in (login_as(engine, "rev"), login_as(engine, "eng", roles=["engineer", "lead", "reviewer"])):
        with session_scope(engine) as s, pytest.raises(PermissionDenied, match="lacks the role admin"):
            getattr(admin, name)(s, actor, *ADMIN_CALLS[name])
    with session_scope(engine) as s, pytest.raises(AuthError, match="log in"):
        getattr(admin, name)(s, None, *ADMIN_CALLS[name])
    root = _row(engine, "root")
    assert root.is_active and root.session_epoch == 0 and _row(engine, "intruder") is None


# 3. user text on the admin page and in the sidebar


def _admin_page():
    from ui.pages import admin as admin_page

    admin_page.render()


def _html(markdown: str) -> str:
    return MarkdownIt().render(markdown)


def _markdown_shown(at: AppTest) -> list[str]:
    """Everything the page passed to an element that renders Markdown, as HTML."""
    bodies = [e.value for kind in ("success", "error", "warning", "info", "caption", "markdown")
              for e in at.get(kind)]
    return [_html(b) for b in bodies + [b.label for b in at.button]]


def test_admin_creates_and_resets_a_user_with_braces_in_the_name(loaded):
    at = AppTest.from_function(_admin_page, default_timeout=30)
    at.session_state["geoalign_user"] = login_as(loaded, "root", roles=["admin"])
    at.run()
    at.text_input(key="admin_new_name").input("bob{0}")
    next(b for b in at.button if b.label == "Add user").click()
    at.run()
    assert not at.exception and "Created bob{0}. Password (shown once):" in _html(at.success[0].value)
    assert _attempt(loaded, "bob{0}", at.code[0].value) is None  # the password shown is the one stored
    at.run()  # the users list was read before the form added bob{0}
    at.selectbox(key="admin_edit_user").set_value("bob{0}")
    at.button(key="admin_reset").click()
    at.run()
    assert not at.exception and "New password for bob{0} (shown once):" in _html(at.success[0].value)
    assert _attempt(loaded, "bob{0}", at.code[0].value) is None


@pytest.mark.parametrize("name", ["![x](http://e/x.png)", "**bold**"])
def test_usernames_are_not_rendered_as_markdown(loaded, name):
    at = AppTest.from_function(_admin_page, default_timeout=30)
    at.session_state["geoalign_user"] = login_as(loaded, "root", roles=["admin"])
    at.run()
    shown = []
    for _ in range(2):  # created, then refused with an error quoting the name
        at.text_input(key="admin_new_name").input(name)
        next(b for b in at.button if b.label == "Add user").click()
        at.run()
        assert not at.exception
        shown += _markdown_shown(at)
    at.selectbox(key="admin_edit_user").set_value(name)
    at.button(key="admin_reset").click()
    at.run()
    assert not at.exception and at.success
    shown += _markdown_shown(at)
    assert sum(name in h for h in shown) >= 4  # created, already exists, the reset button, the new password
    assert not any("<img" in h or "<strong>bold" in h or "<a " in h for h in shown), shown

    with session_scope(loaded) as s:
        current = login(s, name, at.code[0].value)
    app = AppTest.from_file(APP, default_timeout=30)
    app.session_state["geoalign_user"] = current
    app.run()
    caption = _html(app.sidebar.caption[0].value)
    assert name in caption and "<img" not in caption and "<strong>bold" not in caption


def _rounds_page():
    from ui.pages import rounds as rounds_page

    rounds_page.render()


def test_rounds_page_refusal_quotes_the_username_as_text(loaded):
    at = AppTest.from_function(_rounds_page, default_timeout=30)
    at.session_state["geoalign_user"] = login_as(loaded, "**bold** ![x](http://e/x.png)")
    at.run()
    shown = _html(at.error[0].value)
    assert "**bold** ![x](http://e/x.png) lacks the role" in shown and "<strong>" not in shown
    assert "<img" not in shown


def _dashboard_page():
    from ui.pages import dashboard as dashboard_page

    dashboard_page.render()


def test_dashboard_flags_reviewers_by_name_as_text(loaded, monkeypatch):
    import rewards.dashboard
    from rewards.quality import reviewer_quality_from

    # flag everyone with a decisive vote, so the warning naming reviewers appears on a small fixture
    monkeypatch.setattr(rewards.dashboard, "reviewer_quality_from",
                        partial(reviewer_quality_from, min_decisive=1, max_position_p=1.01))
    ids = lineage(loaded)
    name = "**rev** ![x](http://e/x.png)"
    cast(loaded, login_as(loaded, name, regions=["en-GB-leeds"]), ids, "v2", "base", ["win", "loss"])
    at = AppTest.from_function(_dashboard_page, default_timeout=60)
    at.session_state["geoalign_user"] = login_as(loaded, "lead", roles=("lead",))
    at.run()
    warning = _html(next(w.value for w in at.warning if "flagged" in w.value))
    assert name in warning and "<strong>" not in warning and "<img" not in warning
