"""Importers: validated, all-or-nothing, deduplicated, stratified splits."""

import csv
import json
from collections import Counter

import pytest
from sqlalchemy import func, select

from collect.ingest import import_examples, import_regions, read_records
from collect.splits import SPLIT_SHARES, assign_splits
from db.errors import NotFound, ValidationError
from db.models import Example, Prompt, Region, Split, example_tags
from db.session import session_scope
from tests.conftest import load_mini, write_jsonl


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


# ------------------------------------------------------------------ a brief's split follows its content across regions

LEEDS, PERTH = "en-GB-leeds", "en-AU-perth"


def _brief_rows(region: str, texts: list[str], task_type: str = "ad_copy") -> list[dict]:
    return [{"region": region, "task_type": task_type, "prompt": t, "completion": f"{region} copy for {t}"}
            for t in texts]


def _stored_splits(engine) -> dict[tuple[str, str], Split]:
    """(region code, content hash) -> split of every stored prompt."""
    with session_scope(engine) as s:
        rows = s.execute(select(Region.code, Prompt.content_hash, Prompt.split).join(Region)).all()
    return {(code, h): split for code, h, split in rows}


def _splits_per_brief(engine) -> dict[str, set[Split]]:
    out: dict[str, set[Split]] = {}
    for (_, h), split in _stored_splits(engine).items():
        out.setdefault(h, set()).add(split)
    return out


def _stratum(engine, region: str, task_type: str = "ad_copy") -> Counter:
    with session_scope(engine) as s:
        return Counter(s.scalars(select(Prompt.split).join(Region).where(Region.code == region,
                                                                          Prompt.task_type == task_type)))


def test_same_brief_in_two_regions_of_one_file_gets_one_split(any_engine, mini_data, tmp_path):
    engine = load_mini(any_engine, mini_data)
    shared = [f"Shared public brief {i}" for i in range(40)]
    rows = (_brief_rows(LEEDS, shared + [f"Leeds-only brief {i}" for i in range(10)])
            + _brief_rows(PERTH, shared + [f"Perth-only brief {i}" for i in range(10)]))
    with session_scope(engine) as s:
        report = import_examples(s, write_jsonl(tmp_path / "both.jsonl", rows))
    assert report.prompts_created == 100 and sum(report.splits.values()) == 100

    stored = _stored_splits(engine)
    shared_hashes = {h for (code, h) in stored if code == LEEDS} & {h for (code, h) in stored if code == PERTH}
    assert len(shared_hashes) == 40
    assert all(stored[(LEEDS, h)] == stored[(PERTH, h)] for h in shared_hashes)
    assert {stored[(LEEDS, h)] for h in shared_hashes} == {Split.train, Split.val, Split.test}
    assert all(len(splits) == 1 for splits in _splits_per_brief(engine).values())
    for region in (LEEDS, PERTH):  # 3 stored + 50 new: each stratum stays near 80/10/10
        counts = _stratum(engine, region)
        assert sum(counts.values()) == 53
        assert all(abs(counts[Split(k)] - share * 53) <= 2 for k, share in SPLIT_SHARES.items())


@pytest.mark.parametrize("first,second", [(LEEDS, PERTH), (PERTH, LEEDS)])
def test_brief_imported_into_a_second_region_takes_its_stored_split(loaded, tmp_path, first, second):
    # the second region's stratum is in a different state, so splitting it on its own would disagree
    with session_scope(loaded) as s:
        import_examples(s, write_jsonl(tmp_path / "own.jsonl", _brief_rows(second, [f"Own {i}" for i in range(7)])))
    shared = [f"Public dataset brief {i}" for i in range(30)]
    with session_scope(loaded) as s:
        import_examples(s, write_jsonl(tmp_path / "a.jsonl", _brief_rows(first, shared)))
    before = _stored_splits(loaded)
    second_counts = _stratum(loaded, second)
    with session_scope(loaded) as s:
        report = import_examples(s, write_jsonl(tmp_path / "b.jsonl", _brief_rows(second, shared)))

    stored = _stored_splits(loaded)
    assert {k: v for k, v in stored.items() if k in before} == before  # nothing stored moved
    hashes = sorted(h for (code, h) in stored if code == second and (first, h) in stored)
    assert len(hashes) == 30 and report.prompts_created == 30
    assert [stored[(second, h)] for h in hashes] == [stored[(first, h)] for h in hashes]
    assert Split.test in {stored[(first, h)] for h in hashes}
    assert report.splits == Counter({k.value: n for k, n in Counter(stored[(first, h)] for h in hashes).items()})
    # the old per-region rule would have put some of these briefs in another split than in the first region
    per_region = assign_splits(hashes, {k.value: n for k, n in second_counts.items()})
    assert any(per_region[h] != stored[(first, h)].value for h in hashes)


