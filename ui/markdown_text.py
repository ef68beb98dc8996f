"""User-controlled text (usernames, tag names, error messages quoting them) inside Streamlit's Markdown elements."""

from __future__ import annotations

import re

# every ASCII punctuation character may be backslash-escaped in CommonMark; escaping them all also covers
# Streamlit's own syntax (":red[...]" colours, "$...$" maths) without tracking which ones it adds
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def escape_markdown(value: object) -> str:
    r"""``value`` as text that st.success, st.caption, st.warning, button labels etc. show literally, on one line.

    Example:
        >>> print(escape_markdown("**bob** ![x](http://e/x.png)"))
        \*\*bob\*\* \!\[x\]\(http\:\/\/e\/x\.png\)
    """
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(value).splitlines()))
