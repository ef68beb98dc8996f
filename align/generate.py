"""Using a model version outside review: constrained batch generation and merged-weight export.

Constraints work inside decoding, with transformers' own generation controls: banned terms (a region's references
to avoid, competitor names) become ``bad_words_ids`` in every surface form a writer would use (as typed, lower
case, capitalised, with and without a leading space), and boosted terms (brand-approved words, local place
names) get a positive ``sequence_bias``. Required terms (a brand name that must appear) are boosted too, and
``RequireTerms`` guarantees them: it holds back the end of the text while one is missing and, once the tokens
left are just enough to spell the missing ones, writes them out. (transformers 5 moved constrained beam search
out of the library to a Hub repository, which this machine cannot reach, and it does not combine with sampling.)
A BPE model can still spell a banned word from other pieces, so each output is also checked and, if a banned
term slipped through or a required one is missing, sampled again with the next seed (up to ``retries`` times);
the report says how many needed it and flags any that never came clean.
"""

from __future__ import annotations

import csv
import functools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from align.sampling import DecodingParams, load_policy, render_all, sample_texts
from align.stages.common import save_atomically
from collect.export import write_rows
from collect.prompting import TASK_LABELS, BriefContext
from db.errors import ValidationError

BOOST = 2.0  # logit bonus per boosted term: a nudge towards local words, not a forced insertion
MAX_INPUT_ROWS = 100_000


def _unique(terms: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t.strip() for t in terms if t.strip()))


def _mentions(text: str, term: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(term)}(?!\w)", text, re.IGNORECASE) is not None


@dataclass(frozen=True)
class Constraints:
    banned: tuple[str, ...] = ()
    boosted: tuple[str, ...] = ()
    boost: float = BOOST
    required: tuple[str, ...] = ()

    def __post_init__(self):
        if clash := [t for t in self.required if any(_mentions(t, b) for b in self.banned)]:
            raise ValidationError(f"required terms {clash} contain a banned term; a text cannot satisfy both")

    @classmethod
    def for_region(cls, avoid_terms: Iterable[str], local_terms: Iterable[str], ban: Iterable[str] = (),
                   boost: Iterable[str] = (), use_region: bool = True, require: Iterable[str] = ()) -> Constraints:
        """The region's references to avoid (banned) and local terms (boosted), plus the request's own."""
        banned = [*(avoid_terms if use_region else ()), *ban]
        boosted = [*(local_terms if use_region else ()), *boost]
        return cls(_unique(banned), _unique(boosted), required=_unique(require))

    def violations(self, text: str) -> list[str]:
        """The banned terms ``text`` contains (whole words, any case)."""
        return [t for t in self.banned if _mentions(text, t)]

    def missing(self, text: str) -> list[str]:
        """The required terms ``text`` lacks."""
        return [t for t in self.required if not _mentions(text, t)]

    def broken_by(self, text: str) -> bool:
        return bool(self.violations(text) or self.missing(text))


def _contains(seq: list[int], part: list[int]) -> bool:
    n = len(part)
    return any(seq[i:i + n] == part for i in range(len(seq) - n + 1))


class RequireTerms(LogitsProcessor):
    """Every required term appears in each output: while one is missing the end of text is held back, and once
    the tokens left are only just enough to spell the missing terms, they are written out token by token (a
    term already begun is finished first). Each term is given as its token spellings; the first is forced."""

    def __init__(self, spellings: list[list[list[int]]], prompt_length: int, max_new_tokens: int,
                 eos_token_ids: list[int], word_pieces: torch.Tensor):
        self.spellings, self.prompt_length, self.max_new_tokens = spellings, prompt_length, max_new_tokens
        self.eos = [i for i in eos_token_ids if i is not None]
        self.word_pieces = word_pieces  # tokens that would glue onto the previous word ("Fremantle" + "ctaned")

    def _just_written(self, seq: list[int]) -> bool:
        return any(len(seq) >= len(f) and seq[len(seq) - len(f):] == f for forms in self.spellings for f in forms)

    def _next(self, seq: list[int]) -> tuple[int, int] | None:
        """(tokens still needed, the token to force next) for one row, or None when every term is there."""
        missing = [forms[0] for forms in self.spellings if not any(_contains(seq, f) for f in forms)]
        if not missing:
            return None
        need = sum(len(t) for t in missing)
        started = max(((k, t) for t in missing for k in range(min(len(t) - 1, len(seq)), 0, -1)
                       if seq[len(seq) - k:] == t[:k]), default=(0, missing[0]), key=lambda kt: kt[0])
        done, term = started
        return need - done, term[done]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        left = self.max_new_tokens - (input_ids.shape[1] - self.prompt_length)
        for row, ids in enumerate(input_ids[:, self.prompt_length:].tolist()):
            if self._just_written(ids):  # a required term just ended: keep it a whole word
                scores[row, self.word_pieces] = -float("inf")
            step = self._next(ids)
            if step is None:
                continue
            need, token = step
            if self.eos:
                scores[row, self.eos] = -float("inf")
            if need >= left:
                forced = torch.full_like(scores[row], -float("inf"))
                forced[token] = 0.0
                scores[row] = forced
        return scores


