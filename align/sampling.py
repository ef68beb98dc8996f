"""Sample candidate outputs from a model version and store them as ``Generation`` rows.

The policy is always loaded with ``from_pretrained(base_model)`` plus, for tuned versions, the PEFT adapter on
top, so a hub id or any local Hugging Face directory works as the base. Prompts are rendered with
``collect.prompting.render`` (the tokenizer's chat template, or the plain format without one). Batches are
formed from prompts of similar token length, so little of each batch is padding; outputs come back in the
prompts' order.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from peft import PeftModel
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from align.precision import inference_dtype
from collect.prompting import BriefContext, format_for, has_chat_template, render
from db.errors import ConfigError
from db.models import Generation, ModelVersion, Prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodingParams:
    """Sampling settings stored with every generation, so any output can be traced and reproduced."""

    max_new_tokens: int = 96  # longest task (ad copy, 300 chars) fits with room to spare
    temperature: float = 0.8  # varied enough for two distinct samples per brief, still on-task for a 135 M model
    top_p: float = 0.95
    top_k: int = 50
    repetition_penalty: float = 1.1  # small models loop on short copy without it

    def __post_init__(self):
        if not 1 <= self.max_new_tokens <= 4096:
            raise ConfigError(f"max_new_tokens must be 1..4096, got {self.max_new_tokens}")
        if not 0 < self.temperature <= 5:
            raise ConfigError(f"temperature must be in (0, 5], got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


def load_policy(base_model: str, adapter_path: str | None = None,
                dtype: torch.dtype | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load base model and tokenizer (and the LoRA adapter, if any) for inference on the CPU or the first GPU,
    in ``dtype`` (default: bf16 where the hardware runs it natively, else fp32; see ``align.precision``)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype or inference_dtype())
    except OSError as exc:
        raise ConfigError(f"cannot load base model {base_model!r}: {str(exc).splitlines()[0]}") from exc
    if adapter_path:
        model = PeftModel.from_pretrained(model, adapter_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only batches must be left-padded to generate
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return model, tokenizer


def prompt_format_of(base_model: str) -> str:
    """The dataset prompt format a base model trains on: conversational when its tokenizer has a chat template."""
    try:
        return format_for(AutoTokenizer.from_pretrained(base_model))
    except OSError as exc:
        raise ConfigError(f"cannot load the tokenizer of {base_model!r}: {str(exc).splitlines()[0]}") from exc


def render_all(tokenizer: PreTrainedTokenizerBase, contexts: list[BriefContext]) -> list[str]:
    """The prompt text of each brief for this tokenizer (chat template with generation prompt, or plain)."""
    return [render(tokenizer, c) for c in contexts]


def length_batches(tokenizer: PreTrainedTokenizerBase, prompts: list[str], batch_size: int) -> list[list[int]]:
    """Prompt indices in batches of similar token length (stable, so the same prompts give the same batches)."""
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=not has_chat_template(tokenizer))
               ["input_ids"]] if prompts else []
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def sample_texts(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                 params: DecodingParams, seed: int, batch_size: int = 16, progress: bool = True,
                 processors: Callable[[int], LogitsProcessorList] | None = None, **controls) -> list[str]:
    """One sampled completion per prompt, in the prompts' order; see ``sample_batches``."""
    return [text for text, _ in sample_batches(model, tokenizer, prompts, params, seed, batch_size, progress,
                                               processors, **controls)]


def sample_batches(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                   params: DecodingParams, seed: int, batch_size: int = 16, progress: bool = True,
                   processors: Callable[[int], LogitsProcessorList] | None = None,
                   **controls) -> list[tuple[str, int]]:
    """(completion, batch index) per prompt, in the prompts' order. Prompts are batched by token length
    (``length_batches``) and batch ``i`` is seeded with ``seed + i``, so the same prompts, seed and weights give
    the same outputs. ``controls`` go to ``generate`` as they are (e.g. ``bad_words_ids``, ``sequence_bias``:
    see ``align.generate``); ``processors``, given a batch's prompt length, makes its extra logits processors."""
    outputs: list[tuple[str, int] | None] = [None] * len(prompts)
    special = not has_chat_template(tokenizer)  # a chat template already writes the special tokens it needs
    batches = length_batches(tokenizer, prompts, batch_size)
    for i, batch in enumerate(tqdm(batches, desc="sampling", unit="batch", disable=not progress)):
        chunk = [prompts[j] for j in batch]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=special).to(model.device)
        torch.manual_seed(seed + i)
        if processors is not None:
            controls["logits_processor"] = processors(enc["input_ids"].shape[1])
        with torch.no_grad():
            out = model.generate(**enc, do_sample=True, max_new_tokens=params.max_new_tokens,
                                 temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
                                 repetition_penalty=params.repetition_penalty,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                 **controls)
        new_tokens = out[:, enc["input_ids"].shape[1]:]
        for j, text in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
            outputs[j] = (text.strip(), i)
    return outputs  # type: ignore[return-value]  # every slot is filled: the batches cover all prompts


def generate_candidates(session: Session, version: ModelVersion, prompt_ids: list[int], samples_per_prompt: int = 2,
                        params: DecodingParams | None = None, seed: int = 0, batch_size: int = 16,
                        progress: bool = True, policy=None) -> int:
    """Make sure ``version`` has ``samples_per_prompt`` generations for each prompt; returns how many were added.

    Idempotent: prompts that already have enough generations from this version are skipped.
    """
    params = params or DecodingParams()
    have = Counter(dict(session.execute(
        select(Generation.prompt_id, func.count()).where(Generation.model_version_id == version.id,
                                                         Generation.prompt_id.in_(prompt_ids))
        .group_by(Generation.prompt_id)
    ).all()))
    prompts = {p.id: p for p in session.scalars(select(Prompt).where(Prompt.id.in_(prompt_ids)))}
    todo = [pid for pid in prompt_ids for _ in range(max(0, samples_per_prompt - have[pid]))]
    if not todo:
        return 0
    model, tokenizer = policy or load_policy(version.base_model, version.adapter_path)
    texts = render_all(tokenizer, [BriefContext.of_prompt(prompts[pid].region, prompts[pid]) for pid in todo])
    outputs = sample_batches(model, tokenizer, texts, params, seed, batch_size, progress)
    session.execute(insert(Generation), [
        {"prompt_id": pid, "model_version_id": version.id, "text": text,
         "params": asdict(params) | {"batch_size": batch_size, "batch_index": batch},
         "seed": seed + batch}
        for pid, (text, batch) in zip(todo, outputs, strict=True)
    ])
    session.flush()
    log.info("stored %d generations of %s", len(todo), version.name)
    return len(todo)
