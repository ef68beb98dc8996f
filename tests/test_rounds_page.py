"""The Rounds page: its helpers, role checks, the start form, progress of a (faked) running round, cancel, resume
and the model-version table. Nothing trains here: rounds are queued and their progress is written by hand."""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from align.jobs import enqueue
from align.reports import win_rate_text
from db.errors import ConfigError
from db.models import Job, JobStatus, ModelVersion, Region, Round, utcnow
from db.session import session_scope
from tests.conftest import login_as
from ui.pages.rounds import build_config
from ui.views import history_frame, metrics_frame, published_text, stage_line

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 60  # the first config check imports TRL
HISTORY = [{"stage": "sft", "step": 2, "loss": 3.2, "eval_loss": 3.4}, {"stage": "sft", "step": 4, "loss": 2.1},
           {"stage": "dpo", "step": 1, "loss": 0.69, "rewards/accuracies": 0.5}]
WIN = {"rate": 0.62, "low": 0.41, "high": 0.8, "n": 24, "wins": 14, "ties": 2, "losses": 8}


def _rounds_page():
    from ui.pages import rounds as rounds_page

    rounds_page.render()


def _page(engine, username: str = "eng", roles=("engineer",)) -> AppTest:
    at = AppTest.from_function(_rounds_page, default_timeout=TIMEOUT)
    at.session_state["geoalign_user"] = login_as(engine, username, roles=roles)
    return at.run()


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _add_round(engine, status: JobStatus, job_status: JobStatus, progress: dict | None = None, log: str = "",
               completed: list[str] | None = None, metrics: dict | None = None, error: str | None = None) -> tuple:
    """A Leeds round with its job in the given states, as a worker would have left them; (round id, job id)."""
    with session_scope(engine) as s:
        region = s.scalar(select(Region).where(Region.code == "en-GB-leeds"))
        rnd = Round(number=1, region_id=region.id, status=status, config={"round": {"stages": ["sft", "dpo"]}},
                    completed_stages=completed or [], metrics=metrics or {}, error=error)
        s.add(rnd)
        s.flush()
        job = enqueue(s, "round", {"round_id": rnd.id}, round_id=rnd.id)
        job.status, job.progress, job.log = job_status, progress or {}, log
        if job_status is not JobStatus.queued:
            job.worker, job.started_at, job.heartbeat_at = "gpu-1:4242", utcnow(), utcnow() - timedelta(seconds=3)
        return rnd.id, job.id


def _texts(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "caption", "info", "success", "error", "warning")
                    for e in getattr(at, kind))


# ------------------------------------------------------------------------------------------- helpers


def test_build_config_takes_widgets_over_yaml():
    config = build_config("round: {stages: [rl], eval_prompts: 8}\ndpo: {beta: 0.2}", ["sft", "dpo"], "rloo")
    assert config.settings.stages == ["sft", "dpo"] and config.settings.rl_algorithm == "rloo"
    assert config.settings.eval_prompts == 8 and config.raw["dpo"] == {"beta": 0.2}
    assert build_config("", ["rl"], "grpo").settings.stages == ["rl"]
    assert build_config("", ["reward"], "grpo").settings.stages == ["reward"]  # publishes a new reward model


@pytest.mark.parametrize("text, stages, message", [
    ("sft: {learning_rte: 1}", ["sft"], "learning_rte"),
    ("sft: [1", ["sft"], "not valid YAML"),
    ("- sft", ["sft"], "YAML mapping"),
    ("dpo: {beta: high}", ["dpo"], "dpo.beta"),
    ("ppo: {}", ["sft"], "unknown section"),
    ("", [], "pick at least one stage"),
])
def test_build_config_errors_name_the_problem(text, stages, message):
    with pytest.raises(ConfigError, match=message):
        build_config(text, stages, "grpo")


def test_display_helpers():
    assert win_rate_text(WIN) == "0.62 [0.41, 0.80]"
    assert win_rate_text(None) == "" and win_rate_text({"rate": 0.5}) == "0.50"
    frame = history_frame([*HISTORY, {"stage": "sft"}])  # a point without a step is ignored
    assert frame.shape == (5, 4) and set(frame["metric"]) == {"loss", "eval_loss", "rewards/accuracies"}
    table = metrics_frame({"eval": {"vs_parent": WIN, "scorer": "rules", "judge_vs_base": WIN | {"rate": 0.7}},
                           "dpo": {"loss": 0.512345}, "sft": {}})
    # the independent judge leads; the reward model's figure says it was trained on
    assert table["what"].tolist() == ["sft", "dpo", "win-rate judge vs base (independent)",
                                      "win-rate reward model vs parent (trained on it)", "eval scorer"]
    assert table["value"].tolist()[1:4] == ["loss 0.5123", "0.70 [0.41, 0.80] (n=24: 14 won, 2 tied, 8 lost)",
                                            "0.62 [0.41, 0.80] (n=24: 14 won, 2 tied, 8 lost)"]


