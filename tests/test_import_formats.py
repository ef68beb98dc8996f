"""Imports of every kind and format: preferences in three layouts, prompts only, Parquet and HF directories, PII."""

import json

import pytest
from datasets import Dataset, DatasetDict
from sqlalchemy import func, select

from collect.ingest import IMPORT_USER, import_file
from db.errors import ValidationError
from db.models import Base, Generation, Pair, Prompt, User, Vote
from db.session import session_scope
from tests.conftest import write_jsonl

PREFS = [
    {"prompt": "Ad for a Headingley chippy", "chosen": "Ey up! Proper fish and chips on Otley Road.",
     "rejected": "Awesome fries, y'all!", "strength": "clear"},
    {"chosen": "\n\nHuman: Slogan for Kirkgate Market?\n\nAssistant: Leeds' larder since 1857.",
     "rejected": "\n\nHuman: Slogan for Kirkgate Market?\n\nAssistant: Shop till you drop, dude."},
    {"chosen": [{"role": "user", "content": "Email subject for a Roundhay café"},
                {"role": "assistant", "content": "Brew with a view: Roundhay's new terrace"}],
     "rejected": [{"role": "user", "content": "Email subject for a Roundhay café"},
                  {"role": "assistant", "content": "Fall flavors are here"}]},
]


def _counts(engine):
    with session_scope(engine) as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def test_preferences_in_three_layouts(loaded, tmp_path):
    path = write_jsonl(tmp_path / "prefs.jsonl", PREFS)
    with session_scope(loaded) as s:
        report = import_file(s, path, "preferences", region="en-GB-leeds", task_type="ad_copy")
    assert report.pairs_created == 3 and report.prompts_created == 3
    assert report.layouts == {"explicit": 1, "implicit": 1, "conversational": 1}
    with session_scope(loaded) as s:
        importer = s.scalar(select(User).where(User.username == IMPORT_USER))
        assert importer.is_system and not importer.is_active
        votes = s.scalars(select(Vote)).all()
        assert len(votes) == 3 and all(v.user_id == importer.id and v.source == "import" for v in votes)
        by_prompt = {}
        for v in votes:
            pair = s.get(Pair, v.pair_id)
            chosen = pair.generation_a if v.choice.value == "a" else pair.generation_b
            by_prompt[pair.prompt.text] = (chosen.text, v.strength)
        assert by_prompt["Ad for a Headingley chippy"][0].startswith("Ey up!")
        assert by_prompt["Ad for a Headingley chippy"][1].value == "clear"
        assert by_prompt["\n\nHuman: Slogan for Kirkgate Market?\n\nAssistant:"][0] == " Leeds' larder since 1857."
        assert by_prompt["Email subject for a Roundhay café"][0] == "Brew with a view: Roundhay's new terrace"


def test_preference_reimport_is_a_no_op(loaded, tmp_path):
    path = write_jsonl(tmp_path / "prefs.jsonl", PREFS + PREFS[:1])  # a repeated row inside the file too
    with session_scope(loaded) as s:
        first = import_file(s, path, "preferences", region="en-GB-leeds", task_type="ad_copy")
    assert (first.pairs_created, first.duplicates_skipped) == (3, 1)
    counts = _counts(loaded)
    with session_scope(loaded) as s:
        again = import_file(s, path, "preferences", region="en-GB-leeds", task_type="ad_copy")
    assert (again.pairs_created, again.duplicates_skipped) == (0, 4)
    assert {k: v for k, v in _counts(loaded).items() if k != "audit_events"} == \
        {k: v for k, v in counts.items() if k != "audit_events"}


def test_dry_run_is_exact_and_writes_nothing(loaded, tmp_path):
    path = write_jsonl(tmp_path / "prefs.jsonl", PREFS)
    with session_scope(loaded) as s:
        import_file(s, path, "preferences", region="en-GB-leeds", task_type="ad_copy")
    counts = _counts(loaded)
    more = write_jsonl(tmp_path / "more.jsonl", PREFS + [{"prompt": "New brief", "chosen": "x y", "rejected": "z w"}])
    with session_scope(loaded) as s:
        report = import_file(s, more, "preferences", region="en-GB-leeds", task_type="ad_copy", dry_run=True)
    assert (report.pairs_created, report.duplicates_skipped, report.prompts_created) == (1, 3, 1)
    assert _counts(loaded) == counts


def test_task_type_must_come_from_column_or_flag(loaded, tmp_path):
    path = write_jsonl(tmp_path / "prefs.jsonl", PREFS[:1])
    with pytest.raises(ValidationError, match="prefs.jsonl:1:task_type"):
        with session_scope(loaded) as s:
            import_file(s, path, "preferences", region="en-GB-leeds")


def test_prompts_only(loaded, tmp_path):
    path = write_jsonl(tmp_path / "briefs.jsonl", [
        {"prompt": f"Brief number {i} for Perth", "task_type": "social_post", "month": (i % 12) + 1} for i in range(20)
    ] + [{"prompt": "Brief number 0 for Perth", "task_type": "social_post"}])
    with session_scope(loaded) as s:
        report = import_file(s, path, "prompts", region="en-AU-perth")
    assert (report.prompts_created, report.duplicates_skipped) == (20, 1)
    assert report.splits["train"] + report.splits["val"] + report.splits["test"] == 20
    with session_scope(loaded) as s:
        assert s.scalar(select(Prompt.month).where(Prompt.text == "Brief number 5 for Perth")) == 6


def test_parquet_and_hf_directory(loaded, tmp_path):
    rows = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"], "region": "en-GB-leeds",
             "task_type": "ad_copy"} for p in PREFS[:1]] + [
        {"prompt": "Parquet brief", "chosen": "Chosen words", "rejected": "Rejected words", "region": "en-GB-leeds",
         "task_type": "email_subject"}]
    Dataset.from_list(rows).to_parquet(str(tmp_path / "p.parquet"))
    DatasetDict({"train": Dataset.from_list(rows[:1]), "test": Dataset.from_list(rows[1:])}).save_to_disk(
        str(tmp_path / "hf"))
    with session_scope(loaded) as s:
        assert import_file(s, tmp_path / "p.parquet", "preferences").pairs_created == 2
        assert import_file(s, tmp_path / "hf", "preferences").duplicates_skipped == 2
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValidationError, match="not a Hugging Face dataset"):
        with session_scope(loaded) as s:
            import_file(s, tmp_path / "plain", "preferences")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValidationError, match="bad.parquet: not a readable Parquet file"):
        with session_scope(loaded) as s:
            import_file(s, tmp_path / "bad.parquet", "preferences")


def test_pii_is_scrubbed_before_storing_and_only_counted(loaded, tmp_path):
    path = write_jsonl(tmp_path / "gold.jsonl", [
        {"task_type": "ad_copy", "prompt": "Ad for a Leeds florist",
         "completion": "Order at hello@leedsflowers.co.uk or call +44 113 496 0123. Card 4111 1111 1111 1111."},
    ])
    with session_scope(loaded) as s:
        report = import_file(s, path, "examples", region="en-GB-leeds")
    assert report.pii == {"EMAIL": 1, "PHONE": 1, "CARD": 1}
    text = json.dumps(report.as_dict())
    assert "leedsflowers" not in text and "496 0123" not in text and "4111" not in text
    with session_scope(loaded) as s:
        stored = s.scalar(select(Generation.text).limit(1))
        assert stored is None  # examples are not generations
        from db.models import Example

        ex = s.scalar(select(Example).where(Example.text.like("%[EMAIL]%")))
        assert "hello@" not in ex.text and "[PHONE]" in ex.text and "[CARD]" in ex.text
