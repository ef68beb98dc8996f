"""Using a model version outside review: constrained batch generation and merged-weight export.

Constraints work inside decoding, with transformers' own generation controls: banned terms (a region's references
to avoid, competitor names) become ``bad_words_ids`` in every surface form a writer would use (as typed, lower
case, capitalised, with and without a leading space), and boosted terms (brand-approved words, local place
names) get a positive ``sequence_bias``. A BPE model can still spell a banned word from other pieces, so each
output is also checked and, if a banned term slipped through, sampled again with the next seed (up to
``retries`` times); the report says how many needed it and flags any that never came clean.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from align.sampling import DecodingParams, load_policy, sample_texts
from align.stages import save_atomically
from collect.export import write_rows
from collect.prompting import TASK_LABELS, format_prompt
from db.errors import ValidationError

BOOST = 2.0  # logit bonus per boosted term: a nudge towards local words, not a forced insertion
MAX_INPUT_ROWS = 100_000


@dataclass(frozen=True)
class Constraints:
    banned: tuple[str, ...] = ()
    boosted: tuple[str, ...] = ()
    boost: float = BOOST

    @classmethod
    def for_region(cls, avoid_terms: Iterable[str], local_terms: Iterable[str], ban: Iterable[str] = (),
                   boost: Iterable[str] = (), use_region: bool = True) -> Constraints:
        """The region's references to avoid (banned) and local terms (boosted), plus the request's own."""
        banned = [*(avoid_terms if use_region else ()), *ban]
        boosted = [*(local_terms if use_region else ()), *boost]
        return cls(tuple(dict.fromkeys(t.strip() for t in banned if t.strip())),
                   tuple(dict.fromkeys(t.strip() for t in boosted if t.strip())))

    def violations(self, text: str) -> list[str]:
        """The banned terms ``text`` contains (whole words, any case)."""
        return [t for t in self.banned if re.search(rf"(?<!\w){re.escape(t)}(?!\w)", text, re.IGNORECASE)]


def _surface_forms(term: str) -> list[str]:
    forms = dict.fromkeys([term, term.lower(), term.capitalize(), term.upper()])
    return [f for form in forms for f in (form, " " + form)]


def generation_controls(tokenizer: PreTrainedTokenizerBase, constraints: Constraints) -> dict:
    """``generate`` keyword arguments that enforce ``constraints`` during decoding."""
    kwargs: dict = {}
    bad = {tuple(tokenizer(f, add_special_tokens=False)["input_ids"]) for t in constraints.banned
           for f in _surface_forms(t)}
    if bad := [list(ids) for ids in bad if ids]:
        kwargs["bad_words_ids"] = bad
    bias = {tuple(tokenizer(f, add_special_tokens=False)["input_ids"]): constraints.boost
            for t in constraints.boosted for f in (" " + t, t)}
    if bias := {ids: b for ids, b in bias.items() if ids}:
        kwargs["sequence_bias"] = bias
    return kwargs


@dataclass
class GenerationReport:
    rows: int = 0
    resampled: int = 0  # outputs sampled again because a banned term slipped through the decoding controls
    still_violating: list[int] = field(default_factory=list)  # row numbers that never came clean


def generate_constrained(model, tokenizer, prompts: list[str], params: DecodingParams, constraints: Constraints,
                         seed: int = 0, batch_size: int = 16, retries: int = 3,
                         progress: bool = True) -> tuple[list[str], GenerationReport]:
    """One completion per prompt under ``constraints``; see the module docstring."""
    controls = generation_controls(tokenizer, constraints)
    texts = sample_texts(model, tokenizer, prompts, params, seed, batch_size, progress, **controls)
    report = GenerationReport(rows=len(prompts))
    bad = [i for i, t in enumerate(texts) if constraints.violations(t)]
    for attempt in range(1, retries + 1):
        if not bad:
            break
        report.resampled += len(bad)
        again = sample_texts(model, tokenizer, [prompts[i] for i in bad], params, seed + 1000 * attempt,
                             batch_size, progress=False, **controls)
        for i, text in zip(bad, again, strict=True):
            texts[i] = text
        bad = [i for i in bad if constraints.violations(texts[i])]
    report.still_violating = bad
    return texts, report


def read_prompts(path: Path) -> list[dict]:
    """Rows of a CSV with ``brief`` (or ``prompt``) and ``task_type`` (optional ``id``); errors name file, row,
    field."""
    if not path.exists():
        raise ValidationError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or ())
        brief_field = "brief" if "brief" in fields else "prompt" if "prompt" in fields else None
        if brief_field is None or "task_type" not in fields:
            raise ValidationError(f"{path}: needs columns brief (or prompt) and task_type; has {sorted(fields)}")
        rows = []
        for n, row in enumerate(reader, start=2):
            brief, task = (row.get(brief_field) or "").strip(), (row.get("task_type") or "").strip()
            if not brief:
                raise ValidationError(f"{path}: row {n}: field {brief_field} is empty")
            if task not in TASK_LABELS:
                raise ValidationError(f"{path}: row {n}: field task_type {task!r} is not one of "
                                      f"{', '.join(TASK_LABELS)}")
            rows.append({"id": (row.get("id") or "").strip() or str(n - 1), "brief": brief, "task_type": task})
            if len(rows) > MAX_INPUT_ROWS:
                raise ValidationError(f"{path}: more than {MAX_INPUT_ROWS} rows; split the file")
    if not rows:
        raise ValidationError(f"{path}: no rows")
    return rows


def generate_file(base_model: str, adapter: str | None, version: str, region: dict, input_path: Path,
                  output_path: Path, params: DecodingParams, constraints: Constraints, seed: int = 0,
                  batch_size: int = 16, progress: bool = True) -> GenerationReport:
    """Generate for every row of ``input_path`` in ``region`` with the version's policy; JSONL out, atomically."""
    rows = read_prompts(input_path)
    model, tokenizer = load_policy(base_model, adapter)
    prompts = [format_prompt(region["name"], region["locale"], r["task_type"], r["brief"]) for r in rows]
    texts, report = generate_constrained(model, tokenizer, prompts, params, constraints, seed, batch_size,
                                         progress=progress)
    write_rows([{"id": r["id"], "region": region["code"], "version": version, "task_type": r["task_type"],
                 "brief": r["brief"], "text": text, "params": asdict(params), "seed": seed,
                 "banned_terms_present": constraints.violations(text)}
                for r, text in zip(rows, texts, strict=True)], output_path, "jsonl")  # atomic
    return report


def export_merged(base_model: str, adapter: str | None, out: Path) -> Path:
    """The version as plain Hugging Face weights (LoRA merged with ``merge_and_unload``) that vLLM or TGI can
    serve; written to a temporary folder beside ``out`` and renamed into place."""
    if out.exists():
        raise ValidationError(f"{out} already exists; pick another --out or remove it")
    model, tokenizer = load_policy(base_model, adapter)
    if adapter:
        model = model.merge_and_unload()
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.to(torch.device("cpu"))
    tokenizer.padding_side = "right"

    def save(folder: str) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    save_atomically(save, out)
    return out
