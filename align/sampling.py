"""Sample candidate outputs from a model version and store them as ``Generation`` rows.

The policy is always loaded with ``from_pretrained(base_model)`` plus, for tuned versions, the PEFT adapter on
top, so a hub id or any local Hugging Face directory works as the base.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
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

from collect.prompting import format_prompt
from db.errors import ConfigError
from db.models import Generation, ModelVersion, Prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodingParams:
    """Sampling settings stored with every generation, so any output can be traced and reproduced."""

    max_new_tokens: int = 96  # longest task (ad copy, 300 chars) fits with room to spare
    temperature: float = 0.9
    top_p: float = 0.95
    top_k: int = 50
    repetition_penalty: float = 1.1  # tiny models loop without it

    def __post_init__(self):
        if not 1 <= self.max_new_tokens <= 4096:
            raise ConfigError(f"max_new_tokens must be 1..4096, got {self.max_new_tokens}")
        if not 0 < self.temperature <= 5:
            raise ConfigError(f"temperature must be in (0, 5], got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


def load_policy(base_model: str, adapter_path: str | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load base model and tokenizer (and the LoRA adapter, if any) for inference on the CPU or the first GPU."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = AutoModelForCausalLM.from_pretrained(base_model)
    except OSError as exc:
        raise ConfigError(f"cannot load base model {base_model!r}: {str(exc).splitlines()[0]}") from exc
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only batches must be left-padded to generate
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return model, tokenizer


def sample_texts(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                 params: DecodingParams, seed: int, batch_size: int = 16, progress: bool = True,
                 processors: Callable[[int], LogitsProcessorList] | None = None, **controls) -> list[str]:
    """One sampled completion per prompt, in order. Batch ``i`` is seeded with ``seed + i``. ``controls`` go to
    ``generate`` as they are (e.g. ``bad_words_ids``, ``sequence_bias``: see ``align.generate``); ``processors``,
    given a batch's prompt length, makes its extra logits processors."""
    outputs: list[str] = []
    batches = range(0, len(prompts), batch_size)
    for i, start in enumerate(tqdm(batches, desc="sampling", unit="batch", disable=not progress)):
        chunk = prompts[start:start + batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True).to(model.device)
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
        outputs.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return outputs


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
    texts = [format_prompt(prompts[pid].region.name, prompts[pid].region.locale, prompts[pid].task_type.value,
                           prompts[pid].text) for pid in todo]
    outputs = sample_texts(model, tokenizer, texts, params, seed, batch_size, progress)
    session.execute(insert(Generation), [
        {"prompt_id": pid, "model_version_id": version.id, "text": text,
         "params": asdict(params) | {"batch_size": batch_size, "batch_index": i // batch_size},
         "seed": seed + i // batch_size}
        for i, (pid, text) in enumerate(zip(todo, outputs, strict=True))
    ])
    session.flush()
    log.info("stored %d generations of %s", len(todo), version.name)
    return len(todo)
