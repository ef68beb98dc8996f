"""Round configuration: one YAML file mapped onto TRL's own config dataclasses and PEFT's ``LoraConfig``.

A round config has one section per dataclass; every key is a field of that dataclass, so a TRL user can copy
settings from TRL's docs. Unknown keys and values of the wrong type are errors before anything trains::

    round:                 # RoundSettings (ours): which stages run, data and evaluation sizes
      stages: [sft, reward, dpo, rl]
      rl_algorithm: grpo
      vote_weighting: reliability   # votes count by their reviewer's reliability (default: none, every vote 1)
    lora:   {r: 16, lora_alpha: 32}
    sft:    {num_train_epochs: 1, learning_rate: 2.0e-4}
    reward: {num_train_epochs: 2}
    dpo:    {beta: 0.1}
    rl:     {num_generations: 4, max_completion_length: 64}

Defaults are sized for the default policy, SmolLM2-135M-Instruct, on two CPU cores (a one-region round in about six
minutes); on a GPU raise the epochs, steps and batch sizes, or start from one of TRL's example configs.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from align.precision import use_bf16
from db.errors import ConfigError

STAGE_ORDER = ("sft", "reward", "dpo", "rl")
RL_ALGORITHMS = ("grpo", "rloo")
VOTE_WEIGHTINGS = ("none", "reliability")


@dataclass
class RoundSettings:
    """Round-level settings (the TRL dataclasses cover each stage's training)."""

    stages: list[str] = field(default_factory=lambda: list(STAGE_ORDER), metadata={"help": "stages to run, in order"})
    rl_algorithm: str = field(default="grpo", metadata={"help": "online RL trainer: grpo or rloo"})
    parent: str | None = field(default=None, metadata={"help": "parent version; default: the latest of the scope"})
    reward_backbone: str | None = field(
        default=None, metadata={"help": "sequence-classification backbone; default: the bundled MiniLM encoder"})
    min_preference_pairs: int = field(default=8, metadata={"help": "fewer pairs than this skip reward and DPO"})
    rl_prompts: int = field(default=32, metadata={
        "help": "train-split prompts given to online RL; each round takes the next ones, so rounds see new prompts"})
    replay_ratio: float = field(default=0.5, metadata={
        "help": "SFT and DPO train on what is new since the parent plus this many older rows per new row (replay)"})
    rule_reward_weight: float = field(default=1.0, metadata={"help": "weight of rewards/rules.py in RL"})
    model_reward_weight: float = field(default=1.0, metadata={"help": "weight of the reward model in RL"})
    vote_weighting: str = field(default="none", metadata={
        "help": "none: every vote counts 1; reliability: each counts its reviewer's reliability in the region "
                "(Dawid-Skene on votes and gold pairs), in the reward model's margin and as per-pair DPO weights"})
    early_stopping_patience: int = field(default=2, metadata={"help": "evaluations without val-loss gain; 0 = off"})
    eval_prompts: int = field(default=24, metadata={"help": "test-split prompts scored per version in evaluation"})
    review_prompts: int = field(default=12, metadata={"help": "train-split prompts that get new pairs"})
    review_val_prompts: int = field(default=4, metadata={
        "help": "val-split prompts that get new pairs (their votes validate the reward model and DPO)"})
    # 96 tokens hold every demo gold copy (the longest, German ad copy, is 93): shorter samples are cut mid-sentence
    max_new_tokens: int = field(default=96, metadata={"help": "tokens sampled per output in evaluation and pairs"})
    sample_batch_size: int = field(default=16, metadata={
        "help": "prompts sampled together in evaluation (batched by length; 16 keeps 2 CPU cores busy)"})
    seed: int = field(default=0, metadata={"help": "seed for data order, sampling and LoRA init"})
    launcher: str = field(default="inline", metadata={"help": "inline, or accelerate (stages as subprocesses)"})
    num_processes: int = field(default=2, metadata={"help": "processes per stage with launcher=accelerate"})
    report_to: str = field(default="tensorboard", metadata={"help": "TRL report_to for every stage (none to skip)"})

    def __post_init__(self):
        unknown = [s for s in self.stages if s not in STAGE_ORDER]
        if unknown:
            raise ConfigError(f"round.stages: unknown stage(s) {unknown}; choose from {list(STAGE_ORDER)}")
        if not self.stages:
            raise ConfigError(f"round.stages is empty: a round publishes nothing; pick some of {list(STAGE_ORDER)}")
        self.stages = [s for s in STAGE_ORDER if s in self.stages]  # always run in pipeline order
        if self.rl_algorithm not in RL_ALGORITHMS:
            raise ConfigError(f"round.rl_algorithm: {self.rl_algorithm!r} is not one of {list(RL_ALGORITHMS)}")
        if self.vote_weighting not in VOTE_WEIGHTINGS:
            raise ConfigError(f"round.vote_weighting: {self.vote_weighting!r} is not one of {list(VOTE_WEIGHTINGS)}")
        if self.launcher not in ("inline", "accelerate"):
            raise ConfigError(f"round.launcher: {self.launcher!r} is not one of ['inline', 'accelerate']")
        for name in ("min_preference_pairs", "rl_prompts", "eval_prompts", "review_prompts", "review_val_prompts",
                     "max_new_tokens", "num_processes", "sample_batch_size"):
            if getattr(self, name) < (0 if name in ("rl_prompts", "review_prompts", "review_val_prompts") else 1):
                raise ConfigError(f"round.{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.replay_ratio <= 100:
            raise ConfigError(f"round.replay_ratio must be between 0 and 100, got {self.replay_ratio}")


# Training defaults per stage, applied under the user's YAML. Sized for SmolLM2-135M-Instruct with a LoRA on two CPU
# cores, where one step of 8 rows × ~170 tokens takes about 9 s (bf16 autocast): one pass over the data per policy
# stage and a short GRPO run keep a one-region round within about 6 minutes. Learning rates are the usual LoRA
# ones for a pretrained model (the adapter starts at zero, so a full-model rate would barely move it).
_COMMON = {"per_device_train_batch_size": 8, "per_device_eval_batch_size": 16, "logging_steps": 2,
           "save_strategy": "steps", "save_steps": 10, "save_total_limit": 2, "seed": 0,
           "disable_tqdm": False, "dataloader_num_workers": 0}
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    # group_by_length: batches of similar length, so little of each step is padding (TRL's default is random)
    # one epoch at 2e-4 left the loss on the gold copy where it started (3.9); two at 3e-4 bring it down by a fifth
    "sft": _COMMON | {"num_train_epochs": 2, "learning_rate": 3e-4, "max_length": 256,
                      "train_sampling_strategy": "group_by_length"},
    # RewardTrainer drops (does not truncate) longer rows: 384 tokens holds system context, brief and copy. The
    # encoder trains in seconds, so a resumed round retrains it rather than paying for checkpoints on the way
    # (early stopping, when it can act, still checkpoints at each evaluation). A demo round has a few dozen pairs:
    # 2 epochs at 5e-5 left its scores within ±0.01 of each other, so it gets 10 epochs at 2e-4 (seconds here),
    # with early stopping on the val pairs to stop it memorising them
    "reward": _COMMON | {"num_train_epochs": 10, "learning_rate": 2e-4, "max_length": 384, "eos_token": "[SEP]",
                         "save_strategy": "no", "warmup_steps": 2},
    # the reference (the adapter the stage starts from) is fixed, so its log-probs are computed once, up front,
    # without gradients (exact); each training step then runs the policy alone. It costs about the same in total.
    # a round's new votes are a few dozen pairs, one or two steps an epoch: 5e-5 for one epoch hardly moved the
    # adapter, so two epochs at the LoRA rate SFT uses
    "dpo": _COMMON | {"num_train_epochs": 2, "learning_rate": 1e-4, "beta": 0.1, "max_length": 320,
                      "precompute_ref_log_probs": True},
    # Online RL: 96 new tokens hold a whole gold-length copy (64 cut 87% of completions short, so their rewards
    # judged fragments). normalize_then_sum standardises each reward within its group before weighting, so the
    # reward model (scores spread ~0.01 early on) and the rule reward (spread ~0.2) both count by their weight.
    "grpo": _COMMON | {"max_steps": 6, "learning_rate": 1e-4, "num_generations": 4, "max_completion_length": 96,
                       "per_device_train_batch_size": 8, "temperature": 0.8, "beta": 0.0, "logging_steps": 1,
                       "save_steps": 3, "multi_objective_aggregation": "normalize_then_sum"},
    "rloo": _COMMON | {"max_steps": 6, "learning_rate": 1e-4, "num_generations": 4, "max_completion_length": 96,
                       "per_device_train_batch_size": 8, "temperature": 0.8, "logging_steps": 1, "save_steps": 3},
}
LORA_DEFAULTS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear",
                 "task_type": "CAUSAL_LM"}
