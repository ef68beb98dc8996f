"""What a round works from (``RoundPlan``) and where it reports to (``Reporter``), shared by rounds and evaluation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from align.config import RoundConfig
from align.jobs import JobContext

log = logging.getLogger(__name__)


@dataclass
class Reporter:
    """Progress and log lines to the job (in the worker) or to the log (``--now`` in a terminal)."""

    ctx: JobContext | None

    def progress(self, **fields) -> None:
        """Merge ``fields`` into the job's progress; nothing without a job."""
        if self.ctx:
            self.ctx.progress(**fields)

    def log(self, message: str) -> None:
        """A line in the job's log, or in the process log without a job."""
        (self.ctx.log if self.ctx else log.info)(message)

    def cancelled(self) -> bool:
        """Whether someone asked to cancel the job (never, without one)."""
        return bool(self.ctx and self.ctx.cancel_requested())


@dataclass
class RoundPlan:
    """What a round works from, read once from the database."""

    round_id: int
    number: int
    region: str | None
    config: RoundConfig
    base_model: str
    parent_name: str
    parent_adapter: str | None
    parent_reward_model: str | None  # the newest of the scope, maybe a reward-only version's (round_parents)
    completed: list[str]
    region_rules: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    prompt_format: str = "text"  # conversational when the base model's tokenizer has a chat template
    parent_published_at: datetime | None = None  # data newer than this is what the round has that its parent had not
