from pathlib import Path

import pytest

from db.errors import ConfigError
from db.settings import Settings


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
