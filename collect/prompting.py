"""How a brief becomes what a language model is prompted with: one builder for every stage, sampler and API.

A brief becomes chat messages: a system message with the region (name, locale, language), the month's climate
and the task's guidance (the context the reviewer sees on the Review page), and a user message with the brief.
A model whose tokenizer has a chat template is prompted through it (``render``); a tokenizer without one (the
tiny test model) gets the plain text format ``Region: …\\nTask: …\\nBrief: …\\nCopy:\\n``.

Datasets come in three prompt formats (``PROMPT_FORMATS``):

* ``conversational``: TRL's conversational format, ``prompt`` as a message list and the completion (or
  ``chosen``/``rejected``) as one assistant message;
* ``text``: the plain text format above, completions as strings (TRL's standard format);
* ``raw``: the brief alone, for people who bring their own template.

Example:
    >>> ctx = BriefContext("Manchester", "en-GB", "email_subject", "Autumn menu launch", month=10,
    ...                    climate="Wet, windy autumn with turning leaves.")
    >>> messages(ctx)[1]
    {'role': 'user', 'content': 'Autumn menu launch'}
    >>> plain_prompt(ctx)
    'Region: Manchester (en-GB)\\nTask: email subject line\\nBrief: Autumn menu launch\\nCopy:\\n'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
TASK_LABELS = {
    "ad_copy": "ad copy",
    "meta_description": "meta description for a local landing page",
    "social_post": "social media post",
    "email_subject": "email subject line",
}
# What a finished piece of each task type looks like; the lengths are the channels' own limits (and those of
# rewards/rules.py), so the instruction and the rule reward ask for the same thing.
TASK_GUIDANCE = {
    "ad_copy": "Write one short ad: two or three sentences, at most 300 characters, with the offer and a call "
               "to action.",
    "meta_description": "Write one meta description for a local landing page: one or two sentences, 70 to 160 "
                        "characters.",
    "social_post": "Write one social media post: at most 280 characters, friendly, at most two hashtags.",
    "email_subject": "Write one email subject line of at most 70 characters. Reply with the subject line only.",
}
LANGUAGES = {"en-GB": "British English", "en-US": "American English", "en-AU": "Australian English",
             "en-IE": "Irish English", "en-CA": "Canadian English", "de-DE": "German", "de-AT": "Austrian German",
             "de-CH": "Swiss German", "es-ES": "Spanish as spoken in Spain", "es-MX": "Mexican Spanish",
             "fr-FR": "French", "it-IT": "Italian", "pt-BR": "Brazilian Portuguese", "nl-NL": "Dutch"}
PROMPT_FORMATS = ("conversational", "text", "raw")


@dataclass(frozen=True)
class BriefContext:
    """Everything a prompt says about one brief: where, what kind of copy, when, and the brief itself."""

    region_name: str
    locale: str
    task_type: str
    brief: str
    month: int | None = None  # 1-12; None: the current month, as on the Review page
    climate: str = ""  # the region's climate note for that month

    @classmethod
    def of(cls, region: Any, task_type: str, brief: str, month: int | None = None) -> BriefContext:
        """From a region row or dict (``name``, ``locale``, ``climate_by_month``) and a brief."""
        get = region.get if isinstance(region, dict) else lambda k, d=None: getattr(region, k, d)
        month = month or datetime.now(timezone.utc).month
        climate = (get("climate_by_month") or {}).get(MONTHS[month - 1], "")
        return cls(get("name"), get("locale"), task_type, brief.strip(), month, climate)

    @classmethod
    def of_prompt(cls, region: Any, prompt: Any) -> BriefContext:
        """From a region and a ``Prompt`` row."""
        return cls.of(region, prompt.task_type.value, prompt.text, prompt.month)

    @property
    def season(self) -> str:
        """``"May: Brighter and milder…"`` (empty without a climate note): the line the reviewer sees too."""
        return f"{MONTHS[self.month - 1]}: {self.climate}" if self.climate and self.month else ""


def system_message(ctx: BriefContext) -> str:
    language = LANGUAGES.get(ctx.locale, f"the language of {ctx.locale}")
    lines = [f"You are a local copywriter in {ctx.region_name} ({ctx.locale}). Write in {language}, in the "
             f"voice of people who live there: local places, spelling, currency and seasons, never generic."]
    if ctx.season:
        lines.append(f"This month, {ctx.season}")
    lines.append(TASK_GUIDANCE[ctx.task_type])
    return "\n".join(lines)


def messages(ctx: BriefContext) -> list[dict[str, str]]:
    """The chat messages for one brief: the system context, then the brief as the user's request."""
    return [{"role": "system", "content": system_message(ctx)}, {"role": "user", "content": ctx.brief}]


def plain_prompt(ctx: BriefContext) -> str:
    """The plain text prompt for models without a chat template; the completion follows directly after it."""
    return format_prompt(ctx.region_name, ctx.locale, ctx.task_type, ctx.brief)


def format_prompt(region_name: str, locale: str, task_type: str, brief: str) -> str:
    """The plain text format, from its parts.

    Example:
        >>> format_prompt("Manchester", "en-GB", "email_subject", "Autumn menu launch")
        'Region: Manchester (en-GB)\\nTask: email subject line\\nBrief: Autumn menu launch\\nCopy:\\n'
    """
    return f"Region: {region_name} ({locale})\nTask: {TASK_LABELS[task_type]}\nBrief: {brief.strip()}\nCopy:\n"


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_for(tokenizer: Any) -> str:
    """The dataset prompt format a tokenizer trains on: conversational when it has a chat template."""
    return "conversational" if has_chat_template(tokenizer) else "text"


def render(tokenizer: Any, ctx: BriefContext) -> str:
    """The exact text a policy is prompted with: its chat template with the generation prompt, or plain text."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages(ctx), tokenize=False, add_generation_prompt=True)
    return plain_prompt(ctx)


def dataset_prompt(ctx: BriefContext, prompt_format: str) -> str | list[dict[str, str]]:
    """The ``prompt`` column of a dataset row in ``prompt_format``."""
    if prompt_format == "conversational":
        return messages(ctx)
    if prompt_format == "text":
        return plain_prompt(ctx)
    if prompt_format == "raw":
        return ctx.brief
    raise ValueError(f"unknown prompt format {prompt_format!r}; choose from {', '.join(PROMPT_FORMATS)}")


def dataset_completion(text: str, prompt_format: str) -> str | list[dict[str, str]]:
    """A completion (or chosen/rejected) column value: one assistant message in the conversational format."""
    return [{"role": "assistant", "content": text}] if prompt_format == "conversational" else text


def completion_text(value: str | list[dict[str, str]]) -> str:
    """The text of a completion in either format (TRL passes conversational completions as message lists)."""
    return value if isinstance(value, str) else value[-1]["content"]