def _surface_forms(term: str) -> list[str]:
    forms = dict.fromkeys([term, term.lower(), term.capitalize(), term.upper()])
    return [f for form in forms for f in (form, " " + form)]


@functools.lru_cache(maxsize=4)
def word_pieces(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Ids of the tokens that continue a word (their text starts with a letter or digit, no leading space marker
    such as BPE's "Ġ" or SentencePiece's "▁"); computed once per tokenizer."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return torch.tensor([i for i, t in enumerate(tokens) if t and t[0].isalnum()], dtype=torch.long)


def generation_controls(tokenizer: PreTrainedTokenizerBase, constraints: Constraints,
                        max_new_tokens: int | None = None) -> dict:
    """``sample_texts`` keyword arguments that enforce ``constraints`` during decoding (required terms need
    ``max_new_tokens``)."""
    kwargs: dict = {}
    bad = {tuple(tokenizer(f, add_special_tokens=False)["input_ids"]) for t in constraints.banned
           for f in _surface_forms(t)}
    if bad := [list(ids) for ids in bad if ids]:
        kwargs["bad_words_ids"] = bad
    bias = {tuple(tokenizer(f, add_special_tokens=False)["input_ids"]): constraints.boost
            for t in (*constraints.boosted, *constraints.required) for f in (" " + t, t)}
    if bias := {ids: b for ids, b in bias.items() if ids}:
        kwargs["sequence_bias"] = bias
    if constraints.required and max_new_tokens is not None:
        spellings = [[tokenizer(f, add_special_tokens=False)["input_ids"] for f in (" " + t, t)]
                     for t in constraints.required]
        if (need := sum(len(forms[0]) for forms in spellings)) > max_new_tokens:
            raise ValidationError(f"max_new_tokens {max_new_tokens} is too short for the required terms "
                                  f"({need} tokens)")
        eos = tokenizer.eos_token_id
        pieces = word_pieces(tokenizer)
        kwargs["processors"] = lambda prompt_length: LogitsProcessorList([RequireTerms(
            spellings, prompt_length, max_new_tokens, eos if isinstance(eos, list) else [eos], pieces)])
    return kwargs


class DeadlineExceeded(TimeoutError):
    """Generation was stopped, or never started, because its deadline passed."""


class Deadline(StoppingCriteria):
    """Stops every row at the first decoding step that ends after ``at`` (a ``clock()`` reading, by default
    ``time.monotonic``), so work for a caller that has given up frees the model within one step."""

    def __init__(self, at: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.at, self.clock = at, clock

    @property
    def passed(self) -> bool:
        return self.clock() >= self.at

    def check(self) -> None:
        """Raise ``DeadlineExceeded`` once the deadline has passed."""
        if self.passed:
            raise DeadlineExceeded("the generation deadline passed")

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.passed, dtype=torch.bool, device=input_ids.device)


@dataclass
class GenerationReport:
    rows: int = 0
    resampled: int = 0  # outputs sampled again: a banned term slipped through or a required one was cut off
    still_violating: list[int] = field(default_factory=list)  # row numbers that never came clean


def generate_constrained(model, tokenizer, prompts: list[str], params: DecodingParams, constraints: Constraints,
                         seed: int = 0, batch_size: int = 16, retries: int = 3, progress: bool = True,
                         deadline: Deadline | None = None) -> tuple[list[str], GenerationReport]:
    """One completion per prompt under ``constraints``; see the module docstring. With a ``deadline``, decoding
    stops when it passes and ``DeadlineExceeded`` is raised instead of returning texts cut short."""
    controls = generation_controls(tokenizer, constraints, params.max_new_tokens)
    if deadline is not None:
        deadline.check()
        controls["stopping_criteria"] = StoppingCriteriaList([deadline])

    def sample(chunk: list[str], chunk_seed: int, show: bool) -> list[str]:
        texts = sample_texts(model, tokenizer, chunk, params, chunk_seed, batch_size, show, **controls)
        if deadline is not None:
            deadline.check()  # the texts were cut short by the deadline: no use to anyone, and no retries
        return texts

    texts = sample(prompts, seed, progress)
    report = GenerationReport(rows=len(prompts))
    bad = [i for i, t in enumerate(texts) if constraints.broken_by(t)]
    for attempt in range(1, retries + 1):
        if not bad:
            break
        report.resampled += len(bad)
        again = sample([prompts[i] for i in bad], seed + 1000 * attempt, False)
        for i, text in zip(bad, again, strict=True):
            texts[i] = text
        bad = [i for i in bad if constraints.broken_by(texts[i])]
    report.still_violating = bad
    return texts, report


def read_prompts(path: Path) -> list[dict]:
    """Rows of a CSV with ``brief`` (or ``prompt``) and ``task_type`` (optional ``id``, and ``month`` 1-12 for the
    month the copy runs in, default this month); errors name file, row, field."""
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
            month = (row.get("month") or "").strip()
            if month and not (re.fullmatch(r"[0-9]{1,2}", month) and 1 <= int(month) <= 12):
                raise ValidationError(f"{path}: row {n}: field month {month!r} is not a month number 1-12")
            rows.append({"id": (row.get("id") or "").strip() or str(n - 1), "brief": brief, "task_type": task,
                         "month": int(month) if month else None})
            if len(rows) > MAX_INPUT_ROWS:
                raise ValidationError(f"{path}: more than {MAX_INPUT_ROWS} rows; split the file")
    if not rows:
        raise ValidationError(f"{path}: no rows")
    return rows


def brief_contexts(region: dict, rows: list[dict]) -> list[BriefContext]:
    """The prompt context of each ``read_prompts`` row in ``region`` (a dict with name, locale, climate_by_month)."""
    return [BriefContext.of(region, r["task_type"], r["brief"], r.get("month")) for r in rows]


def generate_file(base_model: str, adapter: str | None, version: str, region: dict, input_path: Path,
                  output_path: Path, params: DecodingParams, constraints: Constraints, seed: int = 0,
                  batch_size: int = 16, progress: bool = True) -> GenerationReport:
    """Generate for every row of ``input_path`` in ``region`` with the version's policy; JSONL out, atomically."""
    rows = read_prompts(input_path)
    model, tokenizer = load_policy(base_model, adapter)
    prompts = render_all(tokenizer, brief_contexts(region, rows))
    texts, report = generate_constrained(model, tokenizer, prompts, params, constraints, seed, batch_size,
                                         progress=progress)
    write_rows([{"id": r["id"], "region": region["code"], "version": version, "task_type": r["task_type"],
                 "brief": r["brief"], "text": text, "params": asdict(params), "seed": seed,
                 "banned_terms_present": constraints.violations(text),
                 "required_terms_missing": constraints.missing(text)}
                for r, text in zip(rows, texts, strict=True)], output_path, "jsonl")  # atomic
    return report


def export_merged(base_model: str, adapter: str | None, out: Path) -> Path:
    """The version as plain Hugging Face weights (LoRA merged with ``merge_and_unload``) that vLLM or TGI can
    serve; written to a temporary folder beside ``out`` and renamed into place."""
    if out.exists():
        raise ValidationError(f"{out} already exists; pick another --out or remove it")
    model, tokenizer = load_policy(base_model, adapter, dtype=torch.float32)  # export full precision
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
