"""DPO: TRL ``DPOTrainer`` on the policy's LoRA adapter; the reference is a frozen copy of the starting adapter.

It trains on the pairs voted since the parent was published plus a replay sample of older ones, so a round does
not push the parent's pairs further again with the reference reset (see ``align.rounds.snapshot_datasets``).

With ``round.vote_weighting: reliability`` the rows carry ``vote_weight`` (``collect.datasets``: how far the
reviewers behind a pair are to be trusted) and ``WeightedDPOTrainer`` multiplies each pair's loss by it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
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
WEIGHT_COLUMN = "vote_weight"  # written by collect.datasets.preference_rows when a reliability is given
BATCH_COUPLED_LOSSES = ("aot", "aot_unpaired")  # they sort a batch's pairs against each other: no per-pair loss


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
    weighted = config.settings.vote_weighting == "reliability" and all(WEIGHT_COLUMN in r for r in train)
    model, tokenizer, peft_config = load_trainable_policy(inputs.base_model, inputs.adapter_in, config.lora())
    args, stop_callbacks = stage_args(inputs, config, len(train), bool(val))
    trainer_cls, extra = (WeightedDPOTrainer, {"weight_column": WEIGHT_COLUMN}) if weighted else (DPOTrainer, {})
    train_columns = (*COLUMNS, WEIGHT_COLUMN) if weighted else COLUMNS
    val_columns = (*COLUMNS, WEIGHT_COLUMN) if weighted and all(WEIGHT_COLUMN in r for r in val) else COLUMNS
    trainer = trainer_cls(model=model, args=args, train_dataset=to_dataset(train, train_columns),
                          eval_dataset=to_dataset(val, val_columns) if val else None, processing_class=tokenizer,
                          peft_config=peft_config, callbacks=callbacks + stop_callbacks, **extra)
    output = train_with_resume(trainer, checkpoints(inputs))
    metrics = train_metrics(trainer, output) | {"train_pairs": len(train), "val_pairs": len(val)}
    if weighted:
        metrics["mean_vote_weight"] = round(sum(r[WEIGHT_COLUMN] for r in train) / len(train), 4)
    if val:
        ev = trainer.evaluate()
        metrics |= {"eval_loss": round(ev["eval_loss"], 4),
                    "eval_reward_accuracy": round(ev.get("eval_rewards/accuracies", float("nan")), 4)}
    return finish_policy(inputs, trainer, args, metrics)


@dataclass
class WeightedPreferenceCollator:
    """TRL's preference collator (``base``) plus the examples' ``column`` as a float tensor of shape (B,)."""

    base: Callable[[list[dict[str, Any]]], dict[str, Any]]
    column: str

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.base(examples)
        if examples and self.column in examples[0]:
            batch[self.column] = torch.tensor([float(e[self.column]) for e in examples], dtype=torch.float32)
        return batch


class WeightedDPOTrainer(DPOTrainer):
    """``DPOTrainer`` whose dataset has a per-pair weight column: each pair's loss is multiplied by its weight.

    TRL 1.16 has no per-pair hook (trl#5613 asks for one): ``DPOTrainer._compute_loss`` computes the per-pair losses
    and takes their mean inside one long method. Rather than copy that method, ``compute_loss`` splits a batch of B
    pairs into groups of equal weight, lets TRL compute each group's mean loss as usual, and combines them::

        loss = Σ_g w_g · (n_g / B) · mean_loss_g  =  (1/B) · Σ_i w_i · loss_i

    The divisor stays B (TRL's own mean), not Σ w: a batch of doubtful pairs moves the adapter less, which is the
    point of the weights. Hence:

    * every weight 1: one group, TRL's very call on the whole batch, the same loss bit for bit;
    * weight 0 on one pair of B: (B-1)/B × the loss of the batch without it, and that pair costs no forward pass.

    The price is one forward pass per distinct weight in a batch, each on fewer rows. Metrics (rewards, accuracies,
    logps) are TRL's, averaged over those calls. Under several processes TRL gathers tensors of the call's size
    inside each call, so every rank must make the same calls: one per pair (a rank with fewer pairs repeats one at
    weight 0), or TRL's single call when every rank's weights are all 1.
    Loss types that compare a batch's pairs with each other (``aot``, ``aot_unpaired``) have no per-pair loss and
    are refused, as are datasets with images; ``sft`` (a token mean over the batch) is combined per group, which is
    close but not exact.

    The weight column travels with the pairs: TRL's tokenisation keeps extra columns, the unused-column filter keeps
    it (``_set_signature_columns_if_needed``), ``WeightedPreferenceCollator`` batches it, and it is taken out of the
    inputs before they reach the model (``compute_loss``, ``compute_ref_log_probs``). A dataset without the column
    trains exactly as with ``DPOTrainer``.

    Example:
        >>> trainer = WeightedDPOTrainer(model=model, args=DPOConfig(...), processing_class=tokenizer,
        ...                              train_dataset=Dataset.from_list([{"prompt": ..., "chosen": ...,
        ...                                                                "rejected": ..., "weight": 0.4}, ...]))
    """

    def __init__(self, *args, weight_column: str = "weight", **kwargs):
        self.weight_column = weight_column
        config = kwargs.get("args") if "args" in kwargs else (args[2] if len(args) > 2 else None)
        losses = getattr(config, "loss_type", None) or []
        coupled = sorted(set([losses] if isinstance(losses, str) else losses) & set(BATCH_COUPLED_LOSSES))
        if coupled:  # before TRL's __init__, which may precompute reference log-probs over the whole dataset
            raise ValueError(f"per-pair weights need a per-pair loss; loss_type {coupled} compares the pairs of a "
                             "batch with each other")
        super().__init__(*args, **kwargs)
        if self._is_vision_dataset:  # images change the batch layout that compute_loss splits by pair
            raise ValueError("WeightedDPOTrainer takes text preference data; this dataset has images")
        self.data_collator = WeightedPreferenceCollator(self.data_collator, weight_column)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self.weight_column not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, self.weight_column]

    def compute_ref_log_probs(self, model, inputs):
        """TRL's reference log-probs, without the weights among the model's inputs."""
        return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k != self.weight_column})

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The weighted mean of the batch's per-pair losses (see the class docstring)."""
        inputs = dict(inputs)
        weights = inputs.pop(self.weight_column, None)
        if weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if return_outputs:
            raise ValueError("WeightedDPOTrainer computes losses only: evaluate without compute_metrics (the logits "
                             "it would pass are deprecated in TRL as well)")
        values = weights.tolist()
        size = len(values)
        if self.accelerator.num_processes == 1:
            groups: dict[float, list[int]] = {}
            for i, w in enumerate(values):
                if w != 0:
                    groups.setdefault(w, []).append(i)
            # at least one call, even when every weight is 0: the loss must still have a graph to go back through
            calls = sorted(groups.items()) or [(0.0, [0])]
        else:
            # TRL gathers tensors of the call's batch size inside every call, so every rank must make the same
            # calls with the same sizes: TRL's own call when every rank's weights are all 1, else one call per pair
            mine = torch.tensor([[float(all(w == 1.0 for w in values)), float(size)]], device=self.accelerator.device)
            ranks = self.accelerator.gather(mine)
            if bool(ranks[:, 0].min() == 1):
                calls = [(1.0, list(range(size)))]
            else:
                calls = [(w, [i]) for i, w in enumerate(values)] + [(0.0, [0])] * (int(ranks[:, 1].max()) - size)
        loss = None
        for w, rows in calls:
            part = super().compute_loss(model, inputs if len(rows) == size else _rows(inputs, rows, size))
            share = w * len(rows) / size
            part = part if share == 1.0 else part * share
            loss = part if loss is None else loss + part
        return loss


def _rows(inputs: dict[str, Any], rows: list[int], size: int) -> dict[str, Any]:
    """The batch restricted to pairs ``rows``: per-sequence tensors have 2B rows (B chosen, then B rejected),
    per-pair ones (reference log-probs) B."""
    index = torch.tensor(rows)
    both = torch.cat([index, index + size])
    out = {}
    for key, value in inputs.items():
        if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == 2 * size:
            out[key] = value[both.to(value.device)]
        elif torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == size:
            out[key] = value[index.to(value.device)]
        else:
            out[key] = value
    return out
