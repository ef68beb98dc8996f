"""Loading the policy for training: the base model plus the adapter a stage continues from (or a fresh LoRA)."""

from __future__ import annotations

from transformers import AutoModelForCausalLM, AutoTokenizer

from align.precision import inference_dtype
from db.errors import ConfigError


def load_trainable_policy(base_model: str, adapter_in: str | None, lora_config):
    """(model, tokenizer, peft_config): with ``adapter_in`` the adapter is loaded trainable and peft_config is None.

    TRL's DPOTrainer then keeps a frozen copy of that adapter as the reference, i.e. the policy the stage started
    from; without an adapter, TRL wraps the base in a new LoRA from ``lora_config``.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        # under bf16 the frozen base weights are stored in bf16 (half the memory, and GRPO samples from them
        # natively); the LoRA weights stay fp32, as PEFT keeps trainable adapters, and train under autocast
        model = AutoModelForCausalLM.from_pretrained(base_model, dtype=inference_dtype())
    except OSError as exc:
        raise ConfigError(f"cannot load base model {base_model!r}: {str(exc).splitlines()[0]}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter_in is None:
        return model, tokenizer, lora_config
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_in, is_trainable=True), tokenizer, None
