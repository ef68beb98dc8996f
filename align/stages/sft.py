"""SFT: TRL ``SFTTrainer`` with LoRA on gold examples and reviewer rewrites (prompt/completion, loss on completion)."""

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

COLUMNS = ("prompt", "completion")


def run(inputs: StageInputs, callbacks: list) -> StageResult:
    from trl import SFTTrainer

    config = inputs.round_config()
    train, val = read_jsonl(inputs.data_dir / "sft_train.jsonl"), read_jsonl(inputs.data_dir / "sft_val.jsonl")
    if not train:
        return write_result(inputs, StageResult("sft", adapter=inputs.adapter_in, skipped="no SFT examples"))
    model, tokenizer, peft_config = load_trainable_policy(inputs.base_model, inputs.adapter_in, config.lora())
    probe = config.stage_args("sft", inputs.stage_dir / "checkpoints")
    steps_per_epoch = math.ceil(len(train) / (probe.per_device_train_batch_size * probe.world_size))
    overrides, stop_cbs = early_stopping(config, bool(val), steps_per_epoch)
    args = config.stage_args("sft", inputs.stage_dir / "checkpoints", **overrides)
    trainer = SFTTrainer(model=model, args=args, train_dataset=to_dataset(train, COLUMNS),
                         eval_dataset=to_dataset(val, COLUMNS) if val else None, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=callbacks + stop_cbs)
    output = train_with_resume(trainer, inputs.stage_dir / "checkpoints")
    metrics = train_metrics(trainer, output) | {"train_rows": len(train), "val_rows": len(val)}
    if val:
        metrics["eval_loss"] = round(trainer.evaluate()["eval_loss"], 4)
    if args.process_index != 0:  # under accelerate, rank 0 saves and writes the result
        return StageResult("sft", metrics=metrics)
    adapter = save_atomically(trainer.save_model, inputs.stage_dir / "adapter")
    return write_result(inputs, StageResult("sft", adapter=adapter, metrics=metrics))