def test_splits_never_move_on_reimport(loaded, tmp_path):
    shared = [f"Shared brief {i}" for i in range(25)]
    leeds = write_jsonl(tmp_path / "leeds.jsonl", _brief_rows(LEEDS, shared))
    both = write_jsonl(tmp_path / "both.jsonl", _brief_rows(PERTH, shared) + _brief_rows(LEEDS, ["Leeds extra"]))
    with session_scope(loaded) as s:
        import_examples(s, leeds)
        import_examples(s, both)
    before = _stored_splits(loaded)
    more = write_jsonl(tmp_path / "more.jsonl", _brief_rows(PERTH, shared[:5] + [f"New {i}" for i in range(20)])
                       + _brief_rows(LEEDS, [f"New {i}" for i in range(20)]))
    with session_scope(loaded) as s:
        again = [import_examples(s, both), import_examples(s, leeds), import_examples(s, more)]
    assert [r.prompts_created for r in again] == [0, 0, 20 + 20]
    after = _stored_splits(loaded)
    assert {k: after[k] for k in before} == before
    assert all(len(splits) == 1 for splits in _splits_per_brief(loaded).values())


def test_distinct_briefs_keep_each_stratum_eighty_ten_ten(loaded, tmp_path):
    rows = (_brief_rows(LEEDS, [f"Leeds subject {i}" for i in range(97)], "email_subject")
            + _brief_rows(PERTH, [f"Perth subject {i}" for i in range(97)], "email_subject"))
    with session_scope(loaded) as s:
        import_examples(s, write_jsonl(tmp_path / "distinct.jsonl", rows))
    for region in (LEEDS, PERTH):  # 3 stored train + 97 new
        assert _stratum(loaded, region, "email_subject") == {Split.train: 80, Split.val: 10, Split.test: 10}


def test_briefs_stored_in_conflicting_splits_give_new_copies_the_earliest(loaded, mini_data, tmp_path, caplog):
    region = json.loads((mini_data / LEEDS / "region.json").read_text()) | {"code": "en-GB-york", "name": "York"}
    (tmp_path / "york.json").write_text(json.dumps(region))
    with session_scope(loaded) as s:
        import_regions(s, tmp_path / "york.json")
        import_examples(s, write_jsonl(tmp_path / "a.jsonl", _brief_rows(LEEDS, ["Old brief"])))
        import_examples(s, write_jsonl(tmp_path / "b.jsonl", _brief_rows(PERTH, ["Old brief"])))
        # data split before splits followed content: the Perth copy was put in test, the Leeds one in train
        leeds_copy, perth_copy = s.scalars(select(Prompt).where(Prompt.text == "Old brief").order_by(Prompt.id))
        leeds_copy.split, perth_copy.split = Split.train, Split.test
    with session_scope(loaded) as s:
        import_examples(s, write_jsonl(tmp_path / "c.jsonl", _brief_rows("en-GB-york", ["Old brief"])))
    assert _stored_splits(loaded)[("en-GB-york", leeds_copy.content_hash)] == Split.train
    assert "1 briefs were stored in different splits" in caplog.text


# ------------------------------------------------------------------ audit (issue 15): totality and storable text


def test_deep_nesting_is_refused_naming_the_row(tmp_path):
    jsonl = tmp_path / "deep.jsonl"
    jsonl.write_text('{"prompt": "ok"}\n{"prompt": ' + "[" * 5000 + "]" * 5000 + "}\n")
    with pytest.raises(ValidationError) as err:  # was a raw RecursionError
        read_records(jsonl)
    assert err.value.problems == [(str(jsonl), 2, None, "nested more than 32 levels deep")]
    shallow_but_too_deep = tmp_path / "forty.jsonl"
    shallow_but_too_deep.write_text('{"tags": ' + "[" * 40 + "]" * 40 + "}\n")
    with pytest.raises(ValidationError, match="forty.jsonl:1:-: nested more than 32 levels deep"):
        read_records(shallow_but_too_deep)
    whole = tmp_path / "deep.json"
    whole.write_text('[\n{"prompt": "ok"},\n{"prompt": ' + "[" * 5000 + "]" * 5000 + "}\n]")
    with pytest.raises(ValidationError, match=r"deep.json: line 3: nested more than 32 levels deep"):
        read_records(whole)


def test_a_number_too_long_for_python_is_refused_naming_the_row(tmp_path):
    jsonl = tmp_path / "long.jsonl"
    jsonl.write_text('{"prompt": "ok"}\n{"month": ' + "1" * 5000 + "}\n")
    with pytest.raises(ValidationError) as err:  # was a raw ValueError (int() refuses over 4,300 digits)
        read_records(jsonl)
    assert err.value.problems == [(str(jsonl), 2, None, "holds a number with more than 4300 digits")]
    whole = tmp_path / "long.json"
    whole.write_text('[{"prompt": "a"},\n {"month": ' + "1" * 5000 + "}]")
    with pytest.raises(ValidationError, match="long.json: line 2: holds a number with more than 4300 digits"):
        read_records(whole)


