"""DPO: TRL ``DPOTrainer`` on the policy's LoRA adapter; the reference is a frozen copy of the starting adapter.

It trains on the pairs voted since the parent was published plus a replay sample of older ones, so a round does
not push the parent's pairs further again with the reference reset (see ``align.rounds.snapshot_datasets``).
"""

from __future__ import annotations

from trl import DPOTrainer

from align.stages.common import (
    StageInputs,
    StageResult,
    checkpoints,
    finish_policy,
    read_jsonl,
    stage_args,
    to_dataset,
    too_few_pairs,
    train_metrics,
    train_with_resume,
    write_result,
)
from align.stages.policy import load_trainable_policy

COLUMNS = ("prompt", "chosen", "rejected")


def run(inputs: StageInputs, callbacks: list) -> StageResult:
    config = inputs.round_config()
    # what is new since the parent plus a replay sample (align.rounds.snapshot_datasets), not every vote so far
    train, val = read_jsonl(inputs.data_dir / "dpo_train.jsonl"), read_jsonl(inputs.data_dir / "pref_val.jsonl")
    if not train:
        return write_result(inputs, StageResult("dpo", adapter=inputs.adapter_in,
                                                skipped="no new preference pairs since the parent"))
    skipped = too_few_pairs(inputs, config, len(train), adapter=inputs.adapter_in)
    if skipped:
        return skipped
    model, tokenizer, peft_config = load_trainable_policy(inputs.base_model, inputs.adapter_in, config.lora())
    args, stop_callbacks = stage_args(inputs, config, len(train), bool(val))
    trainer = DPOTrainer(model=model, args=args, train_dataset=to_dataset(train, COLUMNS),
                         eval_dataset=to_dataset(val, COLUMNS) if val else None, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=callbacks + stop_callbacks)
    output = train_with_resume(trainer, checkpoints(inputs))
    metrics = train_metrics(trainer, output) | {"train_pairs": len(train), "val_pairs": len(val)}
    if val:
        ev = trainer.evaluate()
        metrics |= {"eval_loss": round(ev["eval_loss"], 4),
                    "eval_reward_accuracy": round(ev.get("eval_rewards/accuracies", float("nan")), 4)}
    return finish_policy(inputs, trainer, args, metrics)
