"""Reward model: TRL ``RewardTrainer`` on all preference pairs so far, with ``margin`` from vote strength/agreement.

Reports validation accuracy and accuracy on the newest round's votes alone (how well the model follows what
reviewers say now, i.e. reward-model drift), with the previous reward model's accuracy on those votes beside it.
"""

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

COLUMNS = ("prompt", "chosen", "rejected", "margin")


def run(inputs: StageInputs, callbacks: list) -> StageResult:
    from trl import RewardTrainer

    from rewards.reward_model import RewardScorer, load_backbone

    config = inputs.round_config()
    train, val = read_jsonl(inputs.data_dir / "pref_train.jsonl"), read_jsonl(inputs.data_dir / "pref_val.jsonl")
    newest = read_jsonl(inputs.data_dir / "pref_newest.jsonl")
    if len(train) < config.settings.min_preference_pairs:
        return write_result(inputs, StageResult(
            "reward", reward_model=inputs.reward_model,
            skipped=f"{len(train)} preference pairs, fewer than round.min_preference_pairs "
                    f"({config.settings.min_preference_pairs})"))
    model, tokenizer = load_backbone(config.settings.reward_backbone)
    probe = config.stage_args("reward", inputs.stage_dir / "checkpoints")
    steps_per_epoch = math.ceil(len(train) / (probe.per_device_train_batch_size * probe.world_size))
    overrides, stop_cbs = early_stopping(config, bool(val), steps_per_epoch)
    if tokenizer.eos_token is not None:
        overrides["eos_token"] = tokenizer.eos_token  # [SEP] only for BERT-style encoders without an eos
    args = config.stage_args("reward", inputs.stage_dir / "checkpoints", **overrides)
    trainer = RewardTrainer(model=model, args=args, train_dataset=to_dataset(train, COLUMNS),
                            eval_dataset=to_dataset(val, COLUMNS) if val else None, processing_class=tokenizer,
                            callbacks=callbacks + stop_cbs)
    output = train_with_resume(trainer, inputs.stage_dir / "checkpoints")
    metrics = train_metrics(trainer, output) | {"train_pairs": len(train), "val_pairs": len(val),
                                                "newest_pairs": len(newest)}
    if args.process_index != 0:
        return StageResult("reward", reward_model=str(inputs.stage_dir / "model"), metrics=metrics)

    def save(path: str) -> None:
        trainer.save_model(path)
        tokenizer.save_pretrained(path)

    path = save_atomically(save, inputs.stage_dir / "model")
    scorer = RewardScorer(path, eos_token=args.eos_token or tokenizer.eos_token)
    metrics |= {"val_accuracy": _round(scorer.accuracy(val)), "train_accuracy": _round(scorer.accuracy(train)),
                "newest_accuracy": _round(scorer.accuracy(newest))}
    if inputs.reward_model and newest:  # the previous model on today's votes: how far reviewers have moved
        metrics["newest_accuracy_previous_model"] = _round(RewardScorer(inputs.reward_model).accuracy(newest))
    return write_result(inputs, StageResult("reward", reward_model=path, metrics=metrics))


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