REWARD = {"steps": 30, "train_pairs": 40, "val_pairs": 10, "newest_pairs": 6, "val_accuracy": 0.8,
          "newest_accuracy": 0.75, "train_sample_accuracy": 0.9, "train_sample_pairs": 40}


def test_reward_only_round_helpers():
    metrics = {"reward": REWARD, "version": "en-GB-leeds-r2", "reward_only": True}
    assert published_text(metrics) == (
        "Published **en-GB-leeds-r2**: a new reward model, the policy unchanged · accuracy validation 0.80 (10 pairs) "
        "· newest votes 0.75 (6 pairs) · train sample 0.90 (40 of 40 pairs)")
    assert published_text({"version": "v", "new_pairs": {"vs_parent": 3, "vs_base": 2}}) == \
        "Published **v** · 5 new pairs for reviewers"
    # no evaluation: no policy changed
    assert stage_line(["reward"], ["reward"], None) == ":material/check_circle: reward → :material/circle: publish"
    assert stage_line(["sft", "reward"], ["sft", "reward", "publish"], None) == (
        ":material/check_circle: sft → :material/check_circle: reward → :material/check_circle: publish")
    assert stage_line(["sft"], [], "sft") == ":material/sync: sft → :material/circle: eval → :material/circle: publish"


# ------------------------------------------------------------------------------------------- page


def test_only_engineers_and_admins_get_the_page(loaded):
    def nav(user) -> set[str]:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.session_state["geoalign_user"] = user
        at.run()
        assert not at.exception
        # AppTest has no public view of st.navigation's pages; its registry holds their url paths
        return {info.get("url_pathname") for info in at._registered_pages.values()}

    assert "rounds" not in nav(login_as(loaded, "lee", regions=["en-GB-leeds"]))
    assert "rounds" in nav(login_as(loaded, "eng", roles=["engineer"]))
    assert "rounds" in nav(login_as(loaded, "root", roles=["admin"]))
    refused = _page(loaded, "rev", roles=["reviewer"])
    assert not refused.exception and "lacks the role engineer or admin" in refused.error[0].value
    assert not refused.title and not [b for b in refused.button if b.label == "Queue round"]


def test_empty_state(loaded):
    at = _page(loaded)
    assert not at.exception and at.title[0].value == "Rounds"
    assert at.selectbox(key="rounds_scope").options == ["all regions", "en-AU-perth", "en-GB-leeds"]
    infos = [i.value for i in at.info]
    assert "No rounds yet — start one above." in infos and any("No model versions yet" in i for i in infos)


def test_start_form_queues_a_round(loaded):
    at = _page(loaded)
    at.selectbox(key="rounds_scope").select("en-GB-leeds")
    at.selectbox(key="rounds_rl_algorithm").select("rloo")
    at.checkbox(key="rounds_stage_reward").uncheck()
    at.text_area(key="rounds_yaml").input("dpo: {beta: 0.2}")
    _button(at, "Queue round").click()
    at = at.run()
    assert not at.exception and not at.error
    with session_scope(loaded) as s:
        rnd = s.scalar(select(Round))
        job = s.scalar(select(Job))
        assert rnd.status is JobStatus.queued and job.status is JobStatus.queued and job.round_id == rnd.id
        assert rnd.config["round"]["stages"] == ["sft", "dpo", "rl"] and rnd.config["round"]["rl_algorithm"] == "rloo"
        assert rnd.config["dpo"] == {"beta": 0.2} and s.get(Region, rnd.region_id).code == "en-GB-leeds"
    assert at.success[0].value.startswith(f"Round 1 (en-GB-leeds) queued as job {job.id}; a worker")
    texts = _texts(at)
    assert "en-GB-leeds round 1" in texts and "Waiting for a worker" in texts
    assert "No rounds yet" not in texts and _button(at, "Cancel")


