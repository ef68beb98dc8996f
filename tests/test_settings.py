import os
from pathlib import Path

import pytest

from db.errors import ConfigError
from db.settings import Settings, child_environment, env_var


def test_defaults_put_everything_under_home(tmp_path):
    s = Settings.from_env({"GEOALIGN_HOME": str(tmp_path / "h")})
    assert s.home == (tmp_path / "h").resolve()
    assert s.database_url == f"sqlite:///{(tmp_path / 'h' / 'geoalign.db').resolve()}"
    assert Path(s.base_model) == s.home / "models" / "SmolLM2-135M-Instruct" == s.default_model_dir
    s.ensure_dirs()
    assert all(p.is_dir() for p in (s.models_dir, s.adapters_dir, s.datasets_dir, s.logs_dir))


def test_default_home_is_relative_to_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({}).home == (tmp_path / ".geoalign").resolve()


def test_environment_overrides():
    s = Settings.from_env({"DATABASE_URL": "postgresql+psycopg://u@h/db", "GEOALIGN_BASE_MODEL": "Qwen/Qwen2.5-0.5B"})
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert s.base_model == "Qwen/Qwen2.5-0.5B"


def test_database_url_must_be_a_url():
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        Settings.from_env({"DATABASE_URL": "just-a-file.db"})


def test_worker_timings_are_read_and_checked_here():
    s = Settings.from_env({"GEOALIGN_HEARTBEAT_S": "0.5", "GEOALIGN_STALE_AFTER_S": "3"})
    assert (s.heartbeat_s, s.stale_after_s) == (0.5, 3.0)
    assert (Settings.from_env({}).heartbeat_s, Settings.from_env({}).stale_after_s) == (2.0, 30.0)
    for env, message in (({"GEOALIGN_HEARTBEAT_S": "soon"}, "GEOALIGN_HEARTBEAT_S='soon' is not a number"),
                         ({"GEOALIGN_STALE_AFTER_S": "-1"}, "must be a positive number"),
                         ({"GEOALIGN_STALE_AFTER_S": "inf"}, "must be a positive number"),
                         ({"GEOALIGN_HEARTBEAT_S": "20"}, "must exceed twice GEOALIGN_HEARTBEAT_S")):
        with pytest.raises(ConfigError, match=message):
            Settings.from_env(env)


def test_demo_passwords_and_stage_job_id_come_from_the_environment_but_are_never_shown():
    s = Settings.from_env({"GEOALIGN_ADMIN_PASSWORD": "admin-secret-1", "GEOALIGN_JOB_ID": "42"})
    assert (s.admin_password, s.reviewer_password, s.job_id) == ("admin-secret-1", None, 42)
    assert "admin-secret-1" not in repr(s)
    with pytest.raises(ConfigError, match="GEOALIGN_JOB_ID 'x1' is not a job id"):
        Settings.from_env({"GEOALIGN_JOB_ID": "x1"})


def test_env_var_and_child_environment(monkeypatch):
    monkeypatch.setenv("GEOALIGN_TEST_SECRET", "s3cret")
    assert env_var("GEOALIGN_TEST_SECRET") == "s3cret"
    assert env_var("GEOALIGN_TEST_SECRET", {}) is None
    child = child_environment(GEOALIGN_JOB_ID="7")
    assert child["GEOALIGN_JOB_ID"] == "7" and child["GEOALIGN_TEST_SECRET"] == "s3cret"
    assert "GEOALIGN_JOB_ID" not in os.environ  # the parent's environment is left alone
