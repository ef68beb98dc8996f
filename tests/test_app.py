"""The overview page (for engineers, leads and admins) shows counts per region or a clear empty state."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from db import migrate
from db.session import get_engine
from tests.conftest import login_as

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def test_overview_empty_state(home):
    migrate.upgrade(get_engine())
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["geoalign_user"] = login_as(get_engine(), "lea", roles=["lead"])
    at.run()
    assert not at.exception
    assert "geoalign demo" in at.info[0].value


def test_overview_shows_regions_and_waiting_pairs(home, mini_data):
    from collect.ingest import import_examples, import_regions
    from collect.tags import ensure_default_tags
    from db.session import session_scope

    engine = get_engine()
    migrate.upgrade(engine)
    with session_scope(engine) as s:
        ensure_default_tags(s)
        import_regions(s, mini_data / "en-GB-leeds" / "region.json")
        s.flush()
        import_examples(s, mini_data / "en-GB-leeds" / "examples.jsonl", region="en-GB-leeds")
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["geoalign_user"] = login_as(engine, "lea", roles=["lead"])
    at.run()
    assert not at.exception
    frame = at.dataframe[0].value
    assert frame["region"].tolist() == ["en-GB-leeds"] and frame["examples"].tolist() == [12]
    assert {m.label: m.value for m in at.metric}["Gold examples"] == "12"