def test_bad_config_key_shows_the_error_and_queues_nothing(loaded):
    at = _page(loaded)
    at.text_area(key="rounds_yaml").input("sft: {learning_rte: 1}")
    _button(at, "Queue round").click()
    at = at.run()
    assert not at.exception and not at.success
    assert "Nothing was queued" in at.error[0].value and "learning_rte" in at.error[0].value
    with session_scope(loaded) as s:
        assert s.scalar(select(func.count()).select_from(Round)) == 0
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_running_round_shows_progress_curves_and_log(loaded):
    log = "".join(f"line {i}\n" for i in range(100))
    _add_round(loaded, JobStatus.running, JobStatus.running, log=log, completed=["sft"],
               progress={"stage": "dpo", "step": 3, "total": 12, "history": HISTORY},
               metrics={"sft": {"train_loss": 2.5}})
    at = _page(loaded)
    assert not at.exception
    (bar,) = at.get("progress")
    assert bar.value == 25 and "dpo: step 3 of 12" in bar.proto.text
    texts = _texts(at)
    assert (":material/check_circle: sft → :material/sync: dpo → :material/circle: eval → :material/circle: publish"
            in texts)
    assert re.search(r"job \d+ \(running\) · worker gpu-1:4242, heartbeat \d+ s ago", texts)
    (chart,) = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    assert spec["facet"]["field"] == "stage" and spec["spec"]["encoding"]["color"]["field"] == "metric"
    (code,) = at.code
    assert code.value.splitlines() == [f"line {i}" for i in range(60, 100)]  # the last 40 lines
    assert at.dataframe[0].value["what"].tolist() == ["sft"]
    assert _button(at, "Cancel") and not [b for b in at.button if b.label == "Resume"]


def test_cancel_a_queued_round(loaded):
    round_id, job_id = _add_round(loaded, JobStatus.queued, JobStatus.queued)
    at = _page(loaded)
    _button(at, "Cancel").click()
    at = at.run()
    assert not at.exception
    with session_scope(loaded) as s:
        assert s.get(Job, job_id).status is JobStatus.cancelled
        assert s.get(Round, round_id).status is JobStatus.cancelled
    assert f"Cancel requested for en-GB-leeds round 1 (job {job_id})" in at.success[0].value
    assert _button(at, "Resume") and not [b for b in at.button if b.label == "Cancel"]


def test_resume_a_failed_round(loaded):
    round_id, job_id = _add_round(loaded, JobStatus.failed, JobStatus.failed, completed=["sft"],
                                  error="RuntimeError: CUDA out of memory", log="stage dpo: starting\n")
    at = _page(loaded)
    assert "RuntimeError: CUDA out of memory" in [e.value for e in at.error]
    _button(at, "Resume").click()
    at = at.run()
    assert not at.exception and "queued again" in at.success[0].value
    with session_scope(loaded) as s:
        jobs = s.scalars(select(Job).order_by(Job.id)).all()
        assert [j.status for j in jobs] == [JobStatus.failed, JobStatus.queued]
        assert jobs[1].payload == {"round_id": round_id, "resume": True}
        assert s.get(Round, round_id).status is JobStatus.queued
    assert _button(at, "Cancel") and not [b for b in at.button if b.label == "Resume"]


def test_model_versions_table_and_lineage(loaded):
    with session_scope(loaded) as s:
        base = ModelVersion(name="base", base_model="tiny", lineage={"kind": "base"})
        s.add(base)
        s.flush()
        s.add(ModelVersion(name="en-GB-leeds-r1", base_model="tiny", adapter_path="/adapters/x", parent_id=base.id,
                           region_id=s.scalar(select(Region.id).where(Region.code == "en-GB-leeds")), stage="rl",
                           metrics={"stages": {"sft": {"train_loss": 2.0}}, "eval": {"vs_parent": WIN}},
                           lineage={"parent": "base", "round": 1, "datasets": {"sft_train": "ab12"}}))
    at = _page(loaded)
    assert not at.exception
    table = at.dataframe[0].value
    assert table["name"].tolist() == ["en-GB-leeds-r1", "base"]
    assert table["parent"].tolist() == ["base", ""] and table["region"].tolist() == ["en-GB-leeds", "all"]
    assert table["reward model vs parent"].tolist() == ["0.62 [0.41, 0.80]", ""]
    assert table["judge vs parent"].tolist() == ["", ""]  # evaluated before the judge existed: shown blank
    assert json.loads(at.json[0].value)["datasets"] == {"sft_train": "ab12"}
    at.selectbox(key="rounds_version").select("base").run()
    assert json.loads(at.json[0].value) == {"kind": "base"}


def test_a_reward_only_round_shows_its_reward_model(loaded):
    round_id, _ = _add_round(loaded, JobStatus.succeeded, JobStatus.succeeded, completed=["reward", "publish"],
                             metrics={"reward": REWARD, "version": "en-GB-leeds-r1", "reward_only": True})
    with session_scope(loaded) as s:
        s.get(Round, round_id).config = {"round": {"stages": ["reward"]}}
    at = _page(loaded)
    assert not at.exception
    texts = _texts(at)
    assert ":material/check_circle: reward → :material/check_circle: publish" in texts
    assert "a new reward model, the policy unchanged · accuracy validation 0.80 (10 pairs)" in texts
    assert at.dataframe[0].value["what"].tolist() == ["reward", "reward_only", "version"]
