"""Which float precision the policy trains and samples in: bf16 where the hardware runs it fast, else fp32.

``GEOALIGN_PRECISION`` (``auto``, ``bf16`` or ``fp32``; see ``db/settings.py``) decides. ``auto`` picks bf16 on
a GPU that supports it and on CPUs with native bf16 instructions (AVX512-BF16 or AMX), where a LoRA step of
SmolLM2-135M runs about 1.5x and sampling about 2x faster than in fp32, and fp32 everywhere else (bf16 emulated
in software is slower than fp32). Training keeps fp32 master weights and runs the forward and backward passes
under bf16 autocast (TrainingArguments ``bf16=True``); sampling loads the weights in bf16.
"""

from __future__ import annotations

import functools
from pathlib import Path

from db.errors import ConfigError
from db.settings import get_settings

PRECISIONS = ("auto", "bf16", "fp32")
_CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


@functools.lru_cache(maxsize=1)
def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU executes bf16 natively (Linux: its flags name AVX512-BF16 or AMX-BF16)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux, or no procfs: assume no native bf16 and stay on fp32
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(_CPU_BF16_FLAGS & set(line.split(":", 1)[-1].split()))
    return False


def hardware_bf16() -> bool:
    """Whether the device the policy runs on (the first GPU, else the CPU) is fast in bf16."""
    import torch  # lazy: align.config imports this module, and the Rounds page and the CLI import align.config

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def use_bf16(precision: str | None = None) -> bool:
    """Whether to train and sample in bf16, given ``precision`` (default: the ``GEOALIGN_PRECISION`` setting)."""
    precision = precision or get_settings().precision
    if precision not in PRECISIONS:
        raise ConfigError(f"GEOALIGN_PRECISION {precision!r} is not one of {', '.join(PRECISIONS)}")
    return hardware_bf16() if precision == "auto" else precision == "bf16"


def inference_dtype(precision: str | None = None):
    """The torch dtype to load a policy in for sampling."""
    import torch  # lazy: as in hardware_bf16

    return torch.bfloat16 if use_bf16(precision) else torch.float32
