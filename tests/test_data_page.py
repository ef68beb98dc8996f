"""The Data page's logic (upload → import report, export → download bytes) and the page itself in AppTest."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from streamlit.testing.v1 import AppTest

from collect.auth import CurrentUser
from collect.datasets import DatasetFilter
from db.errors import PermissionDenied, ValidationError
from tests.conftest import login_as
from ui.pages.data import export_bytes, import_upload, problems_frame

GOLD = "\n".join(json.dumps({"task_type": "ad_copy", "prompt": f"Upload brief {i}", "completion": f"Ey up copy {i}",
                             "tags": ["local_idiom"]}) for i in range(5)).encode()


ENGINEER = CurrentUser(id=0, username="eng", roles=frozenset({"engineer"}), regions=(), region_ids=(),
                       expires_at=datetime.now(timezone.utc) + timedelta(hours=1))


def test_upload_dry_run_then_import(loaded):
    dry = import_upload(ENGINEER, "gold.jsonl", GOLD, "examples", region="en-GB-leeds", dry_run=True)
    assert dry.dry_run and dry.examples_created == 5 and dry.file == "gold.jsonl"
    real = import_upload(ENGINEER, "gold.jsonl", GOLD, "examples", region="en-GB-leeds", dry_run=False)
    assert real.examples_created == 5
    again = import_upload(ENGINEER, "gold.jsonl", GOLD, "examples", region="en-GB-leeds", dry_run=False)
    assert (again.examples_created, again.duplicates_skipped) == (0, 5)


def test_upload_errors_become_a_table(loaded):
    with pytest.raises(ValidationError) as err:
        import_upload(ENGINEER, "bad.csv", b"prompt,completion\n,x\n", "examples", region="en-GB-leeds",
                      task_type="ad_copy")
    frame = problems_frame(err.value)
    assert frame.to_dict("records") == [{"file": frame["file"][0], "row": 2, "field": "prompt",
                                         "problem": "missing or empty"}]
    assert frame["file"][0].endswith("bad.csv")


def test_export_bytes(loaded):
    data, name, n = export_bytes(ENGINEER, "sft", DatasetFilter(), "jsonl")
    rows = [json.loads(line) for line in data.decode().splitlines()]
    assert name == "geoalign-sft.jsonl" and n == len(rows) == 24
    with pytest.raises(ValidationError, match="nothing to export"):
        export_bytes(ENGINEER, "preferences", DatasetFilter(), "jsonl")


def test_reviewers_cannot_import_or_export(loaded):
    reviewer = CurrentUser(**{**ENGINEER.__dict__, "roles": frozenset({"reviewer"})})
    with pytest.raises(PermissionDenied):
        import_upload(reviewer, "gold.jsonl", GOLD, "examples", region="en-GB-leeds")
    with pytest.raises(PermissionDenied):
        export_bytes(reviewer, "sft", DatasetFilter())


def _data_page():
    from ui.pages import data as data_page

    data_page.render()


def test_data_page_renders_import_and_export(loaded):
    at = AppTest.from_function(_data_page, default_timeout=30)
    at.session_state["geoalign_user"] = login_as(loaded, "eng", roles=["engineer"])
    at.run()
    assert not at.exception
    assert [t.label for t in at.tabs] == ["Import", "Export"]
    assert at.selectbox(key="data_region").options[1:] == ["en-AU-perth", "en-GB-leeds"]
    assert "nothing to export" in at.info[0].value  # no votes yet: the preferences export explains itself
    at.selectbox(key="export_what").select("sft").run()
    downloads = at.get("download_button")
    assert len(downloads) == 1 and "Download 24 rows" in downloads[0].proto.label
    at.multiselect(key="export_regions").select("en-AU-perth").run()
    assert "Download 12 rows" in at.get("download_button")[0].proto.label


def test_data_page_empty_state(engine):
    at = AppTest.from_function(_data_page, default_timeout=30)
    at.session_state["geoalign_user"] = login_as(engine, "eng", roles=["engineer"])
    at.run()
    assert not at.exception
    assert "No regions yet" in at.info[0].value
