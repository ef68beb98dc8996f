"""Runtime settings: one object, read from ``GEOALIGN_*`` environment variables and ``DATABASE_URL``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from db.errors import ConfigError

DEFAULT_HOME = ".geoalign"  # relative to the working directory, like a project-local virtualenv
DEFAULT_MODEL_DIR = "SmolLM2-135M-Instruct"  # converted by `geoalign model build-demo` (align/pretrained.py)
TINY_MODEL_DIR = "tiny"  # the from-scratch test fixture, `geoalign model build-demo --tiny`
DEFAULT_SESSION_MINUTES = 480  # a working day, then log in again


@dataclass(frozen=True)
class Settings:
    """Where GeoAlign keeps its database, models, adapters, datasets and logs.

    Example:
        >>> s = Settings.from_env({"GEOALIGN_HOME": "/tmp/ga"})
        >>> s.database_url
        'sqlite:////tmp/ga/geoalign.db'
    """

    home: Path
    database_url: str
    base_model: str  # a local directory or a Hugging Face hub id, loaded with from_pretrained
    sql_echo: bool = False
    precision: str = "auto"  # auto, bf16 or fp32: how the policy trains and samples (align/precision.py)
    session_minutes: int = DEFAULT_SESSION_MINUTES  # how long a login lasts

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Build settings from the environment (``os.environ`` unless given)."""
        env = os.environ if environ is None else environ
        home = Path(env.get("GEOALIGN_HOME") or DEFAULT_HOME).expanduser().resolve()
        url = env.get("DATABASE_URL") or f"sqlite:///{home / 'geoalign.db'}"
        base_model = env.get("GEOALIGN_BASE_MODEL") or str(home / "models" / DEFAULT_MODEL_DIR)
        echo = (env.get("GEOALIGN_SQL_ECHO") or "").lower() in {"1", "true", "yes"}
        precision = (env.get("GEOALIGN_PRECISION") or "auto").strip().lower()
        minutes = (env.get("GEOALIGN_SESSION_MINUTES") or str(DEFAULT_SESSION_MINUTES)).strip()
        if not (minutes.isascii() and minutes.isdigit()) or int(minutes) < 1:
            raise ConfigError(f"GEOALIGN_SESSION_MINUTES {minutes!r} is not a whole number of minutes above 0")
        if "://" not in url:
            raise ConfigError(f"DATABASE_URL {url!r} is not a URL (expected e.g. postgresql+psycopg://user@host/db)")
        if precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"GEOALIGN_PRECISION {precision!r} is not one of auto, bf16, fp32")
        return cls(home=home, database_url=url, base_model=base_model, sql_echo=echo, precision=precision,
                   session_minutes=int(minutes))

    @cached_property
    def models_dir(self) -> Path:
        return self.home / "models"

    @cached_property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    @cached_property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @cached_property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def default_model_dir(self) -> Path:
        """Where the default base policy (SmolLM2-135M-Instruct) is converted to."""
        return self.models_dir / DEFAULT_MODEL_DIR

    @property
    def tiny_model_dir(self) -> Path:
        """Where ``geoalign model build-demo --tiny`` writes the tiny from-scratch model."""
        return self.models_dir / TINY_MODEL_DIR

    def ensure_dirs(self) -> None:
        """Create the home folder and its sub-folders."""
        for path in (self.home, self.models_dir, self.adapters_dir, self.datasets_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)


def get_settings() -> Settings:
    """The settings for this process, read fresh from the environment."""
    return Settings.from_env()
