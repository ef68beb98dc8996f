"""Reward model: TRL ``RewardTrainer`` on all preference pairs so far, with ``margin`` from vote strength/agreement.

With ``round.vote_weighting: reliability`` the snapshot's margins are reliability-weighted agreement × strength
(``collect.datasets``): the rows a near-random clicker alone voted for ask for almost no gap, and pairs decided by
reliable reviewers for most of it. The trainer reads ``margin`` as ever; nothing here changes with the setting.

Reports validation accuracy and accuracy on the newest round's votes alone (how well the model follows what
reviewers say now, i.e. reward-model drift), with the previous reward model's accuracy on those votes beside it.
Validation accuracy is the trainer's own evaluation (``eval_accuracy``) of the model it keeps: taken from training's
last evaluation when that one measured it, otherwise one ``trainer.evaluate()`` after training. Train accuracy is
measured on a fixed sample of at most ``TRAIN_SAMPLE`` pairs (``train_sample_accuracy``), not on every pair.
"""

from __future__ import annotations

import random

from tqdm.auto import tqdm
from trl import RewardTrainer

from align.stages.common import (
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
from rewards.reward_model import RewardScorer, load_backbone

COLUMNS = ("prompt", "chosen", "rejected", "margin")
TRAIN_SAMPLE = 256  # enough to tell memorising (near 1.0) from fitting, at a bounded cost however many votes exist


def run(inputs: StageInputs, callbacks: list) -> StageResult:
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
                                                "newest_pairs": len(newest), "val_accuracy": None}
    if val:  # before the rank check: under accelerate every rank takes part in an evaluation
        metrics |= val_accuracy(trainer)
    if args.process_index != 0:
        return StageResult("reward", reward_model=str(inputs.stage_dir / "model"), metrics=metrics)

    def save(path: str) -> None:
        trainer.save_model(path)
        tokenizer.save_pretrained(path)

    path = save_atomically(save, inputs.stage_dir / "model")
    scorer = RewardScorer(path, eos_token=args.eos_token or tokenizer.eos_token)
    sample = random.Random(config.settings.seed).sample(train, min(len(train), TRAIN_SAMPLE))
    show = not args.disable_tqdm
    metrics |= {"newest_accuracy": accuracy(scorer, newest, "newest votes", show),
                "train_sample_accuracy": accuracy(scorer, sample, "train sample", show),
                "train_sample_pairs": len(sample)}
    if inputs.reward_model and newest:  # the previous model on today's votes: how far reviewers have moved
        previous = RewardScorer(inputs.reward_model)
        metrics["newest_accuracy_previous_model"] = accuracy(previous, newest, "newest votes, previous model", show)
    return write_result(inputs, StageResult("reward", reward_model=path, metrics=metrics))


def val_accuracy(trainer) -> dict[str, float | str | None]:
    """The trainer's validation accuracy of the model it ended with, without a second pass when it has one."""
    state = trainer.state
    # with load_best_model_at_end the kept model is the best checkpoint's, evaluated at that step
    step = state.best_global_step if trainer.args.load_best_model_at_end and state.best_global_step \
        else state.global_step
    logged = [h["eval_accuracy"] for h in state.log_history if "eval_accuracy" in h and h.get("step") == step]
    if logged:
        return {"val_accuracy": _round(logged[-1]), "val_accuracy_from": f"evaluation at step {step} of training"}
    measured = trainer.evaluate().get("eval_accuracy")
    return {"val_accuracy": _round(measured), "val_accuracy_from": "one evaluation after training"}


def accuracy(scorer, rows: list[dict], label: str, show: bool) -> float | None:
    """``scorer.accuracy(rows)`` in batches, with a progress bar (the scores of a large set take a while)."""
    if not rows:
        return None
    right = 0
    with tqdm(total=len(rows), desc=f"reward: scoring {label}", unit="pair", disable=not show) as bar:
        for start in range(0, len(rows), scorer.batch_size):
            chunk = rows[start:start + scorer.batch_size]
            right += round(scorer.accuracy(chunk) * len(chunk))
            bar.update(len(chunk))
    return _round(right / len(rows))


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
