"""Round numbering under concurrency, publishing that never touches what it did not make, and names that become
folders: each on SQLite and PostgreSQL where the database decides."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import pytest
from sqlalchemy import func, select

import align.evaluation
import align.rounds
from align.config import load_config
from align.jobs import request_cancel
from align.plan import RoundPlan
from align.registry import ensure_base_version
from align.rounds import publish, queue_resume, queue_round
from cli.common import cli_actor
from collect.ingest import import_regions
from db.errors import AuthError, PermissionDenied, ValidationError
from db.models import Generation, Job, JobStatus, ModelVersion, Pair, Prompt, Region, Round
from db.names import check_name
from db.session import session_scope
from tests.conftest import load_mini, login_as

REGION = "en-GB-leeds"


@pytest.fixture
def mini_engine(any_engine, mini_data):
    """The mini regions and examples on SQLite or PostgreSQL, with the base version."""
    load_mini(any_engine, mini_data)
    with session_scope(any_engine) as s:
        ensure_base_version(s, "tiny")
    return any_engine


def _actor(engine):
    with session_scope(engine) as s:
        return cli_actor(s)


# ------------------------------------------------------------------------------------------------ numbering


@pytest.mark.parametrize("region", [REGION, None])
def test_concurrent_queue_round_gets_distinct_numbers(mini_engine, region):
    actor, config = _actor(mini_engine), load_config()  # loaded here: trl's lazy imports are not thread-safe
    barrier = Barrier(4)

    def queue(_):
        with session_scope(mini_engine) as s:
            barrier.wait()
            return queue_round(s, actor, region, config)[0].number

    with ThreadPoolExecutor(4) as pool:
        numbers = list(pool.map(queue, range(4), timeout=120))
    assert sorted(numbers) == [1, 2, 3, 4]
    with session_scope(mini_engine) as s:
        scope = Round.region_id.is_not(None) if region else Round.region_id.is_(None)
        assert sorted(s.scalars(select(Round.number).where(scope))) == [1, 2, 3, 4]


def test_round_functions_refuse_a_wrong_role(engine, mini_data):
    load_mini(engine, mini_data)
    reviewer = login_as(engine, "rev", regions=[REGION])
    actor = _actor(engine)
    with session_scope(engine) as s:
        rnd, job = queue_round(s, actor, REGION, load_config())
        round_id, job_id = rnd.id, job.id
    with session_scope(engine) as s:
        with pytest.raises(PermissionDenied, match="engineer or admin"):
            queue_round(s, reviewer, REGION, load_config())
        with pytest.raises(AuthError):
            queue_round(s, None, REGION, load_config())
        with pytest.raises(PermissionDenied, match="engineer or admin"):
            request_cancel(s, reviewer, job_id)
        s.get(Round, round_id).status = JobStatus.failed
        s.flush()
        with pytest.raises(PermissionDenied, match="engineer or admin"):
            queue_resume(s, reviewer, round_id)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Round)) == 1
        job = s.get(Job, job_id)
        assert job.status == JobStatus.queued and not job.cancel_requested  # the refused cancel changed nothing


# ------------------------------------------------------------------------------------------------ publishing


def _plan(engine, region: str = REGION) -> RoundPlan:
    """A queued round of ``region`` continuing the base version, as ``run_round`` would plan it."""
    with session_scope(engine) as s:
        rnd, _ = queue_round(s, cli_actor(s), REGION, load_config())
        return RoundPlan(round_id=rnd.id, number=rnd.number, region=region, config=load_config(), base_model="tiny",
                         parent_name="base", parent_adapter=None, parent_reward_model=None, completed=[])


def _folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"made_by": text}))
    return path


def _evaluation(engine) -> dict:
    with session_scope(engine) as s:
        rid = s.scalar(select(Region.id).where(Region.code == REGION))
        prompts = list(s.scalars(select(Prompt.id).where(Prompt.region_id == rid).order_by(Prompt.id).limit(2)))
    rows = [{"prompt_id": p, "outputs": {"new": f"new {p}", "parent": f"parent {p}", "base": f"base {p}"}}
            for p in prompts]
    return {"rows": rows, "params": {}, "seed": 0, "win_rates": {}}


def _publish(engine, plan, settings, tmp_path, evaluation=None):
    adapter = tmp_path / "work" / "adapter"
    if not adapter.exists():
        _folder(adapter, "this round")
        _folder(tmp_path / "work" / "reward", "this round")
    manifest = {"sha256": {}, "counts": {}, "votes": 0, "newest_round": None}
    return publish(engine, plan, settings, str(adapter), str(tmp_path / "work" / "reward"), "sft", manifest, {},
                   evaluation or _evaluation(engine))


def _leftovers(settings) -> list[Path]:
    return [p for d in (settings.adapters_dir, settings.home / "reward_models") if d.exists()
            for p in d.iterdir() if p.name.startswith(".")]


def _counts(engine) -> tuple[int, int, int]:
    with session_scope(engine) as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (ModelVersion, Pair, Generation))


def test_publish_onto_an_existing_version_leaves_it_alone(mini_engine, settings, tmp_path):
    plan = _plan(mini_engine)
    name = f"{REGION}-r1"
    theirs = _folder(settings.adapters_dir / name, "the first publish")
    with session_scope(mini_engine) as s:
        s.add(ModelVersion(name=name, base_model="tiny", adapter_path=str(theirs)))
    before = _counts(mini_engine)
    with pytest.raises(ValidationError, match=f"model version {name} already exists"):
        _publish(mini_engine, plan, settings, tmp_path)
    assert json.loads((theirs / "adapter_config.json").read_text()) == {"made_by": "the first publish"}
    assert _counts(mini_engine) == before and not _leftovers(settings)
    assert not (settings.home / "reward_models" / name).exists()
    with session_scope(mini_engine) as s:
        version = s.scalar(select(ModelVersion).where(ModelVersion.name == name))
        assert version.adapter_path == str(theirs) and version.round_id is None
        assert s.get(Round, plan.round_id).status == JobStatus.queued


def test_publish_onto_a_folder_without_a_version_leaves_it_alone(mini_engine, settings, tmp_path):
    plan = _plan(mini_engine)
    theirs = _folder(settings.adapters_dir / f"{REGION}-r1", "someone else")
    before = _counts(mini_engine)
    with pytest.raises(ValidationError, match="already exists but no model version owns it"):
        _publish(mini_engine, plan, settings, tmp_path)
    assert json.loads((theirs / "adapter_config.json").read_text()) == {"made_by": "someone else"}
    assert _counts(mini_engine) == before and not _leftovers(settings)
    assert not (settings.home / "reward_models" / f"{REGION}-r1").exists()


@pytest.mark.parametrize("crash", ["after_pairs", "between_folders"])
def test_publish_is_atomic_under_a_crash(mini_engine, settings, tmp_path, monkeypatch, crash):
    plan = _plan(mini_engine)
    before = _counts(mini_engine)
    if crash == "after_pairs":  # the samples and pairs are written, then the process fails before the commit
        real = align.evaluation.store_samples_and_pairs

        def store_then_fail(*args, **kwargs):
            real(*args, **kwargs)
            raise RuntimeError("injected crash")

        monkeypatch.setattr(align.evaluation, "store_samples_and_pairs", store_then_fail)
    else:  # the adapter is in place, the reward model is not yet
        real_place, placed = align.rounds._place, []

        def place_once(tmp, final):
            if placed:
                raise RuntimeError("injected crash")
            placed.append(final)
            real_place(tmp, final)

        monkeypatch.setattr(align.rounds, "_place", place_once)
    with pytest.raises(RuntimeError, match="injected crash"):
        _publish(mini_engine, plan, settings, tmp_path)
    name = f"{REGION}-r1"
    assert _counts(mini_engine) == before
    assert not (settings.adapters_dir / name).exists() and not (settings.home / "reward_models" / name).exists()
    assert not _leftovers(settings)

    monkeypatch.undo()
    assert _publish(mini_engine, plan, settings, tmp_path) == name
    with session_scope(mini_engine) as s:
        version = s.scalar(select(ModelVersion).where(ModelVersion.name == name))
        assert Path(version.adapter_path) == settings.adapters_dir / name
        assert (Path(version.adapter_path) / "adapter_config.json").exists()
        assert (Path(version.lineage["reward_model"]) / "adapter_config.json").exists()
        assert s.scalar(select(func.count()).select_from(Pair).where(Pair.round_id == plan.round_id)) == 2
        assert s.get(Round, plan.round_id).status == JobStatus.succeeded
    assert not _leftovers(settings)


# ------------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize("value", ["en-GB-manchester", "all-r12", "v1", "A" * 64])
def test_check_name_accepts(value):
    assert check_name("model version", value) == value


@pytest.mark.parametrize("value", ["../../victim", "a/b", ".hidden", "-rf", "a b", "x.y", "", "A" * 65, None, "é"])
def test_check_name_refuses(value):
    with pytest.raises(ValidationError, match="region code .* is not a valid name"):
        check_name("region code", value)


def test_import_regions_refuses_a_code_that_is_not_a_name(engine, mini_data, tmp_path):
    region = json.loads((mini_data / REGION / "region.json").read_text())
    path = tmp_path / "region.json"
    path.write_text(json.dumps(region | {"code": "../../victim"}))
    with session_scope(engine) as s:
        with pytest.raises(ValidationError, match=r"region\.json.*code.*not a valid region code") as info:
            import_regions(s, path)
    assert [(Path(f).name, fld) for f, _, fld, _ in info.value.problems] == [("region.json", "code")]
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Region)) == 0


def test_a_bad_region_code_never_becomes_a_path(mini_engine, settings, tmp_path):
    """A region stored before codes were checked is refused when queued, and publish checks the name again."""
    with session_scope(mini_engine) as s:
        s.scalar(select(Region).where(Region.code == "en-AU-perth")).code = "../../victim"
    with session_scope(mini_engine) as s:
        with pytest.raises(ValidationError, match="region code '../../victim' is not a valid name"):
            queue_round(s, cli_actor(s), "../../victim", load_config())
    plan = _plan(mini_engine, region="../../victim")
    with pytest.raises(ValidationError, match="model version '../../victim-r1' is not a valid name"):
        _publish(mini_engine, plan, settings, tmp_path)
    assert not (settings.home.parent / "victim-r1").exists() and not settings.adapters_dir.exists()
