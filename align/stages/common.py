"""What every stage shares: its inputs and result, reading the snapshot, TRL arguments, atomic saves, metrics.

The stage modules (``sft``, ``reward``, ``dpo``, ``rl``) import these from here, never from the package, so the
package's ``__init__`` (which re-exports them for callers) sits above its stages and no import goes round in a
circle.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from align.config import RoundConfig, load_config
from db.errors import GeoAlignError

log = logging.getLogger(__name__)


class StageCancelled(GeoAlignError):
    """Raised from inside a trainer when the round's job was cancelled."""


@dataclass
class StageInputs:
    """What a stage needs; JSON-serialisable (except callbacks) so a launched subprocess can rebuild it."""

    stage: str
    workdir: str  # the round directory
    config: dict[str, dict[str, Any]]  # RoundConfig.raw
    base_model: str
    adapter_in: str | None  # the policy adapter the stage continues from; None = a fresh LoRA on the base
    reward_model: str | None = None  # for rl: the reward model directory (this round's or the latest)
    region_rules: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # code -> local/avoid terms

    @property
    def data_dir(self) -> Path:
        return Path(self.workdir) / "data"

    @property
    def stage_dir(self) -> Path:
        return Path(self.workdir) / "stages" / self.stage

    def round_config(self) -> RoundConfig:
        return load_config(self.config)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


@dataclass
class StageResult:
    """What a stage produced: an adapter (policy stages) or a reward model, and its metrics."""

    stage: str
    adapter: str | None = None
    reward_model: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why the stage did not train, e.g. too few preference pairs


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def to_dataset(rows: list[dict], columns: tuple[str, ...]):
    """A ``datasets.Dataset`` with only ``columns`` (TRL rejects unexpected nested metadata)."""
    from datasets import Dataset  # lazy: datasets imports torch, and align.rounds (on the Rounds page) imports this

    return Dataset.from_list([{c: r[c] for c in columns} for r in rows])


def save_atomically(save: Callable[[str], None], dest: Path) -> str:
    """Call ``save(tmp_dir)`` and rename the result to ``dest``: readers see the old directory or the new one."""
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save(str(tmp))
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return str(dest)


def train_with_resume(trainer, output_dir: Path) -> Any:
    """Train, continuing from the last checkpoint in ``output_dir`` if a previous attempt left one."""
    from transformers.trainer_utils import get_last_checkpoint  # lazy: transformers off the Rounds page's imports

    last = get_last_checkpoint(str(output_dir)) if output_dir.exists() else None
    if last:
        log.info("resuming from checkpoint %s", last)
    return trainer.train(resume_from_checkpoint=last)


