"""The same stage as a plain TRL script would run it: the yardstick for the round's tokens/s in ``bench/round.py``.

Each function trains on a finished round's dataset snapshot (``<round dir>/data``) with what a user would write
from TRL's docs: the model path, a ``LoraConfig``, the TRL config with the same work as the round's stage (epochs or
steps, batch size, learning rate, maximum lengths) and TRL's defaults for everything else (bf16, gradient
checkpointing, random batch order). It returns the tokens/s measured exactly as the round measures its own
(``align.stages.train_metrics``), so the ratio compares like with like.

    python bench/plain_trl.py ROUND_DIR sft    # one stage on its own
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORK_KEYS = ("num_train_epochs", "max_steps", "per_device_train_batch_size", "learning_rate", "max_length",
             "beta", "num_generations", "max_completion_length", "temperature")


def _rows(data: Path, name: str, columns: tuple[str, ...]):
    from datasets import Dataset

    rows = [json.loads(line) for line in (data / f"{name}.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return Dataset.from_list([{c: r[c] for c in columns} for r in rows])


def _work(ours: dict, keys=WORK_KEYS) -> dict:
    return {k: ours[k] for k in keys if k in ours and ours[k] is not None}


def run_plain(round_dir: Path, stage: str, base_model: str, stage_config: dict, lora: dict,
              region_rules: dict | None = None, reward_model: str | None = None) -> dict:
    """Train ``stage`` as a plain TRL script on the round's data; returns ``train_metrics``."""
    import trl
    from peft import LoraConfig
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from align.stages import train_metrics

    data = Path(round_dir) / "data"
    out = tempfile.mkdtemp(prefix=f"plain-{stage}-")
    common = {"output_dir": out, "use_cpu": True, "report_to": "none", "save_strategy": "no", "logging_steps": 1,
              "disable_tqdm": True, "seed": 0}
    peft_config = LoraConfig(**{k: lora[k] for k in ("r", "lora_alpha", "lora_dropout", "target_modules")},
                             task_type="CAUSAL_LM")
    if stage == "sft":
        trainer = trl.SFTTrainer(model=base_model, train_dataset=_rows(data, "sft_train", ("prompt", "completion")),
                                 args=trl.SFTConfig(**common, **_work(stage_config)), peft_config=peft_config)
    elif stage == "reward":
        from rewards.reward_model import ENCODER_TEMPLATE, default_backbone

        backbone = stage_config.get("backbone") or default_backbone()
        tokenizer = AutoTokenizer.from_pretrained(backbone)
        tokenizer.chat_template = tokenizer.chat_template or ENCODER_TEMPLATE  # an encoder has none of its own
        model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1)
        rows = _rows(data, "pref_train", ("prompt", "chosen", "rejected", "margin"))
        trainer = trl.RewardTrainer(model=model, processing_class=tokenizer, train_dataset=rows,
                                    args=trl.RewardConfig(**common, **_work(stage_config)))
    elif stage == "dpo":
        trainer = trl.DPOTrainer(model=base_model, train_dataset=_rows(data, "dpo_train", ("prompt", "chosen",
                                                                                           "rejected")),
                                 args=trl.DPOConfig(**common, **_work(stage_config)), peft_config=peft_config)
    elif stage == "rl":
        import random

        from rewards.reward_model import RewardScorer
        from rewards.rules import RegionRules, rule_reward_func

        prompts = _rows(data, "rl_prompts", ("prompt", "region", "task_type")).to_list()
        random.Random(0).shuffle(prompts)
        from datasets import Dataset

        rules = {code: RegionRules.from_profile(r) for code, r in (region_rules or {}).items()}
        funcs = [rule_reward_func(rules)] + ([RewardScorer(reward_model).reward_func()] if reward_model else [])
        trainer = trl.GRPOTrainer(model=base_model, reward_funcs=funcs, train_dataset=Dataset.from_list(prompts),
                                  args=trl.GRPOConfig(**common, **_work(stage_config)), peft_config=peft_config)
    else:
        raise ValueError(f"unknown stage {stage!r}")
    output = trainer.train()
    return train_metrics(trainer, output)


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("round_dir")
    parser.add_argument("stage", choices=["sft", "reward", "dpo", "rl"])
    parser.add_argument("--base-model", help="default: GEOALIGN_BASE_MODEL")
    args = parser.parse_args()
    from align.config import load_config
    from db.settings import get_settings

    config = load_config()
    stage_config = config.stage_args(args.stage, Path(tempfile.mkdtemp())).to_dict()
    metrics = run_plain(Path(args.round_dir), args.stage, args.base_model or get_settings().base_model,
                        stage_config, config.lora().to_dict())
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
