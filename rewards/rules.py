"""Rule-based regional reward: local terms, references to avoid, length and format for the task type.

Scores are in [-1, 1] so they combine with a reward model's scores by plain weights (GRPO's ``reward_weights``).
The rules are deliberately simple and explainable; ``explain`` returns the parts for a reviewer or a log line.

Example:
    >>> profile = RegionRules(local_terms=("y'all", "breakfast tacos"), avoid_terms=("autumn",))
    >>> round(regional_reward("Y'all, breakfast tacos are back on South Congress!", profile, "social_post"), 2)
    0.62
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# (min, max) characters that read as finished copy of each task type; the channels' own limits set the maximum
# (Google shows ~155 characters of a meta description, subject lines are cut near 60 on phones).
LENGTH_BOUNDS = {
    "ad_copy": (60, 300),
    "meta_description": (70, 160),
    "social_post": (40, 280),
    "email_subject": (15, 70),
}
WEIGHTS = {"local": 0.4, "avoid": 0.6, "length": 0.3, "format": 0.3}
_PROMPT_ECHO = re.compile(r"^(Region|Task|Brief|Copy):", re.MULTILINE)


@dataclass(frozen=True)
class RegionRules:
    """What the rules know of a region: its local vocabulary and the references that belong elsewhere."""

    local_terms: tuple[str, ...] = ()
    avoid_terms: tuple[str, ...] = ()

    @classmethod
    def from_profile(cls, profile: Mapping) -> RegionRules:
        """From a region row or dict with ``local_terms`` and ``avoid_terms``."""
        get = profile.get if isinstance(profile, Mapping) else lambda k, d=(): getattr(profile, k, d)
        return cls(tuple(get("local_terms", ()) or ()), tuple(get("avoid_terms", ()) or ()))


def _contains(text: str, term: str) -> bool:
    # word boundaries where the term starts/ends with a word character, so "£" and "SoCo" both work
    left = r"\b" if term[:1].isalnum() else ""
    right = r"\b" if term[-1:].isalnum() else ""
    return re.search(left + re.escape(term) + right, text, re.IGNORECASE) is not None


def explain(text: str, rules: RegionRules, task_type: str) -> dict[str, float]:
    """The parts of the reward, each in [-1, 1] before weighting."""
    text = text.strip()
    local_hits = sum(_contains(text, t) for t in rules.local_terms)
    avoid_hits = sum(_contains(text, t) for t in rules.avoid_terms)
    lo, hi = LENGTH_BOUNDS.get(task_type, (20, 300))
    n = len(text)
    if lo <= n <= hi:
        length = 1.0
    elif n < lo:
        length = -1.0 + n / lo  # grows to 0 as it approaches the minimum
    else:
        length = max(-1.0, -(n - hi) / hi)
    words = text.split()
    repeated = len(words) > 4 and len(set(w.lower() for w in words)) / len(words) < 0.5
    fmt = -1.0 if (not text or _PROMPT_ECHO.search(text) or repeated) else 1.0
    return {"local": min(local_hits, 2) / 2, "avoid": -min(avoid_hits, 2) / 2, "length": length, "format": fmt}


def regional_reward(text: str, rules: RegionRules, task_type: str) -> float:
    """Weighted sum of ``explain``'s parts, scaled to [-1, 1]."""
    parts = explain(text, rules, task_type)
    return sum(WEIGHTS[k] * v for k, v in parts.items()) / sum(WEIGHTS.values())


def rule_reward_func(rules_by_region: Mapping[str, RegionRules]):
    """A TRL reward function ``(completions, region, task_type, **kwargs) -> list[float]`` over dataset columns."""

    def regional_rules(completions: list, region: list[str], task_type: list[str], **_) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        return [regional_reward(t, rules_by_region.get(r, RegionRules()), tt)
                for t, r, tt in zip(texts, region, task_type, strict=True)]

    return regional_rules
