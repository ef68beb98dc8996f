"""Dataset builders (aggregation rules, held-out test split) and exports (formats, round trip)."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from datasets import load_from_disk
from sqlalchemy import select

from collect.accounts import create_user
from collect.datasets import DatasetFilter, preference_rows, sft_rows
from collect.export import write_rows
from collect.ingest import import_file
from db.errors import ValidationError
from db.models import Choice, Generation, ModelVersion, Pair, Prompt, Region, Side, Split, Strength, User, Vote
from db.session import session_scope
from tests.conftest import write_jsonl


def _pair(s, prompt, version_a, version_b, text_a="Copy A", text_b="Copy B"):
    ga = Generation(prompt_id=prompt.id, model_version_id=version_a.id, text=text_a, params={}, seed=0)
    gb = Generation(prompt_id=prompt.id, model_version_id=version_b.id, text=text_b, params={}, seed=0)
    s.add_all([ga, gb])
    s.flush()
    pair = Pair(prompt_id=prompt.id, region_id=prompt.region_id, generation_a_id=ga.id, generation_b_id=gb.id,
                model_a_id=version_a.id, model_b_id=version_b.id)
    s.add(pair)
    s.flush()
    return pair


@pytest.fixture
def voted(loaded):
    """Four pairs on train prompts of Leeds, voted by three reviewers, plus one pair on a test prompt."""
    with session_scope(loaded) as s:
        base = ModelVersion(name="base", base_model="m")
        v1 = ModelVersion(name="v1", base_model="m")
        s.add_all([base, v1])
        s.flush()
        users = [create_user(s, f"r{i}", "long-password-1", ["reviewer"], ["en-GB-leeds"]) for i in range(3)]
        leeds_train = (Prompt.split == Split.train) & (Region.code == "en-GB-leeds")
        prompts = s.scalars(select(Prompt).join(Region).where(leeds_train).order_by(Prompt.id)).all()[:4]
        majority, tie, both_bad, rewrite = (_pair(s, p, base, v1) for p in prompts)

        def vote(pair, user, choice, strength=None, rewrite_text=None):
            s.add(Vote(pair_id=pair.id, user_id=user.id, region_id=pair.region_id, choice=choice, strength=strength,
                       shown_left=Side.a, rewrite=rewrite_text))

        vote(majority, users[0], Choice.b, Strength.clear)
        vote(majority, users[1], Choice.b, Strength.slight)
        vote(majority, users[2], Choice.a, Strength.clear)
        vote(tie, users[0], Choice.a)
        vote(tie, users[1], Choice.b)
        vote(tie, users[2], Choice.tie)
        vote(both_bad, users[0], Choice.both_bad, rewrite_text="A proper Leeds rewrite")
        vote(rewrite, users[0], Choice.a, Strength.slight, rewrite_text="Even better, ey up")
        s.flush()
        ids = {"majority": majority.id, "tie": tie.id, "both_bad": both_bad.id, "rewrite": rewrite.id}
    return loaded, ids


def test_aggregation_rules(voted):
    engine, ids = voted
    with session_scope(engine) as s:
        rows, stats = preference_rows(s, prompt_format="raw")
    by_kind = {(r["pair_id"], r["kind"], r["rejected"]): r for r in rows}
    majority = by_kind[(ids["majority"], "vote", "Copy A")]
    assert (majority["chosen"], majority["chosen_model"], majority["rejected_model"]) == ("Copy B", "v1", "base")
    assert majority["num_votes"] == 3 and majority["agreement"] == pytest.approx(2 / 3, abs=1e-3)
    assert majority["margin"] == pytest.approx(2 / 3 * 0.75, abs=1e-3)  # mean of clear (1.0) and slight (0.5)
    assert (stats.ties_dropped, stats.both_bad, stats.pairs_kept, stats.votes) == (1, 1, 2, 8)
    assert not any(r["pair_id"] == ids["tie"] for r in rows)
    bad = sorted((r["chosen"], r["rejected"]) for r in rows if r["pair_id"] == ids["both_bad"])
    assert bad == [("A proper Leeds rewrite", "Copy A"), ("A proper Leeds rewrite", "Copy B")]
    rw = {(r["chosen"], r["rejected"], r["kind"]) for r in rows if r["pair_id"] == ids["rewrite"]}
    assert rw == {("Copy A", "Copy B", "vote"), ("Even better, ey up", "Copy A", "rewrite"),
                  ("Even better, ey up", "Copy B", "rewrite")}
    assert all(r["split"] == "train" and r["region"] == "en-GB-leeds" for r in rows)


def test_sft_rows_include_rewrites_and_format_prompts(voted):
    engine, _ = voted
    with session_scope(engine) as s:
        rows = sft_rows(s, prompt_format="text")
        chat = sft_rows(s)
        raw = sft_rows(s, prompt_format="raw")
        with pytest.raises(ValidationError, match="unknown prompt format 'model'"):
            sft_rows(s, prompt_format="model")
    rewrites = [r for r in rows if r["source"] == "rewrite"]
    assert {r["completion"] for r in rewrites} == {"A proper Leeds rewrite", "Even better, ey up"}
    assert all(r["prompt"].startswith("Region: ") and r["prompt"].endswith("Copy:\n") for r in rows)
    assert not any(r["prompt"].startswith("Region: ") for r in raw)
    assert {r["split"] for r in rows} == {"train"}
    # the default is TRL's conversational format: system context + brief, the copy as the assistant's turn
    assert len(chat) == len(rows)
    for text_row, chat_row, raw_row in zip(rows, chat, raw, strict=True):
        system, user = chat_row["prompt"]
        assert (system["role"], user["role"]) == ("system", "user")
        name, language = {"en-GB-leeds": ("Leeds (en-GB)", "British English"),
                          "en-AU-perth": ("Perth (en-AU)", "Australian English")}[chat_row["region"]]
        assert name in system["content"] and language in system["content"]
        assert user["content"] == raw_row["prompt"]
        assert chat_row["completion"] == [{"role": "assistant", "content": text_row["completion"]}]


def test_test_split_never_reaches_training(voted):
    engine, _ = voted
    with session_scope(engine) as s:
        for builder in (sft_rows, preference_rows):
            with pytest.raises(ValidationError, match="held out"):
                builder(s, DatasetFilter(splits=("train", "test")))
        audit = sft_rows(s, DatasetFilter(splits=("test",), allow_test=True))
        assert all(r["split"] == "test" for r in audit)


def test_filters_by_region_and_date(voted):
    engine, _ = voted
    with session_scope(engine) as s:
        assert preference_rows(s, DatasetFilter(regions=("en-AU-perth",)))[0] == []
        future = datetime.now(timezone.utc) + timedelta(days=1)
        assert preference_rows(s, DatasetFilter(since=future))[0] == []
        assert len(preference_rows(s, DatasetFilter(until=future))[0]) == 6


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ""])
def test_write_formats(tmp_path, suffix):
    rows = [{"prompt": "p", "chosen": "c", "rejected": "r", "margin": 0.5, "region": "en-GB-leeds"}]
    out = write_rows(rows, tmp_path / f"out{suffix}")
    if suffix == ".jsonl":
        assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    elif suffix == ".parquet":
        from datasets import Dataset

        assert Dataset.from_parquet(str(out)).to_list() == rows
    else:
        assert load_from_disk(str(out)).to_list() == rows
    write_rows(rows * 2, out)  # replacing an existing export works and leaves no staging folders behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_round_trip_import_export_preferences(loaded, tmp_path):
    source = [{"prompt": f"Brief {i} for a Leeds shop", "chosen": f"Ey up, deal number {i}!",
               "rejected": f"Generic deal {i}.", "task_type": "ad_copy"} for i in range(30)]
    source.append({"prompt": "Contact brief", "chosen": "Mail shop@leeds-example.co.uk for a brew",
                   "rejected": "Contact us", "task_type": "ad_copy"})
    path = write_jsonl(tmp_path / "prefs.jsonl", source)
    with session_scope(loaded) as s:
        import_file(s, path, "preferences", region="en-GB-leeds")
        rows, _ = preference_rows(s, DatasetFilter(splits=("train", "val", "test"), allow_test=True),
                                  prompt_format="raw")
    out = write_rows(rows, tmp_path / "export.jsonl")
    exported = {(r["prompt"], r["chosen"], r["rejected"]) for r in map(json.loads, out.read_text().splitlines())}
    expected = {(r["prompt"], r["chosen"], r["rejected"]) for r in source}
    expected = {t if "shop@" not in t[1] else (t[0], "Mail [EMAIL] for a brew", t[2]) for t in expected}
    assert exported == expected


def test_a_vote_without_strength_weighs_as_clear_in_the_margin(voted):
    engine, _ = voted
    with session_scope(engine) as s:
        base, v1 = (s.scalar(select(ModelVersion).where(ModelVersion.name == n)) for n in ("base", "v1"))
        prompt = s.scalars(select(Prompt).join(Region).where(Region.code == "en-GB-leeds", Prompt.split == Split.train)
                           .order_by(Prompt.id)).all()[4]
        pair = _pair(s, prompt, base, v1, "Plain copy", "Local copy")
        user = s.scalar(select(User).where(User.username == "r0"))
        s.add(Vote(pair_id=pair.id, user_id=user.id, region_id=pair.region_id, choice=Choice.b, strength=None,
                   shown_left=Side.a))
        s.flush()
        rows, _ = preference_rows(s, prompt_format="raw")
    row = next(r for r in rows if r["pair_id"] == pair.id)
    # no strength given (an imported pair, an older vote): full weight, as a clear preference, not zero
    assert (row["chosen"], row["margin"], row["agreement"]) == ("Local copy", 1.0, 1.0)
