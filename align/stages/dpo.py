"""DPO: TRL ``DPOTrainer`` on the policy's LoRA adapter; the reference is a frozen copy of the starting adapter."""

from __future__ import annotations

import math

from align.stages import (
    StageInputs,
    StageResult,
    early_stopping,
    read_jsonl,
    save_atomically,
    to_dataset,
    train_metrics,
    train_with_resume,
    write_result,
)
from align.stages.policy import load_trainable_policy

COLUMNS = ("prompt", "chosen", "rejected")


def run(inputs: StageInputs, callbacks: list) -> StageResult:
    from trl import DPOTrainer

    config = inputs.round_config()
    train, val = read_jsonl(inputs.data_dir / "pref_train.jsonl"), read_jsonl(inputs.data_dir / "pref_val.jsonl")
    if len(train) < config.settings.min_preference_pairs:
        return write_result(inputs, StageResult(
            "dpo", adapter=inputs.adapter_in,
            skipped=f"{len(train)} preference pairs, fewer than round.min_preference_pairs "
                    f"({config.settings.min_preference_pairs})"))
    model, tokenizer, peft_config = load_trainable_policy(inputs.base_model, inputs.adapter_in, config.lora())
    probe = config.stage_args("dpo", inputs.stage_dir / "checkpoints")
    steps_per_epoch = math.ceil(len(train) / (probe.per_device_train_batch_size * probe.world_size))
    overrides, stop_cbs = early_stopping(config, bool(val), steps_per_epoch)
    args = config.stage_args("dpo", inputs.stage_dir / "checkpoints", **overrides)
    trainer = DPOTrainer(model=model, args=args, train_dataset=to_dataset(train, COLUMNS),
                         eval_dataset=to_dataset(val, COLUMNS) if val else None, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=callbacks + stop_cbs)
    output = train_with_resume(trainer, inputs.stage_dir / "checkpoints")
    metrics = train_metrics(trainer, output) | {"train_pairs": len(train), "val_pairs": len(val)}
    if val:
        ev = trainer.evaluate()
        metrics |= {"eval_loss": round(ev["eval_loss"], 4),
                    "eval_reward_accuracy": round(ev.get("eval_rewards/accuracies", float("nan")), 4)}
    if args.process_index != 0:  # under accelerate, rank 0 saves and writes the result
        return StageResult("dpo", metrics=metrics)
    adapter = save_atomically(trainer.save_model, inputs.stage_dir / "adapter")
    return write_result(inputs, StageResult("dpo", adapter=adapter, metrics=metrics))
