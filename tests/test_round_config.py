"""Round configs map onto TRL's and PEFT's dataclasses; wrong keys and values fail before anything is queued."""

import json

import pytest
from peft import LoraConfig
from trl import DPOConfig, GRPOConfig, RewardConfig, RLOOConfig, SFTConfig

from align.config import STAGE_ORDER, check_lora_continues, load_config
from db.errors import ConfigError


def test_defaults_build_every_trl_config(tmp_path):
    config = load_config()
    assert config.settings.stages == list(STAGE_ORDER)
    kinds = {stage: type(config.stage_args(stage, tmp_path)) for stage in STAGE_ORDER}
    assert kinds == {"sft": SFTConfig, "reward": RewardConfig, "dpo": DPOConfig, "rl": GRPOConfig}
    assert isinstance(config.lora(), LoraConfig)
    assert config.stage_args("sft", tmp_path).output_dir == str(tmp_path)


def test_yaml_file_overrides_and_rloo(tmp_path):
    path = tmp_path / "round.yaml"
    path.write_text("round:\n  stages: [rl, sft]\n  rl_algorithm: rloo\nlora:\n  r: 4\n"
                    "sft:\n  learning_rate: 1.0e-4\n  num_train_epochs: 1\nrl:\n  num_generations: 2\n")
    config = load_config(path)
    assert config.settings.stages == ["sft", "rl"]  # always pipeline order
    assert isinstance(config.stage_args("rl", tmp_path), RLOOConfig)
    assert config.stage_args("rl", tmp_path).num_generations == 2
    assert config.stage_args("sft", tmp_path).learning_rate == 1e-4
    assert config.lora().r == 4
    assert load_config(config.to_dict()).to_dict() == config.to_dict()  # what a resumed round re-reads


@pytest.mark.parametrize("text, message", [
    ("sft: {learning_rte: 1}", "sft: unknown key(s) ['learning_rte'] for SFTConfig"),
    ("sft: {learning_rate: fast}", "sft.learning_rate: expected float or int, got 'fast'"),
    ("dpo: {num_train_epochs: true}", "dpo.num_train_epochs"),
    ("lora: {r: eight}", "lora.r: expected int"),
    ("round: {stages: [sft, ppo]}", "unknown stage(s) ['ppo']"),
    ("round: {stages: []}", "round.stages is empty: a round publishes nothing"),
    ("round: {rl_algorithm: ppo}", "round.rl_algorithm"),
    ("round: {eval_prompts: 0}", "round.eval_prompts must be positive"),
    ("training: {x: 1}", "unknown section(s) ['training']"),
    ("sft: [1, 2]", "section 'sft' must be a mapping"),
    ("rl: {num_generations: 3, per_device_train_batch_size: 8}", "divisible by num_generations"),
    ("sft: {learning_rate: [", "not valid YAML"),
])
def test_bad_config_is_one_clear_error(text, message):
    with pytest.raises(ConfigError) as info:
        load_config(text)
    assert message in str(info.value)


def test_early_stopping_only_where_it_could_stop():
    from align.stages import early_stopping

    config = load_config({"round": {"early_stopping_patience": 2}})
    assert early_stopping(config, has_eval=False, steps_per_epoch=8, total_steps=80) == ({"eval_strategy": "no"}, [])
    # one epoch evaluates twice: patience 2 could never trigger, so no evaluations or checkpoints are spent on it
    assert early_stopping(config, has_eval=True, steps_per_epoch=8, total_steps=8)[0] == {"eval_strategy": "no"}
    overrides, callbacks = early_stopping(config, has_eval=True, steps_per_epoch=8, total_steps=24)
    assert overrides["eval_strategy"] == "steps" and overrides["eval_steps"] == 4 and len(callbacks) == 1
    assert overrides["load_best_model_at_end"] is True


def test_a_lora_section_must_match_the_adapter_it_continues(tmp_path):
    """A round continuing an adapter cannot change its LoRA shape; only keys written in the section are compared."""
    saved = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": ["v_proj", "q_proj"], "bias": "none"}
    (tmp_path / "adapter_config.json").write_text(json.dumps(saved))

    def check(lora: dict | None) -> None:
        check_lora_continues(load_config({"lora": lora} if lora is not None else None), tmp_path, "r1", "unused")

    check(None)  # no section: the parent's shape is simply kept
    check({"r": 16, "target_modules": ["q_proj", "v_proj"], "lora_dropout": 0})  # the same, written differently
    check({"init_lora_weights": "gaussian"})  # not a shape key
    with pytest.raises(ConfigError) as info:
        check({"r": 8, "lora_alpha": 32, "target_modules": ["q_proj"]})
    message = str(info.value)
    assert message.startswith("lora: r 8 (parent: 16); target_modules ['q_proj'] (parent: ['q_proj', 'v_proj'])")
    assert "lora_alpha" not in message and "r1's adapter" in message and "round.parent: base" in message
    check_lora_continues(load_config({"lora": {"r": 8}}), tmp_path / "missing", "r1", "unused")  # no adapter config
