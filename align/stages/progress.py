"""A trainer callback that reports a stage's progress to its job and stops the stage when the job is cancelled."""

from __future__ import annotations

import time
from collections.abc import Callable

from transformers import TrainerCallback

from align.stages.common import StageCancelled

CANCEL_CHECK_S = 1.0  # at most one database read per second, however fast the steps are


class StageProgress(TrainerCallback):
    """Reports step, total and losses to ``report`` and stops training when ``cancelled()`` says so."""

    def __init__(self, stage: str, report: Callable[..., None] | None = None,
                 cancelled: Callable[[], bool] | None = None):
        self.stage, self.report, self.cancelled = stage, report, cancelled
        self._checked = 0.0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.report and state.is_world_process_zero and logs:
            point = {"stage": self.stage, "step": state.global_step}
            point |= {k: round(float(v), 5) for k, v in logs.items()
                      if isinstance(v, int | float) and ("loss" in k or "reward" in k or "accuracy" in k)}
            self.report(stage=self.stage, step=state.global_step, total=state.max_steps, history_point=point)

    def on_step_end(self, args, state, control, **kwargs):
        if self.cancelled is None or time.monotonic() - self._checked < CANCEL_CHECK_S:
            return
        self._checked = time.monotonic()
        if self.cancelled():
            raise StageCancelled(f"cancelled during {self.stage} at step {state.global_step}")
