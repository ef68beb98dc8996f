"""Importers: validated, all-or-nothing, deduplicated, stratified splits."""

import json
from collections import Counter

import pytest
from sqlalchemy import func, select

from collect.ingest import import_examples, import_regions, read_records
from db.errors import NotFound, ValidationError
from db.models import Example, Prompt, Region, Split, example_tags
from db.session import session_scope
from tests.conftest import write_jsonl


def _counts(engine):
    with session_scope(engine) as s:
        return {m.__name__: s.scalar(select(func.count()).select_from(m)) for m in (Region, Prompt, Example)}


def test_import_creates_prompts_examples_tags_and_splits(loaded):
    with session_scope(loaded) as s:
        assert s.scalar(select(func.count()).select_from(Example)) == 24
        assert s.scalar(select(func.count()).select_from(example_tags)) > 24
        # strata of 3 (region x task type): 10% of 3 rounds to zero, so val/test stay empty until a stratum grows
        assert Counter(s.scalars(select(Prompt.split))) == {Split.train: 24}
        leeds = s.scalar(select(Region).where(Region.code == "en-GB-leeds"))
        assert leeds.climate_by_month["July"] and "Headingley" in leeds.local_terms
        ex = s.scalar(select(Example).join(Prompt).where(Prompt.text.like("%porridge%")))
        assert {t.name for t in ex.tags} == {"local_idiom", "place_name", "seasonal"}
        assert ex.prompt.month == 1


def test_reimport_skips_duplicates_and_keeps_splits(loaded, mini_data):
    with session_scope(loaded) as s:
        before = dict(s.execute(select(Prompt.content_hash, Prompt.split)).all())
        report = import_examples(s, mini_data / "en-GB-leeds" / "examples.jsonl", region="en-GB-leeds")
    assert (report.examples_created, report.duplicates_skipped, report.prompts_created) == (0, 12, 0)
    with session_scope(loaded) as s:
        assert dict(s.execute(select(Prompt.content_hash, Prompt.split)).all()) == before


def test_one_bad_row_imports_nothing_and_names_file_row_field(loaded, tmp_path):
    before = _counts(loaded)
    rows = [
        {"task_type": "ad_copy", "prompt": "Fresh brief", "completion": "Fresh copy", "tags": ["seasonal"]},
        {"task_type": "billboard", "prompt": "Another brief", "completion": "More copy"},
        {"task_type": "social_post", "prompt": "", "completion": "x", "tags": ["not_a_tag"], "month": 13},
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValidationError) as err:
        with session_scope(loaded) as s:
            import_examples(s, path, region="en-GB-leeds")
    problems = {(row, fld) for _, row, fld, _ in err.value.problems}
    assert problems == {(2, "task_type"), (3, "prompt"), (3, "tags"), (3, "month")}
    assert "bad.jsonl:2:task_type" in str(err.value)
    assert _counts(loaded) == before


def test_growing_stratum_reaches_val_and_test(loaded, tmp_path):
    path = write_jsonl(tmp_path / "more.jsonl", [
        {"task_type": "ad_copy", "prompt": f"Leeds brief {i}", "completion": f"Leeds copy {i}"} for i in range(17)
    ])
    with session_scope(loaded) as s:
        import_examples(s, path, region="en-GB-leeds")
        leeds_ads = Counter(s.scalars(select(Prompt.split).join(Region).where(
            Region.code == "en-GB-leeds", Prompt.task_type == "ad_copy")))
    assert leeds_ads == {Split.train: 16, Split.val: 2, Split.test: 2}


def test_dry_run_reports_without_writing(loaded, tmp_path):
    before = _counts(loaded)
    path = write_jsonl(tmp_path / "new.jsonl", [
        {"task_type": "email_subject", "prompt": f"Brief {i}", "completion": f"Subject {i}"} for i in range(10)
    ])
    with session_scope(loaded) as s:
        report = import_examples(s, path, region="en-AU-perth", dry_run=True)
        s.rollback()
    assert report.examples_created == 10 and report.prompts_created == 10 and report.dry_run
    assert sum(report.splits[k] for k in ("train", "val", "test")) == 10
    assert _counts(loaded) == before


def test_region_must_exist_and_agree(loaded, tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"region": "en-GB-leeds", "task_type": "ad_copy", "prompt": "p",
                                               "completion": "c"}])
    with session_scope(loaded) as s:
        with pytest.raises(NotFound, match="unknown region 'xx-YY-nowhere'"):
            import_examples(s, path, region="xx-YY-nowhere")
        with pytest.raises(ValidationError, match="contradicts --region"):
            import_examples(s, path, region="en-AU-perth")


def test_csv_with_semicolon_tags(loaded, tmp_path):
    path = tmp_path / "gold.csv"
    path.write_text("task_type,prompt,completion,tags,month\n"
                    "ad_copy,Brief for a Leeds deli,\"Ey up, deli fans: pies are back\",local_idiom;place_name,3\n",
                    encoding="utf-8")
    with session_scope(loaded) as s:
        report = import_examples(s, path, region="en-GB-leeds")
        ex = s.scalar(select(Example).where(Example.text.like("%pies are back%")))
        assert report.examples_created == 1 and {t.name for t in ex.tags} == {"local_idiom", "place_name"}


def test_unreadable_files_are_named(tmp_path):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(ValidationError, match=r"latin.jsonl: not UTF-8 \(invalid byte at line 2"):
        read_records(latin)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(ValidationError, match="broken.jsonl") as err:
        read_records(broken)
    assert err.value.problems[0][1] == 2
    with pytest.raises(NotFound, match="missing.jsonl: file not found"):
        read_records(tmp_path / "missing.jsonl")
    with pytest.raises(ValidationError, match="unsupported file type .txt"):
        (tmp_path / "x.txt").write_text("hi")
        read_records(tmp_path / "x.txt")


def test_region_validation(engine, tmp_path):
    path = tmp_path / "region.json"
    path.write_text(json.dumps({"code": "en-GB-x", "name": "X", "hemisphere": "east"}))
    with pytest.raises(ValidationError) as err:
        with session_scope(engine) as s:
            import_regions(s, path)
    fields = {fld for _, _, fld, _ in err.value.problems}
    assert {"locale", "climate_by_month", "local_terms", "hemisphere"} <= fields
    assert _counts(engine)["Region"] == 0


def test_region_reimport_updates_in_place(loaded, mini_data):
    path = mini_data / "en-GB-leeds" / "region.json"
    data = json.loads(path.read_text())
    data["profile"] = "Updated profile."
    path.write_text(json.dumps(data))
    with session_scope(loaded) as s:
        import_regions(s, path)
    with session_scope(loaded) as s:
        assert s.scalar(select(func.count()).select_from(Region)) == 2
        assert s.scalar(select(Region.profile).where(Region.code == "en-GB-leeds")) == "Updated profile."
