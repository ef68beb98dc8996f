"""bf16 where the hardware runs it natively, fp32 otherwise: the detection, the setting, and both paths really
training and sampling (tiny model)."""

from __future__ import annotations

import math

import pytest
import torch

from align import precision
from align.config import load_config
from align.sampling import DecodingParams, load_policy, sample_texts
from collect.prompting import format_prompt
from db.errors import ConfigError
from db.settings import Settings


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / f"cpuinfo-{flags.replace(' ', '-')}"  # one file per case: the detector caches by path
    path.write_text(f"processor\t: 0\nmodel name\t: test cpu\nflags\t\t: fpu sse2 avx2 {flags}\n")
    return str(path)


def test_cpu_bf16_is_read_from_the_cpu_flags(tmp_path):
    precision.cpu_has_bf16.cache_clear()
    try:
        assert precision.cpu_has_bf16(_cpuinfo(tmp_path, "avx512f avx512_bf16"))
        assert precision.cpu_has_bf16(_cpuinfo(tmp_path, "amx_tile amx_bf16"))
        assert not precision.cpu_has_bf16(_cpuinfo(tmp_path, "avx512f avx512bw"))
        assert not precision.cpu_has_bf16(str(tmp_path / "missing"))
    finally:
        precision.cpu_has_bf16.cache_clear()


@pytest.mark.parametrize("hardware", [True, False])
def test_the_setting_decides_and_auto_follows_the_hardware(home, monkeypatch, hardware):
    monkeypatch.setattr(precision, "hardware_bf16", lambda: hardware)
    assert precision.use_bf16("auto") is hardware
    assert precision.use_bf16("bf16") is True and precision.use_bf16("fp32") is False
    monkeypatch.setenv("GEOALIGN_PRECISION", "fp32")
    assert load_config().stage_args("sft", home / "out").bf16 is False
    monkeypatch.setenv("GEOALIGN_PRECISION", "auto")
    assert load_config().stage_args("dpo", home / "out").bf16 is hardware
    assert precision.inference_dtype() == (torch.bfloat16 if hardware else torch.float32)


def test_an_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="GEOALIGN_PRECISION 'fp16' is not one of auto, bf16, fp32"):
        Settings.from_env({"GEOALIGN_PRECISION": "fp16"})


@pytest.mark.parametrize("mode", ["bf16", "fp32"])
def test_both_precisions_train_and_sample(tiny_model, tmp_path, monkeypatch, mode):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    monkeypatch.setenv("GEOALIGN_PRECISION", mode)
    prompt = format_prompt("Leeds", "en-GB", "social_post", "Post for a Leeds café's brunch")
    args = load_config({"sft": {"max_steps": 2, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
                                "per_device_train_batch_size": 2}}).stage_args("sft", tmp_path / "out")
    assert args.bf16 is (mode == "bf16")
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args,
                         train_dataset=Dataset.from_list([{"prompt": prompt, "completion": "Ey up, brunch!"}] * 4),
                         processing_class=AutoTokenizer.from_pretrained(tiny_model))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)

    model, tokenizer = load_policy(str(tiny_model))
    assert model.dtype == (torch.bfloat16 if mode == "bf16" else torch.float32)
    texts = sample_texts(model, tokenizer, [prompt] * 3, DecodingParams(max_new_tokens=12), seed=0, progress=False)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
