"""Loading the policy for training: the base model plus the adapter a stage continues from (or a fresh LoRA)."""

from __future__ import annotations

from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from db.errors import ConfigError


def load_trainable_policy(base_model: str, adapter_in: str | None, lora_config, dtype=None):
    """(model, tokenizer, peft_config): with ``adapter_in`` the adapter is loaded trainable and peft_config is None.

    TRL's DPOTrainer then keeps a frozen copy of that adapter as the reference, i.e. the policy the stage started
    from; without an adapter, TRL wraps the base in a new LoRA from ``lora_config``. ``dtype`` is the frozen base
    weights' dtype (default fp32, as TRL loads them; the LoRA weights are always fp32).
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype)
    except OSError as exc:
        raise ConfigError(f"cannot load base model {base_model!r}: {str(exc).splitlines()[0]}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter_in is None:
        return model, tokenizer, lora_config
    return PeftModel.from_pretrained(model, adapter_in, is_trainable=True), tokenizer, None
