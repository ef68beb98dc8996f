"""Preference-data layouts, normalised to ``(prompt, chosen, rejected)`` strings.

* explicit: ``prompt`` / ``chosen`` / ``rejected`` strings (TRL's standard preference format);
* implicit: ``chosen`` / ``rejected`` full transcripts sharing a prefix, which is the prompt
  (e.g. ``"\\n\\nHuman: … \\n\\nAssistant: …"`` dialogues as in Anthropic HH);
* conversational: ``chosen`` / ``rejected`` (and optionally ``prompt``) as lists of ``{"role", "content"}``.
"""

from __future__ import annotations

import os
from typing import Any

TURN_MARKERS = ("\n\nAssistant:", "\nAssistant:", "Assistant:")


class LayoutError(ValueError):
    """The row does not fit a known layout; ``field`` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def detect_layout(row: dict[str, Any]) -> str:
    """``explicit``, ``implicit`` or ``conversational`` for one row."""
    if isinstance(row.get("chosen"), list) or isinstance(row.get("prompt"), list):
        return "conversational"
    if isinstance(row.get("prompt"), str) and row["prompt"].strip():
        return "explicit"
    return "implicit"


def split_implicit(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two transcripts at the end of their shared prompt: the last assistant turn marker in the common
    prefix if there is one, else the last whitespace of the common prefix.

    Example:
        >>> split_implicit("\\n\\nHuman: Hi\\n\\nAssistant: Hello!", "\\n\\nHuman: Hi\\n\\nAssistant: Go away.")
        ('\\n\\nHuman: Hi\\n\\nAssistant:', ' Hello!', ' Go away.')
    """
    prefix = os.path.commonprefix([chosen, rejected])
    cut = -1
    for marker in TURN_MARKERS:
        i = prefix.rfind(marker)
        if i >= 0:
            cut = i + len(marker)
            break
    if cut < 0:  # no dialogue markers: never cut inside a word
        cut = max(prefix.rfind(" "), prefix.rfind("\n")) + 1
    if cut <= 0:
        raise LayoutError("chosen", "chosen and rejected share no prompt prefix (add a prompt column)")
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _messages(value: Any, field: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    ):
        raise LayoutError(field, "must be a list of {role, content} messages")
    return value


def _assistant_text(messages: list[dict[str, str]], field: str) -> str:
    texts = [m["content"] for m in messages if m["role"] == "assistant"]
    if not texts:
        raise LayoutError(field, "has no assistant message")
    return "\n".join(texts)


def _user_text(messages: list[dict[str, str]], field: str) -> str:
    texts = [m["content"] for m in messages if m["role"] == "user"]
    if not texts:
        raise LayoutError(field, "has no user message to take the prompt from")
    return texts[-1]  # the brief is the last user turn; system prompts are not stored


def normalise(row: dict[str, Any]) -> tuple[str, str, str, str]:
    """``(layout, prompt, chosen, rejected)`` for a preference row, or a LayoutError naming the field."""
    layout = detect_layout(row)
    if layout == "conversational":
        chosen = _messages(row.get("chosen"), "chosen")
        rejected = _messages(row.get("rejected"), "rejected")
        if row.get("prompt") is not None:
            prompt = _user_text(_messages(row["prompt"], "prompt"), "prompt")
        else:
            shared = 0
            while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
                shared += 1
            prompt = _user_text(chosen[:shared], "chosen")
            chosen, rejected = chosen[shared:], rejected[shared:]
        return layout, prompt, _assistant_text(chosen, "chosen"), _assistant_text(rejected, "rejected")
    for name in ("chosen", "rejected"):
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise LayoutError(name, "missing or empty")
    if layout == "explicit":
        return layout, row["prompt"], row["chosen"], row["rejected"]
    prompt, chosen, rejected = split_implicit(row["chosen"], row["rejected"])
    return layout, prompt, chosen, rejected
