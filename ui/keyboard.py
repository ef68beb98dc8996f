"""The Review page's keyboard: `1`–`4` pick the choice (`Shift` with `1`/`2`: "clearly"), `Enter` submits, `S`
skips, `U` undoes.

`Enter`, `S` and `U` are Streamlit's own button shortcuts (``st.button(..., shortcut="S")``, since 1.5x): Streamlit
shows the key on the button and ignores key presses aimed at a text field. The choice keys need a listener of our
own (``ui/static/review_keys.js``, installed once per tab by ``install_review_keys``), because neither Streamlit
nor the ``streamlit-shortcuts`` package (1.2.2) can press a radio option:

* Streamlit's ``shortcut=`` exists only on buttons, and a button per choice would rerun the page on each key and
  live outside the form, apart from the reasons, comment and rewrite it submits with.
* ``streamlit-shortcuts`` clicks the first ``<input>`` of a widget, so it cannot pick the second radio option; it
  matches ``KeyboardEvent.key``, where `Shift`+`1` arrives as "!" (on a US layout; '"' or "§" on others), so
  "shift+1" never matches; and its listener neither skips key presses in a text field nor lets them through
  (``preventDefault``), so typing "1" in the comment box would pick "Left is better" and drop the "1".

Ours reads ``KeyboardEvent.code`` (``Digit1`` on every layout), ignores key presses aimed at a text field, a
select or an editable element, acts only on the pair on screen (its per-assignment widget key; never the previous
pair Streamlit keeps on screen, marked stale, while the next one renders), and gives the focus back to the page
after each choice or click, so Streamlit's `Enter`/`S`/`U` work right after a mouse click as well; `Escape` leaves a
text field of the form. ``st.html`` sanitizes with DOMPurify, which drops a script whose text holds "<" before a
letter or "/", so the script is written without one (a test checks it).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

SCRIPT = (Path(__file__).parent / "static" / "review_keys.js").read_text(encoding="utf-8")
CHOICE_KEYS = {"left": "1", "right": "2", "tie": "3", "both_bad": "4"}
STRENGTH_KEYS = {"slight": None, "clear": "Shift"}
SUBMIT_KEY, SKIP_KEY, UNDO_KEY = "Enter", "S", "U"


def hint(label: str, key: str | None) -> str:
    """``label`` with its key, as shown next to a control: ``hint("Left is better", "1") == "Left is better [1]"``."""
    return f"{label} [{key}]" if key else label


def install_review_keys() -> None:
    """Add the choice-key listener to the page (a no-op in a tab that has it already)."""
    # our own file, no user text: the one place the app runs JavaScript in the page
    st.html(f"<script>{SCRIPT}</script>", unsafe_allow_javascript=True)
