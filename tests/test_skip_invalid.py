"""``--skip-invalid``: an HH-shaped file with a few empty replies imports the rest and lists the rejects.

Anthropic's HH-RLHF harmless-base test split has 4 rows with an empty chosen reply among 2,312; all-or-nothing
would refuse the whole file for them.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from cli.main import main
from collect.auth import CurrentUser
from db.models import Base, Pair, Vote
from db.session import session_scope
from tests.conftest import login_as, write_jsonl
from tests.test_reward_only_import import hh_rows
from ui.pages.data import import_upload

EMPTY = (3, 11, 17, 29)  # 0-based rows whose chosen reply is empty, as in HH-RLHF


def hh_with_empty_replies(n: int = 30) -> list[dict]:
    rows = hh_rows(n)
    for i in EMPTY:
        rows[i]["chosen"] = rows[i]["chosen"][:rows[i]["chosen"].rindex("Assistant:") + len("Assistant:")]
    return rows


def _counts(engine) -> dict[str, int]:
    with session_scope(engine) as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def test_default_import_stays_all_or_nothing(loaded, tmp_path, capsys):
    path = write_jsonl(tmp_path / "hh.jsonl", hh_with_empty_replies())
    before = _counts(loaded)
    assert main(["import", "preferences", str(path), "--region", "en-GB-leeds", "--task-type", "ad_copy"]) == 2
    err = capsys.readouterr().err
    assert "4 problems in 30 rows, nothing imported" in err and "hh.jsonl:4:chosen" in err
    assert _counts(loaded) == before
    assert not list(tmp_path.glob("*.rejects.jsonl"))


def test_skip_invalid_imports_the_rest_and_writes_rejects_beside_the_report(loaded, tmp_path, capsys):
    path = write_jsonl(tmp_path / "hh.jsonl", hh_with_empty_replies())
    report = tmp_path / "out" / "report.json"
    report.parent.mkdir()
    assert main(["import", "preferences", str(path), "--region", "en-GB-leeds", "--task-type", "ad_copy",
                 "--skip-invalid", "--report-json", str(report)]) == 0
    out = capsys.readouterr().out
    rejects_file = report.with_name("report.rejects.jsonl")
    assert f"4 invalid rows skipped, listed in {rejects_file}" in out
    assert "imported 26 preference pairs" in out and "4 invalid rows skipped;" in out
    assert json.loads(report.read_text())["rejected"] == 4
    rejects = [json.loads(line) for line in rejects_file.read_text().splitlines()]
    assert [(r["row"], r["field"], r["reason"]) for r in rejects] == [
        (i + 1, "chosen", "empty after splitting off the prompt") for i in EMPTY]
    original = hh_with_empty_replies()
    assert [r["record"] for r in rejects] == [original[i] for i in EMPTY]  # the row as read, to fix and re-import
    with session_scope(loaded) as s:
        assert s.scalar(select(func.count()).select_from(Pair)) == 26
        assert s.scalar(select(func.count()).select_from(Vote)) == 26


def test_skip_invalid_lists_unreadable_lines_too(loaded, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "hh.jsonl"
    lines = [json.dumps(r) for r in hh_rows(5)]
    lines[1] = lines[1][:-10]  # a truncated line
    lines[3] = "[" * 5000 + "]" * 5000  # deeper than any parser should follow
    path.write_text("\n".join(lines) + "\n")
    assert main(["import", "preferences", str(path), "--region", "en-GB-leeds", "--task-type", "ad_copy",
                 "--skip-invalid", "--dry-run"]) == 0
    assert "would import 3 preference pairs" in capsys.readouterr().out
    rejects = [json.loads(line) for line in (tmp_path / "hh.jsonl.rejects.jsonl").read_text().splitlines()]
    assert [(r["row"], r["field"]) for r in rejects] == [(2, None), (4, None)]
    assert rejects[0]["line"] == lines[1] and "invalid JSON" in rejects[0]["reason"]
    assert rejects[1]["reason"] == "nested more than 32 levels deep"
    with session_scope(loaded) as s:
        assert s.scalar(select(func.count()).select_from(Pair)) == 0  # a dry run


ENGINEER = CurrentUser(id=0, username="eng", roles=frozenset({"engineer"}), regions=(), region_ids=(),
                       expires_at=datetime.now(timezone.utc) + timedelta(hours=1))
UPLOAD = "".join(json.dumps(r) + "\n" for r in hh_with_empty_replies()).encode()


def test_upload_with_skip_invalid_names_the_uploaded_file(loaded):
    report = import_upload(ENGINEER, "hh.jsonl", UPLOAD, "preferences", "en-GB-leeds", "ad_copy", dry_run=False,
                           skip_invalid=True)
    assert (report.pairs_created, report.rejected) == (26, 4)
    assert {r[0] for r in report.rejects} == {"hh.jsonl"}  # not the temporary path the upload was read from


def _data_page():
    from ui.pages import data as data_page

    data_page.render()


def test_data_page_skip_invalid_checkbox_imports_the_rest(loaded):
    at = AppTest.from_function(_data_page, default_timeout=30)
    at.session_state["geoalign_user"] = login_as(loaded, "eng", roles=["engineer"])
    at.run()
    at.file_uploader(key="data_upload").set_value(("hh.jsonl", UPLOAD, "application/jsonl")).run()
    at.selectbox(key="data_kind").select("preferences")
    at.selectbox(key="data_region").select("en-GB-leeds")
    at.selectbox(key="data_task").select("ad_copy").run()
    at.button(key="data_go").click().run()
    assert not at.exception
    assert "Nothing was imported" in at.error[0].value  # the default is all-or-nothing
    before = _counts(loaded)
    at.checkbox(key="data_skip_invalid").check().run()
    at.button(key="data_go").click().run()
    assert not at.exception and not at.error
    assert "4 invalid rows were skipped" in at.warning[0].value
    assert "imported 26 preference pairs" in at.success[0].value
    assert list(at.dataframe[0].value["row"]) == [i + 1 for i in EMPTY]
    download = [d for d in at.get("download_button") if d.key == "data_rejects_download"]
    assert len(download) == 1 and "hh.rejects.jsonl" in download[0].proto.label
    assert _counts(loaded)["pairs"] == before["pairs"] + 26