SECTIONS = ("round", "lora", "sft", "reward", "dpo", "rl")


@dataclass
class RoundConfig:
    """The parsed config: the raw sections (stored with the round, for resume and lineage) and typed objects."""

    raw: dict[str, dict[str, Any]]
    settings: RoundSettings

    def stage_args(self, stage: str, output_dir: Path, **overrides):
        """The TRL config object for ``stage`` ("sft", "reward", "dpo", "rl"), writing under ``output_dir``."""
        cls = _trl_class("rl" if stage == "rl" else stage, self.settings.rl_algorithm)
        key = self.settings.rl_algorithm if stage == "rl" else stage
        values = STAGE_DEFAULTS[key] | _device_defaults() | {"report_to": self.settings.report_to,
                                                             "seed": self.settings.seed} \
            | self.raw.get(stage, {}) | overrides | {"output_dir": str(output_dir)}
        return _build(cls, values, stage)

    def lora(self):
        from peft import LoraConfig  # lazy: peft imports torch; the Rounds page and the CLI import this module

        return _build(LoraConfig, LORA_DEFAULTS | self.raw.get("lora", {}), "lora")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The sections as given, with the round section complete (stored with the round and its version)."""
        return {k: dict(v) for k, v in self.raw.items()} | {"round": dataclasses.asdict(self.settings)}


def _device_defaults() -> dict[str, Any]:
    """Device and precision for every stage: bf16 autocast where the hardware runs it natively (align.precision)."""
    import torch  # lazy: the Rounds page and the CLI read configs without loading torch

    bf16 = use_bf16()
    if torch.cuda.is_available():
        return {"bf16": bf16}
    # TrainingArguments needs use_cpu on a CPU-only machine; bf16 there is CPU autocast (AVX512-BF16 / AMX)
    return {"use_cpu": True, "bf16": bf16}


def _trl_class(stage: str, rl_algorithm: str) -> type:
    import trl  # lazy: trl imports torch; the Rounds page and the CLI import this module

    names = {"sft": "SFTConfig", "reward": "RewardConfig", "dpo": "DPOConfig",
             "rl": "GRPOConfig" if rl_algorithm == "grpo" else "RLOOConfig"}
    return getattr(trl, names[stage])


def _check_type(section: str, name: str, value: Any, annotation: Any) -> None:
    """Reject a value whose type cannot be the field's (YAML gives int/float/str/bool/list/dict/None)."""
    if isinstance(annotation, str):  # postponed annotations of TRL/PEFT dataclasses
        return
    origin = typing.get_origin(annotation)
    options = typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else (annotation,)
    accepted: list[type] = []
    for opt in options:
        base = typing.get_origin(opt) or opt
        if opt is type(None):
            accepted.append(type(None))
        elif base in (int, float, str, bool, list, dict, tuple):
            accepted.append(base)
        else:
            return  # enums, literals and the like: leave to the dataclass's own checks
    if float in accepted:
        accepted.append(int)
    if list in accepted or tuple in accepted:
        accepted += [list, tuple]
    if type(value) is bool and bool not in accepted:
        raise ConfigError(f"{section}.{name}: expected {_type_names(accepted)}, got {value!r}")
    if not isinstance(value, tuple(accepted)):
        raise ConfigError(f"{section}.{name}: expected {_type_names(accepted)}, got {value!r}")


