"""The one pattern for names that become folder names under GEOALIGN_HOME: region codes, model versions, adapters.

    >>> check_name("region code", "en-GB-manchester")
    'en-GB-manchester'
"""

from __future__ import annotations

import re

from db.errors import ValidationError

# letters, digits and inner hyphens: no dots, slashes or leading hyphen, so a name is never a path or an option
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9-]{0,63}"
_NAME = re.compile(NAME_PATTERN)


def is_valid_name(value: object) -> bool:
    """Whether ``value`` is a string matching ``NAME_PATTERN`` in full."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def check_name(kind: str, value: object) -> str:
    """``value`` if it is a valid name, else a ValidationError naming ``kind`` (e.g. "region code") and the rule."""
    if not is_valid_name(value):
        raise ValidationError(f"{kind} {value!r} is not a valid name: use 1-64 letters, digits and hyphens, "
                              "starting with a letter or digit (e.g. en-GB-manchester)")
    return value
