"""Build the demo policy: a byte-level BPE tokenizer and a tiny Qwen2 model, briefly pretrained on the demo corpus.

    geoalign model build-demo            # ~2-3 M parameters, well under 2 minutes on 2 CPU cores

The result is an ordinary Hugging Face model directory; everything else loads it with ``from_pretrained``,
so any hub id or local path (``GEOALIGN_BASE_MODEL=Qwen/Qwen2.5-0.5B-Instruct``) can take its place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    DataCollatorForLanguageModeling,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Trainer,
    TrainingArguments,
)

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"
PAD = "<|pad|>"


@dataclass(frozen=True)
class DemoModelConfig:
    """Size and training budget of the demo model; defaults fit 2 CPU cores and a two-minute budget."""

    vocab_size: int = 4096  # enough merges for six languages' worth of short copy
    hidden_size: int = 192
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2  # GQA as in real Qwen2 models, so adapters see the same module names
    max_position_embeddings: int = 512
    max_length: int = 192  # tokens per training example; prompt + copy fit comfortably
    epochs: float = 12.0  # ~350 training examples: a dozen passes make the copy recognisable in under a minute
    batch_size: int = 16
    learning_rate: float = 3e-3  # tiny models tolerate (and need) a high rate to learn in seconds
    seed: int = 0


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` (any UTF-8 text round-trips, no unknown tokens)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD], min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, model_max_length=512)
    return fast


def build_demo_model(texts: list[str], out_dir: Path, config: DemoModelConfig | None = None,
                     progress: bool = True) -> dict:
    """Train tokenizer and model on ``texts`` (prompt + copy documents) and publish them atomically at ``out_dir``.

    Returns the build report (parameters, steps, final loss, seconds) that is also saved as ``geoalign_demo.json``.
    """
    config = config or DemoModelConfig()
    if not texts:
        raise ValueError("the demo corpus is empty: import the demo data first (`geoalign demo` does both)")
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    tokenizer = train_tokenizer(texts, config.vocab_size)
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(model_config)
    n_params = sum(p.numel() for p in model.parameters())

    docs = [t + EOS for t in texts]
    dataset = Dataset.from_dict({"text": docs}).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=config.max_length),
        batched=True, remove_columns=["text"],
    )
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir.parent))
    try:
        args = TrainingArguments(
            output_dir=str(staging / "trainer"),
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=20,
            weight_decay=0.01,
            logging_steps=25,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            seed=config.seed,
            disable_tqdm=not progress,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset,
                          data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
        result = trainer.train()
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        final = staging / "model"
        model.save_pretrained(final)
        tokenizer.save_pretrained(final)
        report = {
            "parameters": n_params,
            "vocab_size": len(tokenizer),
            "documents": len(texts),
            "steps": result.global_step,
            "train_loss": round(result.training_loss, 4),
            "final_loss": round(next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h),
                                     result.training_loss), 4),
            "seconds": round(time.perf_counter() - start, 1),
            "config": asdict(config),
        }
        (final / "geoalign_demo.json").write_text(json.dumps(report, indent=2))
        # Publish atomically: readers see either the old model directory or the complete new one.
        if out_dir.exists():
            old = staging / "old"
            os.replace(out_dir, old)
        os.replace(final, out_dir)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def is_built(path: Path) -> bool:
    """Whether ``path`` holds a complete demo model (config, weights and tokenizer)."""
    path = Path(path)
    return all((path / f).exists() for f in ("config.json", "tokenizer.json", "geoalign_demo.json"))