def _type_names(types_: list[type]) -> str:
    return " or ".join(dict.fromkeys("null" if t is type(None) else t.__name__ for t in types_))


def _build(cls: type, values: dict[str, Any], section: str):
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {unknown} for {cls.__name__}")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a library's annotations may not resolve at runtime: fall back to the raw field types
        hints = {}
    for name, value in values.items():
        _check_type(section, name, value, hints.get(name, fields[name].type))
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{section}: {str(exc).splitlines()[0]}") from exc


def load_config(source: str | Path | dict | None = None, **round_overrides) -> RoundConfig:
    """Parse a round config from a YAML path, YAML text or dict (None: all defaults), and check every section.

    Every TRL and PEFT object is built once here, so a wrong key or value fails before the round is queued.
    """
    if source is None:
        data: Any = {}
    elif isinstance(source, dict):
        data = source
    else:
        text = Path(source).read_text(encoding="utf-8") if isinstance(source, Path) or (
            isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))) else source
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"round config is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError("round config must be a YAML mapping with sections " + ", ".join(SECTIONS))
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"round config: unknown section(s) {unknown}; sections are {list(SECTIONS)}")
    raw: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        section = data.get(name) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"round config: section {name!r} must be a mapping, got {section!r}")
        raw[name] = dict(section)
    raw["round"].update({k: v for k, v in round_overrides.items() if v is not None})
    config = RoundConfig(raw=raw, settings=_build(RoundSettings, raw["round"], "round"))
    with tempfile.TemporaryDirectory() as tmp:  # validate every stage's TRL config now, not mid-round
        for stage in STAGE_ORDER:
            config.stage_args(stage, Path(tmp))
        config.lora()
    return config


