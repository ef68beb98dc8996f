"""SFT: TRL ``SFTTrainer`` with LoRA on gold examples and reviewer rewrites (prompt/completion, loss on completion).

A first round trains on every gold example; later ones on what is new since the parent plus a replay sample.
"""

from __future__ import annotations

from trl import SFTTrainer

from align.stages.common import (
    StageInputs,
    StageResult,
    checkpoints,
    finish_policy,
    read_jsonl,
    stage_args,
    to_dataset,
    train_metrics,
    train_with_resume,
    write_result,
)
from align.stages.policy import load_trainable_policy
from db.errors import ConfigError

COLUMNS = ("prompt", "completion")


def run(inputs: StageInputs, callbacks: list) -> StageResult:
    config = inputs.round_config()
    train, val = read_jsonl(inputs.data_dir / "sft_train.jsonl"), read_jsonl(inputs.data_dir / "sft_val.jsonl")
    if not train:
        return write_result(inputs, StageResult("sft", adapter=inputs.adapter_in,
                                                skipped="no new examples or rewrites since the parent"))
    model, tokenizer, peft_config = load_trainable_policy(inputs.base_model, inputs.adapter_in, config.lora())
    args, stop_callbacks = stage_args(inputs, config, len(train), bool(val))
    trainer = SFTTrainer(model=model, args=args, train_dataset=to_dataset(train, COLUMNS),
                         eval_dataset=to_dataset(val, COLUMNS) if val else None, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=callbacks + stop_callbacks)
    if len(trainer.train_dataset) == 0:  # TRL drops rows whose copy is cut off entirely by max_length
        raise ConfigError(f"sft: all {len(train)} rows lose their copy to truncation at max_length "
                          f"{args.max_length} tokens; raise sft.max_length")
    output = train_with_resume(trainer, checkpoints(inputs))
    metrics = train_metrics(trainer, output) | {"train_rows": len(train), "val_rows": len(val)}
    if val:
        metrics["eval_loss"] = round(trainer.evaluate()["eval_loss"], 4)
    return finish_policy(inputs, trainer, args, metrics)