def early_stopping(config: RoundConfig, has_eval: bool, steps_per_epoch: int, total_steps: int) -> tuple[dict, list]:
    """TrainingArguments overrides and callbacks for early stopping on validation loss.

    Nothing without val data, and nothing when the run is too short to ever stop: patience ``p`` needs ``p + 1``
    evaluations, and each would cost an evaluation and a checkpoint for no possible gain.
    """
    patience = config.settings.early_stopping_patience
    every = max(1, steps_per_epoch // 2)  # twice an epoch: enough signal, little eval overhead
    if not has_eval or patience <= 0 or total_steps // every <= patience:
        return {"eval_strategy": "no"}, []
    from transformers import EarlyStoppingCallback  # lazy: transformers off the Rounds page's imports

    return ({"eval_strategy": "steps", "eval_steps": every, "save_strategy": "steps", "save_steps": every,
             "load_best_model_at_end": True, "metric_for_best_model": "eval_loss", "greater_is_better": False},
            [EarlyStoppingCallback(early_stopping_patience=patience)])


def checkpoints(inputs: StageInputs) -> Path:
    return inputs.stage_dir / "checkpoints"


def stage_args(inputs: StageInputs, config: RoundConfig, n_train: int, has_val: bool, **extra) -> tuple[Any, list]:
    """The stage's TRL config with early stopping set up from the data size, and the callbacks it needs."""
    probe = config.stage_args(inputs.stage, checkpoints(inputs))
    steps_per_epoch = math.ceil(n_train / (probe.per_device_train_batch_size * probe.world_size))
    total = probe.max_steps if probe.max_steps > 0 else math.ceil(steps_per_epoch * probe.num_train_epochs)
    overrides, callbacks = early_stopping(config, has_val, steps_per_epoch, total)
    return config.stage_args(inputs.stage, checkpoints(inputs), **overrides, **extra), callbacks


def too_few_pairs(inputs: StageInputs, config: RoundConfig, n: int, **kept) -> StageResult | None:
    """A written 'skipped' result when there are fewer preference pairs than the config asks for, else None."""
    minimum = config.settings.min_preference_pairs
    if n >= minimum:
        return None
    reason = f"{n} preference pairs, fewer than round.min_preference_pairs ({minimum})"
    return write_result(inputs, StageResult(inputs.stage, skipped=reason, **kept))


def finish_policy(inputs: StageInputs, trainer, args, metrics: dict) -> StageResult:
    """Rank 0 saves the adapter atomically and writes the result; other ranks (under accelerate) just return."""
    if args.process_index != 0:
        return StageResult(inputs.stage, metrics=metrics)
    adapter = save_atomically(trainer.save_model, inputs.stage_dir / "adapter")
    return write_result(inputs, StageResult(inputs.stage, adapter=adapter, metrics=metrics))


def write_result(inputs: StageInputs, result: StageResult) -> StageResult:
    """Write ``result.json`` last: its presence is what marks the stage complete."""
    path = inputs.stage_dir / "result.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(result), indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return result


def read_result(workdir: str | Path, stage: str) -> StageResult | None:
    path = Path(workdir) / "stages" / stage / "result.json"
    return StageResult(**json.loads(path.read_text(encoding="utf-8"))) if path.exists() else None


def train_metrics(trainer, output, extra_tokens: int = 0) -> dict[str, Any]:
    """Runtime, steps, final train loss and tokens/s of a finished trainer."""
    runtime = float(output.metrics.get("train_runtime", 0.0)) or 1e-9
    tokens = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0) or extra_tokens or _dataset_tokens(trainer)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    return {"train_runtime_s": round(runtime, 2), "steps": trainer.state.global_step,
            "train_loss": round(float(output.training_loss), 4),
            "final_logged_loss": round(losses[-1], 4) if losses else None,
            "best_eval_loss": round(min(evals), 4) if evals else None,
            "tokens": tokens, "tokens_per_s": round(tokens / runtime, 1), "world_size": trainer.args.world_size,
            "rank": trainer.args.process_index, "rank_batches_per_epoch": _batches(trainer),
            "early_stopping": early_stopping_outcome(trainer)}


def early_stopping_outcome(trainer) -> str:
    """Whether early stopping watched this run and whether it stopped it (so a run that never could is visible)."""
    if str(getattr(trainer.args.eval_strategy, "value", trainer.args.eval_strategy)) == "no":
        return "off (no validation data, or too few steps to ever stop)"
    planned, done = trainer.state.max_steps, trainer.state.global_step
    return f"stopped at step {done} of {planned}" if done < planned else f"on; ran all {planned} steps"


def _batches(trainer) -> int | None:
    """Batches one rank draws per epoch (under accelerate each rank gets its shard of the data)."""
    try:
        return len(trainer.get_train_dataloader())
    except TypeError:  # an iterable dataset has no length
        return None


def _dataset_tokens(trainer) -> int:
    """Tokens the trainer went through: tokenized train columns × epochs (TRL counts them only for GRPO/RLOO)."""
    data = trainer.train_dataset
    columns = [c for c in ("input_ids", "prompt_ids", "chosen_ids", "rejected_ids", "completion_ids")
               if data is not None and c in data.column_names]
    per_epoch = sum(len(ids) for c in columns for ids in data[c])
    return int(per_epoch * float(trainer.state.epoch or 1))
