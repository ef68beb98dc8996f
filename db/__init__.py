"""Persistence: settings, SQLAlchemy models, sessions, Alembic migrations and the lookups every layer shares.

This package owns the schema and the only path to a database (engines, sessions, migrations). The domain packages
above it (rewards, collect, align) query through the sessions they are given; the deliveries (cli, ui) do not.
"""

from db.errors import (
    AuthError,
    ConfigError,
    DatabaseUnavailable,
    GeoAlignError,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from db.session import get_engine, make_engine, session_scope
from db.settings import Settings, get_settings

__all__ = [
    "AuthError",
    "PermissionDenied",
    "ConfigError",
    "DatabaseUnavailable",
    "GeoAlignError",
    "NotFound",
    "Settings",
    "ValidationError",
    "get_engine",
    "get_settings",
    "make_engine",
    "session_scope",
]
