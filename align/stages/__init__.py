"""Training stages of a round. A stage is a module with ``run(inputs, callbacks) -> StageResult`` plus an entry in
``align.stages.runner``'s registry.

Stages know nothing of the database: they read the round's dataset snapshot (JSONL files written by
``align.rounds``) and write under their own directory, so they run the same in the worker, in a test or under
``accelerate launch`` (see ``align.stages.__main__``). A stage is complete when its ``result.json`` exists; the
adapter it produced is written to a temporary directory and renamed into place first.

What stages share lives in ``align.stages.common``; this package re-exports it for callers, while the stage modules
import it from ``common`` itself, so that nothing inside the package imports the package.
"""

from align.stages.common import (
    StageCancelled,
    StageInputs,
    StageResult,
    checkpoints,
    early_stopping,
    early_stopping_outcome,
    finish_policy,
    read_jsonl,
    read_result,
    save_atomically,
    stage_args,
    to_dataset,
    too_few_pairs,
    train_metrics,
    train_with_resume,
    write_result,
)
from align.stages.runner import run_stage

__all__ = [
    "StageCancelled",
    "StageInputs",
    "StageResult",
    "checkpoints",
    "early_stopping",
    "early_stopping_outcome",
    "finish_policy",
    "read_jsonl",
    "read_result",
    "run_stage",
    "save_atomically",
    "stage_args",
    "to_dataset",
    "too_few_pairs",
    "train_metrics",
    "train_with_resume",
    "write_result",
]