# The LoraConfig keys that shape a trained adapter: continuing an adapter keeps the values it was created with.
LORA_SHAPE_KEYS = ("r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "use_dora", "bias")


def check_lora_continues(config: RoundConfig, adapter_dir: str | Path, parent: str, base_model: str) -> None:
    """Refuse a ``lora:`` section that differs from the adapter the round continues (``parent``'s, in ``adapter_dir``).

    A round with a parent adapter trains that adapter further (``align.stages.policy``), so the section would be
    ignored while the lineage recorded it. Only keys written in the section are compared, and only those in
    ``LORA_SHAPE_KEYS``; without a section there is nothing to check.
    """
    given = config.raw.get("lora") or {}
    saved_path = Path(adapter_dir) / "adapter_config.json"
    if not given or not saved_path.exists():
        return
    saved = json.loads(saved_path.read_text(encoding="utf-8"))
    wanted = config.lora()
    differ = []
    for key in (k for k in LORA_SHAPE_KEYS if k in given and k in saved):
        want, have = getattr(wanted, key), saved[key]
        if key == "target_modules":
            want, have = _module_names(want, base_model), _module_names(have, base_model)
            if want is None or have is None:  # "all-linear" on a model whose layers could not be listed
                continue
        if want != have:
            differ.append(f"{key} {_shown(want)} (parent: {_shown(have)})")
    if differ:
        raise ConfigError(f"lora: {'; '.join(differ)}: this round continues {parent}'s adapter, whose LoRA shape "
                          "its first round fixed; drop those keys, or set round.parent: base to train a new adapter")


def _shown(value: Any) -> str:
    return str(sorted(value)) if isinstance(value, set) else repr(value)


def _module_names(target: Any, base_model: str) -> set[str] | str | None:
    """LoRA target modules as a set of layer names (PEFT saves full or shortened paths; "all-linear" is resolved)."""
    if isinstance(target, str) and target.lower() == "all-linear":
        return _all_linear(base_model)
    if isinstance(target, str):
        return target  # a regular expression: compared as written
    return {name.rsplit(".", 1)[-1] for name in target or ()}


def _all_linear(base_model: str) -> set[str] | None:
    """The layer names PEFT's "all-linear" picks in ``base_model``, from a weightless (meta) copy of it."""
    try:
        # lazy: torch, peft and transformers stay off the import path of the Rounds page and the CLI
        import torch
        from peft import LoraConfig
        from peft.tuners.tuners_utils import _maybe_include_all_linear_layers
        from transformers import AutoConfig, AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_model))
        resolved = _maybe_include_all_linear_layers(LoraConfig(target_modules="all-linear", task_type="CAUSAL_LM"),
                                                    model)
    except Exception:  # broad: a PEFT-internal helper or a model config that will not load; then it is not compared
        return None
    return {name.rsplit(".", 1)[-1] for name in resolved.target_modules}
