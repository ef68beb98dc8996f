"""Pages in Streamlit's AppTest: login, role-based navigation, the Review flow, Admin actions."""

from pathlib import Path

from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from collect.auth import LOGIN_FAILED, MAX_FAILURES
from db.models import Assignment, User, Vote
from db.session import session_scope
from tests.conftest import login_as, make_pairs

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PASSWORD = "long-password-1"


def _login(username: str, password: str = PASSWORD) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(password)
    _button(at, "Log in").click()
    return at.run()


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _open_assignment(engine, username: str) -> int:
    with session_scope(engine) as s:
        uid = s.scalar(select(User.id).where(User.username == username))
        voted = select(Vote.id).where(Vote.pair_id == Assignment.pair_id, Vote.user_id == uid).exists()
        return s.scalar(select(Assignment.id).where(Assignment.user_id == uid, ~voted,
                                                    Assignment.skipped.is_(False)).order_by(Assignment.id.desc()))


def test_login_page_and_wrong_password(loaded):
    login_as(loaded, "lee", regions=["en-GB-leeds"])
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert [p for p in at.title] and at.title[0].value == "GeoAlign"
    at = _login("lee", "wrong password!")
    assert "Invalid username or password" in at.error[0].value
    assert "Review" not in [t.value for t in at.title]


def test_failed_logins_lock_the_account(loaded):
    login_as(loaded, "lee", regions=["en-GB-leeds"])
    for _ in range(MAX_FAILURES):
        _login("lee", "wrong password!")
    at = _login("lee")  # even the right password is refused while locked, with the message of any refusal
    assert at.error[0].value == LOGIN_FAILED.capitalize() and at.title[0].value == "GeoAlign"
    with session_scope(loaded) as s:
        assert s.scalar(select(User.locked_until).where(User.username == "lee")) is not None


def test_reviewer_votes_skips_and_undoes(loaded):
    make_pairs(loaded, "en-GB-leeds", 3)
    login_as(loaded, "lee", regions=["en-GB-leeds"])
    at = _login("lee")
    assert at.title[0].value == "Review"
    assert {m.label: m.value for m in at.metric} == {"Votes today": "0", "Pairs left": "3"}
    html = " ".join(str(e.value) for e in at.text)
    assert "Leeds copy" in html and "base" not in html  # outputs shown, model names never
    aid = _open_assignment(loaded, "lee")
    at.radio(key=f"review_{aid}_choice").set_value("both_bad")
    at.text_area(key=f"review_{aid}_rewrite").input("Ey up, a proper rewrite")
    at.radio(key=f"review_{aid}_rewrite_side").set_value("left")
    at.multiselect(key=f"review_{aid}_tags").select("tone_off")
    _button(at, "Submit vote").click()
    at = at.run()
    with session_scope(loaded) as s:
        vote = s.scalar(select(Vote))
        assert vote.choice.value == "both_bad" and vote.rewrite == "Ey up, a proper rewrite"
        assert [t.name for t in vote.tags] == ["tone_off"] and vote.seconds_taken is not None
    assert {m.label: m.value for m in at.metric} == {"Votes today": "1", "Pairs left": "2"}
    _button(at, "Skip this pair").click()
    at = at.run()
    assert {m.label: m.value for m in at.metric}["Pairs left"] == "1"
    _button(at, "Undo last vote").click()
    at = at.run()
    with session_scope(loaded) as s:
        assert s.scalar(select(func.count()).select_from(Vote)) == 0
    assert {m.label: m.value for m in at.metric} == {"Votes today": "0", "Pairs left": "2"}


def test_submit_without_choice_warns(loaded):
    make_pairs(loaded, "en-GB-leeds", 1)
    login_as(loaded, "lee", regions=["en-GB-leeds"])
    at = _login("lee")
    _button(at, "Submit vote").click()
    at = at.run()
    assert "Pick one of the four choices" in at.warning[0].value


def test_empty_queue(loaded):
    login_as(loaded, "lee", regions=["en-GB-leeds"])
    at = _login("lee")
    assert "All caught up" in at.success[0].value


def test_navigation_follows_roles(loaded):
    login_as(loaded, "lea", roles=["lead"])
    at = _login("lea")
    assert at.title[0].value == "GeoAlign"  # the overview, not the review page
    login_as(loaded, "boss", roles=["admin", "reviewer"], regions=["en-AU-perth"])
    at = _login("boss")
    assert at.title[0].value == "Review"
    _button(at, "Log out").click()
    at = at.run()
    assert at.text_input(key="login_username") is not None


def _admin_page():
    from ui.pages import admin as admin_page

    admin_page.render()


def test_admin_adds_a_user_and_others_are_refused(loaded):
    at = AppTest.from_function(_admin_page, default_timeout=30)
    at.session_state["geoalign_user"] = login_as(loaded, "root", roles=["admin"])
    at.run()
    assert at.title[0].value == "Admin" and not at.exception
    at.text_input(key="admin_new_name").input("newbie")
    at.multiselect(key="admin_new_regions").select("en-GB-leeds")
    _button(at, "Add user").click()
    at = at.run()
    assert "Created newbie. Password (shown once):" in at.success[0].value
    with session_scope(loaded) as s:
        user = s.scalar(select(User).where(User.username == "newbie"))
        assert user.role_names == {"reviewer"} and [r.code for r in user.regions] == ["en-GB-leeds"]

    refused = AppTest.from_function(_admin_page, default_timeout=30)
    refused.session_state["geoalign_user"] = login_as(loaded, "lee", regions=["en-GB-leeds"])
    refused.run()
    assert refused.exception and "lacks the role admin" in refused.exception[0].value


def test_outputs_render_as_plain_text(loaded):
    outputs = ("**Bold** <b>tag</b> [link](http://x)", "# Heading\n<script>x</script>")
    make_pairs(loaded, "en-GB-leeds", 1, texts=[outputs])
    login_as(loaded, "lee", regions=["en-GB-leeds"])
    at = _login("lee")
    texts = [t.value for t in at.text]
    assert "**Bold** <b>tag</b> [link](http://x)" in texts and "# Heading\n<script>x</script>" in texts
    assert not any("Bold" in m.value or "Heading" in m.value for m in at.markdown)
