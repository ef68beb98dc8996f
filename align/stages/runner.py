"""The stage registry: which module trains which stage, and ``run_stage`` to run one by name."""

from __future__ import annotations

from collections.abc import Callable

from align.stages.common import StageInputs, StageResult


def _registry() -> dict[str, Callable[[StageInputs, list], StageResult]]:
    """Stage name -> its module's ``run``: a new stage is a new module and an entry here."""
    # lazy: every stage imports transformers and TRL, which align.rounds (on the Rounds page) must not pull in
    from align.stages.dpo import run as dpo
    from align.stages.reward import run as reward
    from align.stages.rl import run as rl
    from align.stages.sft import run as sft

    return {"sft": sft, "reward": reward, "dpo": dpo, "rl": rl}


def run_stage(inputs: StageInputs, callbacks: list | None = None) -> StageResult:
    """Run one stage by name, its output under ``inputs.stage_dir``."""
    inputs.stage_dir.mkdir(parents=True, exist_ok=True)
    return _registry()[inputs.stage](inputs, callbacks or [])
