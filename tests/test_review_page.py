"""The Review page in AppTest: imported text is shown as typed, and a stale tab's buttons act on the pair it showed."""

import json
from pathlib import Path

from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from collect.review import submit_vote
from db.models import Assignment, Ranking, Vote
from db.session import session_scope
from tests.conftest import lineage, load_mini, login_as, make_pairs

APP = str(Path(__file__).resolve().parent.parent / "app.py")
EVIL = "![x](http://e/x.png)"


def _login(username: str, password: str = "long-password-1") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(password)
    next(b for b in at.button if b.label == "Log in").click()
    return at.run()


def test_region_name_and_climate_render_as_text(engine, mini_data):
    path = mini_data / "en-GB-leeds" / "region.json"
    region = json.loads(path.read_text())
    region |= {"name": EVIL, "climate_by_month": {m: "[click](http://e/)" for m in region["climate_by_month"]}}
    path.write_text(json.dumps(region))
    load_mini(engine, mini_data, ("en-GB-leeds",))
    make_pairs(engine, "en-GB-leeds", 1)
    login_as(engine, "lee", regions=["en-GB-leeds"])
    at = _login("lee")
    assert at.title[0].value == "Review"
    shown = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert any(r"\!\[x\]\(http\:\/\/e\/x\.png\)" in v for v in shown)  # escaped: shown literally
    assert any(r"\[click\]\(http\:\/\/e\/\)" in v for v in shown)
    assert not any(EVIL in v or "[click](" in v for v in shown)  # no live image or link syntax


def test_a_stale_tab_skip_never_skips_a_pair_it_did_not_show(loaded):
    make_pairs(loaded, "en-GB-leeds", 3)
    user = login_as(loaded, "lee", regions=["en-GB-leeds"])
    at = _login("lee")
    with session_scope(loaded) as s:
        (shown,) = s.scalars(select(Assignment.id).where(Assignment.user_id == user.id)).all()
        submit_vote(s, user, shown, "left")  # voted in another tab; this one still shows the pair
    next(b for b in at.button if b.label == "Skip this pair").click()
    at = at.run()
    assert "already voted" in at.error[0].value
    with session_scope(loaded) as s:
        assert not s.scalars(select(Assignment.id).where(Assignment.skipped)).all()


def test_the_key_script_survives_the_html_sanitizer():
    """st.html runs our script only if DOMPurify keeps it, and DOMPurify drops a <script> whose text holds "<" before
    a letter or "/" (its mXSS guard): the key listener would then silently never load."""
    import re

    from ui.keyboard import SCRIPT

    assert "geoalignReviewKeys" in SCRIPT and not re.search(r"<[/\w]", SCRIPT)


def test_rank_mode_shows_k_outputs_and_stores_one_ranking(loaded, monkeypatch):
    monkeypatch.setenv("GEOALIGN_RANK_K", "3")
    monkeypatch.setenv("GEOALIGN_GOLD_RATE", "0")
    monkeypatch.setenv("GEOALIGN_SCHEDULER_TTL", "0")
    lineage(loaded, samples=2, prompts=3)
    login_as(loaded, "rita", regions=["en-GB-leeds"])
    at = _login("rita")
    assert [c.value for c in at.caption if c.value.startswith("OUTPUT")] == ["OUTPUT A", "OUTPUT B", "OUTPUT C"]
    submit = next(b for b in at.button if b.label.startswith("Submit ranking"))
    at.radio(key=next(r.key for r in at.radio if r.key.endswith("_rank_A"))).set_value(1)
    submit.click()
    at = at.run()
    assert "missing: B, C" in at.warning[0].value.replace("\\", "")  # nothing stored until every output has a rank
    with session_scope(loaded) as s:
        assert s.scalar(select(func.count()).select_from(Ranking)) == 0
    for label, rank in (("A", 1), ("B", 2), ("C", 2)):
        at.radio(key=next(r.key for r in at.radio if r.key.endswith(f"_rank_{label}"))).set_value(rank)
    next(b for b in at.button if b.label.startswith("Submit ranking")).click()
    at = at.run()
    with session_scope(loaded) as s:
        (ranking,) = s.scalars(select(Ranking)).all()
        assert sorted(ranking.ranks) == [1, 2, 2]
        votes = s.scalars(select(Vote).where(Vote.ranking_id == ranking.id)).all()
        assert len(votes) == 3 and sorted(v.choice.value for v in votes).count("tie") == 1
