"""Runtime settings: one object, read from ``GEOALIGN_*`` environment variables and ``DATABASE_URL``.

This module is the one place GeoAlign reads its environment: ``Settings.from_env`` for the process-wide values,
``env_var`` for the few readers that parse their own (the review policy, a password named by ``--password-env``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from db.errors import ConfigError

DEFAULT_HOME = ".geoalign"  # relative to the working directory, like a project-local virtualenv
DEFAULT_MODEL_DIR = "SmolLM2-135M-Instruct"  # converted by `geoalign model build-demo` (align/pretrained.py)
TINY_MODEL_DIR = "tiny"  # the from-scratch test fixture, `geoalign model build-demo --tiny`
DEFAULT_SESSION_MINUTES = 480  # a working day, then log in again
DEFAULT_HEARTBEAT_S = 2.0  # a worker stamps its running job this often
DEFAULT_STALE_AFTER_S = 30.0  # a running job without a heartbeat this long is reaped as dead


def env_var(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """One environment variable (``os.environ`` unless ``environ`` is given), or None when unset."""
    return (os.environ if environ is None else environ).get(name)


def child_environment(**extra: str) -> dict[str, str]:
    """The environment for a process GeoAlign launches (a stage under accelerate): this one's, plus ``extra``."""
    return {**os.environ, **extra}


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}={raw!r} must be a positive number of seconds")
    return value


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
    heartbeat_s: float = DEFAULT_HEARTBEAT_S  # GEOALIGN_HEARTBEAT_S
    stale_after_s: float = DEFAULT_STALE_AFTER_S  # GEOALIGN_STALE_AFTER_S
    admin_password: str | None = field(default=None, repr=False)  # GEOALIGN_ADMIN_PASSWORD: the demo's admin
    reviewer_password: str | None = field(default=None, repr=False)  # GEOALIGN_REVIEWER_PASSWORD: demo reviewers
    job_id: int | None = None  # GEOALIGN_JOB_ID: set by a round for the stage processes it launches

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
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
        heartbeat_s = _seconds(env, "GEOALIGN_HEARTBEAT_S", DEFAULT_HEARTBEAT_S)
        stale_after_s = _seconds(env, "GEOALIGN_STALE_AFTER_S", DEFAULT_STALE_AFTER_S)
        if stale_after_s <= 2 * heartbeat_s:
            # otherwise one late beat gets a live job reaped by another worker
            raise ConfigError(f"GEOALIGN_STALE_AFTER_S ({stale_after_s:g}) must exceed twice GEOALIGN_HEARTBEAT_S "
                              f"({heartbeat_s:g})")
        job = (env.get("GEOALIGN_JOB_ID") or "").strip()
        if job and not (job.isascii() and job.isdigit()):
            raise ConfigError(f"GEOALIGN_JOB_ID {job!r} is not a job id")
        return cls(home=home, database_url=url, base_model=base_model, sql_echo=echo, precision=precision,
                   session_minutes=int(minutes), heartbeat_s=heartbeat_s, stale_after_s=stale_after_s,
                   admin_password=env.get("GEOALIGN_ADMIN_PASSWORD") or None,
                   reviewer_password=env.get("GEOALIGN_REVIEWER_PASSWORD") or None, job_id=int(job) if job else None)

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
