"""Exported datasets load unchanged into TRL's SFTTrainer, RewardTrainer and DPOTrainer (a few steps each)."""

import pytest
from datasets import load_from_disk
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

from collect.datasets import preference_rows, sft_rows
from collect.export import write_rows
from collect.ingest import import_file
from db.session import session_scope
from tests.conftest import write_jsonl

COMMON = {"max_steps": 2, "per_device_train_batch_size": 2, "report_to": "none", "use_cpu": True,
          "save_strategy": "no", "logging_steps": 1, "disable_tqdm": True}


@pytest.fixture
def exported(loaded, tmp_path):
    prefs = [{"prompt": f"Leeds brief {i}", "chosen": f"Ey up, proper offer {i}", "rejected": f"Generic offer {i}",
              "task_type": "social_post", "strength": "clear" if i % 2 else "slight"} for i in range(12)]
    with session_scope(loaded) as s:
        import_file(s, write_jsonl(tmp_path / "prefs.jsonl", prefs), "preferences", region="en-GB-leeds")
        sft, (pref, _) = sft_rows(s), preference_rows(s)
    return write_rows(sft, tmp_path / "sft"), write_rows(pref, tmp_path / "prefs")


def _losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_sft_trainer(exported, tiny_model, tmp_path):
    dataset = load_from_disk(str(exported[0]))
    assert {"prompt", "completion"} <= set(dataset.column_names)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), train_dataset=dataset,
                         processing_class=AutoTokenizer.from_pretrained(tiny_model),
                         args=SFTConfig(output_dir=str(tmp_path / "sft-out"), **COMMON))
    trainer.train()
    assert len(_losses(trainer)) == 2 and all(loss > 0 for loss in _losses(trainer))


def test_reward_trainer_uses_margin(exported, tiny_model, tmp_path):
    dataset = load_from_disk(str(exported[1]))
    assert {"prompt", "chosen", "rejected", "margin"} <= set(dataset.column_names)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    trainer = RewardTrainer(model=model, train_dataset=dataset,
                            processing_class=AutoTokenizer.from_pretrained(tiny_model),
                            args=RewardConfig(output_dir=str(tmp_path / "rm-out"), **COMMON))
    batch = next(iter(trainer.get_train_dataloader()))
    assert "margin" in batch
    trainer.train()
    assert len(_losses(trainer)) == 2


def test_dpo_trainer(exported, tiny_model, tmp_path):
    dataset = load_from_disk(str(exported[1]))
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), train_dataset=dataset,
                         processing_class=AutoTokenizer.from_pretrained(tiny_model),
                         args=DPOConfig(output_dir=str(tmp_path / "dpo-out"), **COMMON))
    trainer.train()
    assert len(_losses(trainer)) == 2