@pytest.mark.parametrize("month", ["²", "٣", "1" * 5000, "１２"])
def test_unicode_and_overlong_digits_are_not_a_month(loaded, tmp_path, month):
    path = tmp_path / "months.csv"  # str.isdigit() accepts all of these; int() refuses "²" and 5,000 digits
    path.write_text(f"task_type,prompt,completion,month\nad_copy,Brief,Copy,{month}\n", encoding="utf-8")
    before = _counts(loaded)
    with pytest.raises(ValidationError) as err:
        with session_scope(loaded) as s:
            import_examples(s, path, region="en-GB-leeds")
    assert [(p[1], p[2]) for p in err.value.problems] == [(2, "month")]
    assert _counts(loaded) == before


@pytest.mark.parametrize(("cell", "shown"), [("Caf\x00e", "a control character (U+0000) at character 4"),
                                             ("\x1b[31mRed\x1b[0m", "a control character (U+001B) at character 1"),
                                             ("Tab\tand\r\nbreaks stay", None)])
def test_control_characters_are_refused_naming_file_row_and_field(any_engine, mini_data, tmp_path, cell, shown):
    load_mini(any_engine, mini_data, ("en-GB-leeds",))
    path = tmp_path / "nul.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["task_type", "prompt", "completion"], ["ad_copy", "Fine brief", "Fine copy"],
                                 ["ad_copy", "Brief two", cell]])
    before = _counts(any_engine)
    if shown is None:
        with session_scope(any_engine) as s:
            assert import_examples(s, path, region="en-GB-leeds").examples_created == 2
        return
    with pytest.raises(ValidationError) as err:  # PostgreSQL used to fail at the write: DataError, no row or field
        with session_scope(any_engine) as s:
            import_examples(s, path, region="en-GB-leeds")
    assert err.value.problems == [(str(path), 3, "completion", f"holds {shown}; remove it")]
    assert _counts(any_engine) == before


def test_lone_surrogates_are_refused_before_the_database(any_engine, mini_data, tmp_path):
    load_mini(any_engine, mini_data, ("en-GB-leeds",))
    path = tmp_path / "surrogate.jsonl"
    path.write_text('{"task_type": "ad_copy", "prompt": "Brief", "completion": "Broken \\ud83d emoji"}\n')
    before = _counts(any_engine)
    with pytest.raises(ValidationError, match=r"surrogate.jsonl:1:completion: holds an unpaired surrogate \(U\+D83D"):
        with session_scope(any_engine) as s:
            import_examples(s, path, region="en-GB-leeds")
    assert _counts(any_engine) == before


def test_duplicate_csv_headers_are_refused(loaded, tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("task_type,prompt,completion,prompt\nad_copy,First brief,Copy,Second brief\n")
    before = _counts(loaded)
    with pytest.raises(ValidationError) as err:  # used to keep "Second brief" silently
        with session_scope(loaded) as s:
            import_examples(s, path, region="en-GB-leeds")
    assert "dup.csv: line 1: duplicate column 'prompt' (2 times)" in str(err.value)
    assert err.value.problems == [(str(path), 1, "prompt", "column appears 2 times")]
    assert _counts(loaded) == before


def test_json_lines_split_only_at_newlines(loaded, tmp_path):
    # U+2028 and U+0085 may stand unescaped inside a JSON string; str.splitlines() used to cut the row there
    path = tmp_path / "seps.jsonl"
    path.write_text(json.dumps({"task_type": "ad_copy", "prompt": "Line\u2028separator", "completion": "Copy"},
                               ensure_ascii=False) + "\r\n", encoding="utf-8")
    with session_scope(loaded) as s:
        assert import_examples(s, path, region="en-GB-leeds").examples_created == 1


def test_deeply_nested_tags_in_a_csv_cell_are_a_problem(loaded, tmp_path):
    path = tmp_path / "tags.csv"
    path.write_text("task_type,prompt,completion,tags\nad_copy,Brief,Copy," + "[" * 5000 + "\n")
    with pytest.raises(ValidationError) as err:
        with session_scope(loaded) as s:
            import_examples(s, path, region="en-GB-leeds")
    assert [(p[1], p[2]) for p in err.value.problems] == [(2, "tags")]


def test_import_errors_exit_2_with_one_line(loaded, tmp_path, capsys):
    from cli.main import main

    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 5000 + "]" * 5000 + "\n")
    assert main(["import", "examples", str(path), "--region", "en-GB-leeds"]) == 2  # was a traceback, exit 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "deep.jsonl:1:-: nested more than 32 levels deep" in err
