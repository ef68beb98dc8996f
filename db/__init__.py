"""Persistence: settings, SQLAlchemy models, sessions and Alembic migrations. Only this package talks SQL."""

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
