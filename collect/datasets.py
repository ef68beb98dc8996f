"""Training datasets built from the database as plain rows; the test split can never reach them."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from collect.prompting import format_prompt
from db.errors import ValidationError
from db.models import Example, Prompt, Region, Split

TRAINABLE_SPLITS = frozenset({Split.train, Split.val})


def _checked_splits(splits: Iterable[str | Split]) -> list[Split]:
    wanted = [Split(s) for s in splits]
    if Split.test in wanted:
        raise ValidationError("the test split is held out for evaluation and never goes into a training dataset")
    return wanted


def sft_rows(session: Session, splits: Iterable[str | Split] = ("train",), region: str | None = None) -> list[dict]:
    """Gold examples as ``{"prompt", "completion", "region", "task_type", "split"}`` dicts (TRL prompt-completion)."""
    wanted = _checked_splits(splits)
    stmt = (select(Example.text, Prompt.text, Prompt.task_type, Prompt.split, Region.code, Region.name, Region.locale)
            .join(Prompt, Example.prompt_id == Prompt.id).join(Region, Prompt.region_id == Region.id)
            .where(Prompt.split.in_(wanted)).order_by(Example.id))
    if region is not None:
        stmt = stmt.where(Region.code == region)
    return [
        {"prompt": format_prompt(name, locale, task.value, brief), "completion": text, "region": code,
         "task_type": task.value, "split": split.value}
        for text, brief, task, split, code, name, locale in session.execute(stmt)
    ]
