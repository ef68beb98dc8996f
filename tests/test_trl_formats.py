"""Exported datasets load unchanged into TRL's SFTTrainer, RewardTrainer and DPOTrainer (a few steps each), in both
prompt formats: conversational (message lists, through the tokenizer's chat template) and text (plain strings)."""

import pytest
import torch
from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

from collect.datasets import preference_rows, sft_rows
from collect.export import write_rows
from collect.ingest import import_file
from db.session import session_scope
from rewards.reward_model import load_backbone
from tests.conftest import write_jsonl

COMMON = {"max_steps": 2, "per_device_train_batch_size": 2, "report_to": "none", "use_cpu": True, "bf16": False,
          "save_strategy": "no", "logging_steps": 1, "disable_tqdm": True}
FORMATS = ["conversational", "text"]


@pytest.fixture(params=FORMATS)
def exported(request, loaded, tmp_path, tiny_model, tiny_chat_model):
    """(format, policy directory, SFT dataset dir, preference dataset dir) as `geoalign export` writes them."""
    fmt = request.param
    prefs = [{"prompt": f"Leeds brief {i}", "chosen": f"Ey up, proper offer {i}", "rejected": f"Generic offer {i}",
              "task_type": "social_post", "strength": "clear" if i % 2 else "slight"} for i in range(12)]
    with session_scope(loaded) as s:
        import_file(s, write_jsonl(tmp_path / "prefs.jsonl", prefs), "preferences", region="en-GB-leeds")
        sft, (pref, _) = sft_rows(s, prompt_format=fmt), preference_rows(s, prompt_format=fmt)
    model = tiny_chat_model if fmt == "conversational" else tiny_model
    return fmt, model, write_rows(sft, tmp_path / "sft"), write_rows(pref, tmp_path / "prefs")


def _losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_sft_trainer(exported, tmp_path):
    fmt, model, sft, _ = exported
    dataset = load_from_disk(str(sft))
    assert {"prompt", "completion"} <= set(dataset.column_names)
    assert isinstance(dataset[0]["prompt"], list if fmt == "conversational" else str)
    tokenizer = AutoTokenizer.from_pretrained(model)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model), train_dataset=dataset,
                         processing_class=tokenizer, args=SFTConfig(output_dir=str(tmp_path / "sft-out"), **COMMON))
    trainer.train()
    assert len(_losses(trainer)) == 2 and all(loss > 0 for loss in _losses(trainer))
    first = trainer.train_dataset[0]
    if fmt == "conversational":  # TRL rendered the chat template: the brief's system context is in the input
        assert "<|im_start|>system" in tokenizer.decode(first["input_ids"])
    # the loss is on the copy only: the prompt's tokens are masked out
    assert 0 < sum(label != -100 for label in first["labels"]) < len(first["input_ids"])


def test_reward_trainer_uses_margin(exported, tmp_path):
    fmt, model, _, prefs = exported
    dataset = load_from_disk(str(prefs))
    assert {"prompt", "chosen", "rejected", "margin"} <= set(dataset.column_names)
    if fmt == "conversational":  # the MiniLM encoder reads conversations through GeoAlign's encoder template
        rm, tokenizer = load_backbone(None)
    else:
        rm, tokenizer = AutoModelForSequenceClassification.from_pretrained(model, num_labels=1), \
            AutoTokenizer.from_pretrained(model)
    trainer = RewardTrainer(model=rm, train_dataset=dataset, processing_class=tokenizer,
                            args=RewardConfig(output_dir=str(tmp_path / "rm-out"), **COMMON))
    batch = next(iter(trainer.get_train_dataloader()))
    assert "margin" in batch and bool((batch["margin"] != 0).any())
    with torch.no_grad():  # the margin reaches the loss: a strong vote asks for a wider gap than a slight one
        with_margin = trainer.compute_loss(trainer.model, dict(batch))
        without = trainer.compute_loss(trainer.model, {**batch, "margin": torch.zeros_like(batch["margin"])})
    assert not torch.isclose(with_margin, without)
    trainer.train()
    assert len(_losses(trainer)) == 2
    if fmt == "conversational":
        text = tokenizer.decode(trainer.train_dataset[0]["chosen_ids"])
        assert text.startswith("[CLS]") and text.count("[SEP]") == 3  # system, brief, copy


def test_dpo_trainer(exported, tmp_path):
    fmt, model, _, prefs = exported
    dataset = load_from_disk(str(prefs))
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(model), train_dataset=dataset,
                         processing_class=AutoTokenizer.from_pretrained(model),
                         args=DPOConfig(output_dir=str(tmp_path / "dpo-out"), **COMMON))
    trainer.train()
    assert len(_losses(trainer)) == 2
