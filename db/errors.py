"""Errors that carry a message fit to show a user as-is (the CLI prints them on one line)."""


class GeoAlignError(Exception):
    """Base class: the message names what is wrong and where."""


class ConfigError(GeoAlignError):
    """A setting (environment variable, config file) is missing or invalid."""


class DatabaseUnavailable(GeoAlignError):
    """The database named by DATABASE_URL cannot be reached or is not migrated."""


class NotFound(GeoAlignError):
    """A named thing (region, user, model version, file) does not exist."""


class ValidationError(GeoAlignError):
    """Input data is invalid; ``problems`` lists every (file, row, field, message) found."""

    def __init__(self, message: str, problems: list[tuple[str, int | None, str | None, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []

    def __str__(self) -> str:
        head = super().__str__()
        if not self.problems:
            return head
        shown = [f"{f}:{r if r is not None else '-'}:{fld or '-'}: {msg}" for f, r, fld, msg in self.problems[:20]]
        more = f" (+{len(self.problems) - 20} more)" if len(self.problems) > 20 else ""
        return head + "; " + "; ".join(shown) + more


class PermissionDenied(GeoAlignError):
    """The user is not allowed to do this (missing role, or a region that is not theirs)."""


class AuthError(GeoAlignError):
    """Login failed: wrong credentials, locked or inactive account."""
