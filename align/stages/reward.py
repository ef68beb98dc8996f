"""Reward model: TRL ``RewardTrainer`` on all preference pairs so far, with ``margin`` from vote strength/agreement.

Reports validation accuracy and accuracy on the newest round's votes alone (how well the model follows what
reviewers say now, i.e. reward-model drift), with the previous reward model's accuracy on those votes beside it.
"""

from __future__ import annotations

from align.stages import (
    StageInputs,
    StageResult,
    checkpoints,
    read_jsonl,
    save_atomically,
    stage_args,
    to_dataset,
    too_few_pairs,
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
    skipped = too_few_pairs(inputs, config, len(train), reward_model=inputs.reward_model)
    if skipped:
        return skipped
    model, tokenizer = load_backbone(config.settings.reward_backbone)
    # [SEP] stands in for eos only for BERT-style encoders that have none
    extra = {"eos_token": tokenizer.eos_token} if tokenizer.eos_token is not None else {}
    args, stop_callbacks = stage_args(inputs, config, len(train), bool(val), **extra)
    trainer = RewardTrainer(model=model, args=args, train_dataset=to_dataset(train, COLUMNS),
                            eval_dataset=to_dataset(val, COLUMNS) if val else None, processing_class=tokenizer,
                            callbacks=callbacks + stop_callbacks)
    output = train_with_resume(trainer, checkpoints(inputs))
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
