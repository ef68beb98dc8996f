"""Import regions, gold examples, prompts and preference pairs: validate everything, scrub PII, then write it all
in the caller's transaction.

Every problem is reported with file, row and field; one bad row imports nothing, unless ``skip_invalid`` asks to
import the valid rows and hand back the others (see :func:`write_rejects`). Duplicates (by content hash, per region)
are skipped and counted, so importing the same file twice changes nothing.

    with session_scope() as session:
        report = import_file(session, Path("gold.jsonl"), kind="examples", region="en-GB-manchester")
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from collect.layouts import LayoutError, normalise
from collect.pii import scrub
from collect.prompting import MONTHS
from collect.readers import read_records, read_rows
from collect.splits import assign_splits_by_content, content_hash
from db.errors import ValidationError
from db.lookups import get_region
from db.models import (
    AuditEvent,
    Choice,
    Example,
    Generation,
    ModelVersion,
    Pair,
    Prompt,
    Region,
    Side,
    Split,
    Strength,
    Tag,
    TaskType,
    User,
    VersionStatus,
    Vote,
    example_tags,
)
from db.names import is_valid_name

log = logging.getLogger(__name__)

KINDS = ("examples", "prompts", "preferences")
MAX_TEXT_CHARS = 20_000  # marketing copy is short; longer text is almost always a column mix-up
# C0/C1 control characters other than tab and line breaks, and unpaired surrogates: no copy holds them, PostgreSQL
# refuses NUL in text, and a lone surrogate cannot be encoded as UTF-8 by either database driver.
_UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_MONTH = re.compile(r"[0-9]{1,2}")  # ASCII only: str.isdigit() also accepts "²" and "٣", which int() refuses
TASK_TYPES = [t.value for t in TaskType]
EXTERNAL_VERSION = "external"  # the model version imported generations are attributed to
IMPORT_USER = "import"  # the system account imported preference votes are attributed to
REGION_FIELDS = {
    "code": str, "name": str, "locale": str, "country": str, "currency": str, "hemisphere": str,
    "timezone": str, "profile": str, "climate_by_month": dict, "local_terms": list, "avoid_terms": list,
}
CHUNK = 5_000  # rows per IN (...) lookup: well under SQLite's bound-parameter limit

Problem = tuple[str, int | None, str | None, str]
Reject = tuple[str, int | None, str | None, str, Any]  # a Problem and what the file held there (line or record)


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do). Never holds scrubbed values, only counts."""

    file: str
    kind: str
    rows: int = 0
    prompts_created: int = 0
    prompts_existing: int = 0
    examples_created: int = 0
    pairs_created: int = 0
    duplicates_skipped: int = 0
    splits: Counter = field(default_factory=Counter)
    regions: Counter = field(default_factory=Counter)
    layouts: Counter = field(default_factory=Counter)
    pii: Counter = field(default_factory=Counter)
    dry_run: bool = False
    rejected: int = 0  # rows left out by ``skip_invalid``
    # (file, row, field, reason, what the file held) per problem of a rejected row: for write_rejects only, never
    # in as_dict (which goes into the audit log), since it holds the rows as read, PII and all
    rejects: list[Reject] = field(default_factory=list, repr=False)

    @property
    def created(self) -> int:
        return {"examples": self.examples_created, "prompts": self.prompts_created,
                "preferences": self.pairs_created}[self.kind]

    def summary(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        noun = {"examples": "examples", "prompts": "prompts", "preferences": "preference pairs"}[self.kind]
        splits = ", ".join(f"{k} {self.splits[k]}" for k in ("train", "val", "test"))
        pii = ", ".join(f"{k} {v}" for k, v in sorted(self.pii.items())) or "none"
        layouts = f"; layouts: {dict(self.layouts)}" if self.layouts else ""
        rejected = f"; {self.rejected} invalid rows skipped" if self.rejected else ""
        return (f"{self.file}: {self.rows} rows read; {verb} {self.created} {noun} with {self.prompts_created} new "
                f"prompts ({splits}); {self.duplicates_skipped} duplicates skipped{rejected}; PII scrubbed: "
                f"{pii}{layouts}")

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "kind": self.kind, "rows": self.rows, "created": self.created,
                "prompts_created": self.prompts_created, "prompts_existing": self.prompts_existing,
                "duplicates_skipped": self.duplicates_skipped, "splits": dict(self.splits),
                "regions": dict(self.regions), "layouts": dict(self.layouts), "pii": dict(self.pii),
                "rejected": self.rejected, "dry_run": self.dry_run}


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------------------------------------------- regions


def _validate_region(obj: dict[str, Any], file: str) -> list[Problem]:
    row = obj.get("_row")
    problems = []
    for name, typ in REGION_FIELDS.items():
        value = obj.get(name)
        if value is None or value == "":
            problems.append((file, row, name, "missing"))
        elif not isinstance(value, typ):
            problems.append((file, row, name, f"expected {typ.__name__}, got {type(value).__name__}"))
    if obj.get("hemisphere") not in (None, "north", "south"):
        problems.append((file, row, "hemisphere", "must be 'north' or 'south'"))
    climate = obj.get("climate_by_month")
    if isinstance(climate, dict) and set(climate) != set(MONTHS):
        missing = [m for m in MONTHS if m not in climate]
        problems.append((file, row, "climate_by_month", f"needs the 12 month names; missing {missing}"))
    for name in ("local_terms", "avoid_terms"):
        terms = obj.get(name)
        if isinstance(terms, list) and not all(isinstance(t, str) and t.strip() for t in terms):
            problems.append((file, row, name, "must be a list of non-empty strings"))
    return problems


def import_regions(session: Session, path: Path, dry_run: bool = False) -> list[str]:
    """Create or update regions from a region.json / regions.jsonl file; returns the codes touched."""
    path = Path(path)
    rows = read_records(path)
    problems = [p for obj in rows for p in _validate_region(obj, str(path))]
    # a code becomes folder and version names (adapters/<code>-r1): one pattern, checked before anything is stored
    problems += [(str(path), obj.get("_row"), "code", f"{obj['code']!r} is not a valid region code: use 1-64 "
                  "letters, digits and hyphens, starting with a letter or digit (e.g. en-GB-manchester)")
                 for obj in rows if isinstance(obj.get("code"), str) and obj["code"]
                 and not is_valid_name(obj["code"])]
    if problems:
        raise ValidationError(f"{path}: {len(problems)} problems, nothing imported", problems)
    codes, changed = [], []
    for obj in rows:
        values = {name: obj[name] for name in REGION_FIELDS}
        codes.append(values["code"])
        region = session.scalar(select(Region).where(Region.code == values["code"]))
        if region is None:
            changed.append(values["code"])
            if not dry_run:
                session.add(Region(**values))
        elif any(getattr(region, name) != value for name, value in values.items()):
            changed.append(values["code"])
            if not dry_run:
                for name, value in values.items():
                    setattr(region, name, value)
    if changed and not dry_run:  # the audit log records changes; a no-op re-import leaves no trace
        session.flush()
        session.add(AuditEvent(action="import_regions", entity="region",
                               details={"file": path.name, "codes": changed}))
    return codes


# ---------------------------------------------------------------------------------------------- validation


def _tags_of(value: Any) -> list[str] | None:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [v.strip() for v in value] if all(isinstance(v, str) for v in value) else None
    if isinstance(value, str):  # CSV: "a;b" or a JSON list
        value = value.strip()
        if value.startswith("["):
            try:
                parsed = json.loads(value)
            except (ValueError, RecursionError):  # not JSON, a number too long for int(), or nested too deep
                return None
            return _tags_of(parsed) if isinstance(parsed, list) else None
        return [t.strip() for t in value.replace(",", ";").split(";") if t.strip()]
    return None


def _text(obj: dict[str, Any], name: str, problems: list[Problem], file: str) -> str | None:
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip():
        problems.append((file, obj["_row"], name, "missing or empty"))
        return None
    message = _text_problem(value)
    if message is not None:
        problems.append((file, obj["_row"], name, message))
        return None
    return value


def _text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    if len(value) > MAX_TEXT_CHARS:
        return f"{len(value)} characters, over the {MAX_TEXT_CHARS} limit"
    bad = _UNSTORABLE.search(value)
    if bad is not None:
        what = "an unpaired surrogate" if "\ud800" <= bad.group() <= "\udfff" else "a control character"
        return f"holds {what} (U+{ord(bad.group()):04X}) at character {bad.start() + 1}; remove it"
    return None


def _month_number(value: Any) -> int | None:
    """The month 1-12 in an int or a string of ASCII digits, else None."""
    if isinstance(value, str) and _MONTH.fullmatch(value):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 12:
        return value
    return None


def _validate_row(obj, kind, file, region, task_type, regions, tags, problems) -> dict[str, Any] | None:
    """One row → a clean dict, or None with its problems appended (file, row, field, message)."""
    row = obj["_row"]
    before = len(problems)
    code = obj.get("region") if obj.get("region") not in (None, "") else region
    if not code:
        problems.append((file, row, "region", "missing (add a region column or pass --region)"))
    elif not isinstance(code, str) or code not in regions:
        problems.append((file, row, "region", f"unknown region {code!r}"))
    elif region is not None and code != region:
        problems.append((file, row, "region", f"{code!r} contradicts --region {region}"))
    task = obj.get("task_type") if obj.get("task_type") not in (None, "") else task_type
    if not isinstance(task, str) or task not in TASK_TYPES:
        problems.append((file, row, "task_type", f"{task!r} is not one of {TASK_TYPES} (column or --task-type)"))
    month = obj.get("month")
    if month in (None, ""):
        month = None
    elif (number := _month_number(month)) is None:
        problems.append((file, row, "month", f"{month!r} is not a month number 1-12"))
    else:
        month = number
    clean: dict[str, Any] = {"row": row, "region": code, "task_type": task, "month": month}
    if kind == "preferences":
        try:
            clean["layout"], prompt, chosen, rejected = normalise(obj)
        except LayoutError as exc:
            problems.append((file, row, exc.field, str(exc)))
        else:
            for name, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
                if not value.strip():
                    problems.append((file, row, name, "empty after splitting off the prompt"))
                elif (message := _text_problem(value)) is not None:
                    problems.append((file, row, name, message))
            if chosen.strip() == rejected.strip():
                problems.append((file, row, "rejected", "identical to chosen"))
            clean |= {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        strength = obj.get("strength")
        if strength not in (None, "") and strength not in [s.value for s in Strength]:
            problems.append((file, row, "strength", f"{strength!r} is not one of slight, clear"))
        clean["strength"] = strength or None
    else:
        clean["prompt"] = _text(obj, "prompt", problems, file)
        if kind == "examples":
            clean["completion"] = _text(obj, "completion", problems, file)
            row_tags = _tags_of(obj.get("tags"))
            if row_tags is None:
                problems.append((file, row, "tags", "must be a list of tag names"))
            else:
                unknown = [t for t in row_tags if t not in tags]
                if unknown:
                    problems.append((file, row, "tags", f"unknown tags {unknown}; known: {sorted(tags)}"))
            clean["tags"] = row_tags or []
    return clean if len(problems) == before else None


# ---------------------------------------------------------------------------------------------------- import


def validate_file(path: Path, kind: str, region: str | None, task_type: str | None, regions: Mapping[str, Any],
                  tags: Mapping[str, Any], skip_invalid: bool = False
                  ) -> tuple[int, list[dict[str, Any]], list[Reject]]:
    """Read and check ``path`` against the known ``regions`` and ``tags`` (by name) without a database: the rows
    read, the clean rows and the rejects (empty unless ``skip_invalid``; otherwise any invalid row raises)."""
    file = str(path)
    rows, unreadable = read_rows(path)
    if not rows and not unreadable:
        raise ValidationError(f"{file}: no rows to import")
    rejects: list[Reject] = [(*problem, line) for problem, line in unreadable]
    clean = []
    for obj in rows:
        problems: list[Problem] = []
        c = _validate_row(obj, kind, file, region, task_type, regions, tags, problems)
        if c is not None:
            clean.append(c)
        rejects.extend((*p, {k: v for k, v in obj.items() if k != "_row"}) for p in problems)
    rejects.sort(key=lambda r: r[1] or 0)
    if rejects and not skip_invalid:
        raise ValidationError(f"{file}: {len(rejects)} problems in {len(rows) + len(unreadable)} rows, nothing "
                              "imported", [r[:4] for r in rejects])
    return len(rows) + len(unreadable), clean, rejects


def import_file(session: Session, path: Path, kind: str = "examples", region: str | None = None,
                task_type: str | None = None, dry_run: bool = False, source: str | None = None,
                skip_invalid: bool = False) -> ImportReport:
    """Import ``path`` as ``kind`` (examples, prompts or preferences) and report what was (or would be) stored.

    Rows need ``task_type`` (or ``task_type`` argument) and ``region`` (or ``region`` argument); examples need
    ``prompt`` and ``completion`` (plus optional ``tags``, ``month``); prompts need ``prompt``; preferences use
    any layout of :mod:`collect.layouts` (plus optional ``strength``: slight/clear). One invalid row imports
    nothing, unless ``skip_invalid``: then the valid rows are imported and ``report.rejects`` lists the others
    (write them with :func:`write_rejects`). A problem with the file as a whole always imports nothing.
    """
    if kind not in KINDS:
        raise ValidationError(f"unknown import kind {kind!r}; choose from {KINDS}")
    path = Path(path)
    file = str(path)
    regions = {r.code: r for r in session.scalars(select(Region))}
    tags = {t.name: t for t in session.scalars(select(Tag))}
    if region is not None:
        get_region(session, region)  # a NotFound naming the known regions
    if task_type is not None and task_type not in TASK_TYPES:
        raise ValidationError(f"unknown task type {task_type!r}; choose from {TASK_TYPES}")
    read, clean, rejects = validate_file(path, kind, region, task_type, regions, tags, skip_invalid)
    report = ImportReport(file=file, kind=kind, rows=read, dry_run=dry_run, rejected=len({r[1] for r in rejects}),
                          rejects=rejects)
    # A dry run does the real work inside a savepoint and rolls it back: its report is exactly what a real
    # import would do, duplicates against the database included.
    savepoint = session.begin_nested() if dry_run else None
    try:
        if clean:  # skip_invalid may leave nothing valid: then the report and the rejects are the result
            _write(session, clean, kind, regions, tags, source or path.name, report)
    finally:
        if savepoint is not None:
            savepoint.rollback()
    if not dry_run and (report.created or report.prompts_created):
        session.add(AuditEvent(action=f"import_{kind}", entity=kind, details=report.as_dict() | {"file": path.name}))
        session.flush()
    log.info(report.summary())
    return report


def rejects_jsonl(report: ImportReport) -> bytes:
    """The rows ``skip_invalid`` left out as JSON Lines: one line per problem, with the file, row, field, reason and
    the row as read (``record``; ``line`` for a line that was not JSON). The rows are unscrubbed: treat the bytes
    like the input file.

    Example line: ``{"file": "hh.jsonl", "row": 7, "field": "chosen", "reason": "missing or empty", "record": {…}}``
    """
    lines = []
    for file, row, field_, reason, held in report.rejects:
        entry: dict[str, Any] = {"file": file, "row": row, "field": field_, "reason": reason}
        entry["line" if isinstance(held, str) else "record"] = held
        # default=str: Parquet rows may hold dates, decimals or bytes
        lines.append(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
    # a lone surrogate, which UTF-8 cannot hold, is written as its \uXXXX escape: still valid JSON
    return "".join(lines).encode("utf-8", "backslashreplace")


def write_rejects(report: ImportReport, path: Path) -> Path:
    """Write :func:`rejects_jsonl` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(rejects_jsonl(report))
        tmp.replace(path)
    except OSError as exc:
        raise ValidationError(f"{path}: cannot write the rejects file ({exc.strerror or exc})") from exc
    return path


def _write(session, clean, kind, regions, tags, source, report) -> None:
    _scrub_rows(clean, regions, report)
    region_ids = {code: regions[code].id for code in {r["region"] for r in clean}}
    for r in clean:
        r["region_id"] = region_ids[r["region"]]
        r["prompt_hash"] = content_hash(r["task_type"], r["prompt"])
        if "layout" in r:
            report.layouts[r["layout"]] += 1
    prompt_ids, new_splits = _ensure_prompts(session, clean, source, report)
    if kind == "examples":
        _write_examples(session, clean, prompt_ids, new_splits, tags, source, report)
    elif kind == "prompts":
        for r in clean:
            key = (r["region_id"], r["prompt_hash"])
            if key in new_splits:
                report.splits[new_splits.pop(key)] += 1
                report.regions[r["region"]] += 1
            else:
                report.duplicates_skipped += 1
    else:
        _write_preferences(session, clean, prompt_ids, new_splits, source, report)
    for k in ("train", "val", "test"):
        report.splits.setdefault(k, 0)


def import_examples(session: Session, path: Path, region: str | None = None, dry_run: bool = False,
                    source: str | None = None) -> ImportReport:
    """Import gold examples (prompt + completion); see :func:`import_file`."""
    return import_file(session, path, "examples", region=region, dry_run=dry_run, source=source)


def _scrub_rows(clean: list[dict[str, Any]], regions: dict[str, Region], report: ImportReport) -> None:
    for r in clean:
        country = regions[r["region"]].country
        for name in ("prompt", "completion", "chosen", "rejected"):
            if r.get(name):
                r[name], found = scrub(r[name], country)
                report.pii.update(found)


def _lookup(session: Session, column_id, column_hash, where, hashes: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in _chunks(sorted(set(hashes))):
        stmt = select(column_id, column_hash).where(where, column_hash.in_(chunk))
        out.update({h: i for i, h in session.execute(stmt)})
    return out


def _ensure_prompts(session, clean, source, report) -> tuple[dict, dict]:
    """Prompt ids by (region id, hash), inserting new prompts, and the splits given to the new ones.

    A new prompt whose brief is already stored in any region takes that stored split, and one brief new to several
    regions gets one split for all (see :mod:`collect.splits`), so no brief is in train in one region and in test
    in another.
    """
    prompt_ids: dict[tuple[int, str], int] = {}
    stored: dict[str, tuple[int, Split]] = {}  # hash -> (id, split) of its earliest prompt in any region
    conflicts: set[str] = set()
    for chunk in _chunks(sorted({r["prompt_hash"] for r in clean})):
        # one query per chunk on the plain content_hash index: the same brief in every region, this one included
        rows = session.execute(select(Prompt.id, Prompt.region_id, Prompt.content_hash, Prompt.split)
                               .where(Prompt.content_hash.in_(chunk)))
        for pid, rid, h, split in rows:
            prompt_ids[(rid, h)] = pid
            if h in stored and stored[h][1] != split:
                conflicts.add(h)
            if h not in stored or pid < stored[h][0]:
                stored[h] = (pid, split)
    if conflicts:
        log.warning("%d briefs were stored in different splits in different regions (imported before splits "
                    "followed content); their new copies take the earliest copy's split", len(conflicts))
    new: dict[tuple[int, str], dict[str, Any]] = {}
    for r in clean:
        key = (r["region_id"], r["prompt_hash"])
        if key not in prompt_ids and key not in new:
            new[key] = {"region_id": key[0], "task_type": TaskType(r["task_type"]), "text": r["prompt"],
                        "month": r["month"], "source": source, "content_hash": key[1]}
    strata_of: dict[str, set[tuple[int, TaskType]]] = defaultdict(set)
    for (rid, h), p in new.items():
        strata_of[h].add((rid, p["task_type"]))
    counts: dict[tuple[int, TaskType], dict[str, int]] = defaultdict(dict)
    if new:
        for rid, task, split, n in session.execute(
            select(Prompt.region_id, Prompt.task_type, Prompt.split, func.count())
            .where(Prompt.region_id.in_(sorted({rid for rid, _ in new})))
            .group_by(Prompt.region_id, Prompt.task_type, Prompt.split)
        ):
            counts[(rid, task)][split.value] = n
    known = {h: stored[h][1].value for h in strata_of if h in stored}
    by_hash = assign_splits_by_content(strata_of, counts, known)
    splits: dict[tuple[int, str], str] = {}
    for key, p in new.items():
        p["split"] = Split(by_hash[key[1]])
        splits[key] = by_hash[key[1]]
    report.prompts_created = len(new)
    report.prompts_existing = len({(r["region_id"], r["prompt_hash"]) for r in clean}) - len(new)
    if new:
        for chunk in _chunks(list(new.values())):
            for pid, rid, h in session.execute(
                insert(Prompt).returning(Prompt.id, Prompt.region_id, Prompt.content_hash,
                                         sort_by_parameter_order=True), chunk
            ):
                prompt_ids[(rid, h)] = pid
    return prompt_ids, splits


def _write_examples(session, clean, prompt_ids, new_splits, tags, source, report) -> None:
    for r in clean:
        r["example_hash"] = content_hash(r["prompt_hash"], r["completion"])
    existing: set[tuple[int, str]] = set()
    by_region: dict[int, set[str]] = defaultdict(set)
    for r in clean:
        by_region[r["region_id"]].add(r["example_hash"])
    for rid, hashes in by_region.items():
        existing.update((rid, h) for h in _lookup(session, Example.id, Example.content_hash,
                                                   Example.region_id == rid, hashes))
    fresh = []
    for r in clean:
        key = (r["region_id"], r["example_hash"])
        if key in existing:
            report.duplicates_skipped += 1
            continue
        existing.add(key)
        fresh.append(r)
        report.splits[new_splits.get((r["region_id"], r["prompt_hash"]), "existing prompt")] += 1
        report.regions[r["region"]] += 1
    report.examples_created = len(fresh)
    if not fresh:
        return
    links = []
    for chunk in _chunks(fresh):
        ids = session.scalars(
            insert(Example).returning(Example.id, sort_by_parameter_order=True),
            [{"prompt_id": prompt_ids[(r["region_id"], r["prompt_hash"])], "region_id": r["region_id"],
              "text": r["completion"], "source": source, "content_hash": r["example_hash"]} for r in chunk],
        ).all()
        for eid, r in zip(ids, chunk, strict=True):
            links.extend({"example_id": eid, "tag_id": tags[t].id} for t in dict.fromkeys(r["tags"]))
    for chunk in _chunks(links):
        session.execute(insert(example_tags), chunk)


def ensure_import_identity(session: Session) -> tuple[ModelVersion, User]:
    """The ``external`` model version and the ``import`` system user that imported preferences belong to."""
    version = session.scalar(select(ModelVersion).where(ModelVersion.name == EXTERNAL_VERSION))
    if version is None:
        version = ModelVersion(name=EXTERNAL_VERSION, base_model="external", status=VersionStatus.retired,
                               lineage={"kind": "imported outputs of unknown models"})
        session.add(version)
    user = session.scalar(select(User).where(User.username == IMPORT_USER))
    if user is None:
        user = User(username=IMPORT_USER, password_hash="!", is_active=False, is_system=True)
        session.add(user)
    session.flush()
    return version, user


def _write_preferences(session, clean, prompt_ids, new_splits, source, report) -> None:
    for r in clean:
        r["chosen_hash"] = content_hash(r["prompt_hash"], r["chosen"])
        r["rejected_hash"] = content_hash(r["prompt_hash"], r["rejected"])
    version, user = ensure_import_identity(session)

    # 1. generations: one per distinct (prompt, text), reused across files
    gen_ids = _lookup(session, Generation.id, Generation.content_hash, Generation.model_version_id == version.id,
                      [h for r in clean for h in (r["chosen_hash"], r["rejected_hash"])])
    new_gens: dict[str, dict[str, Any]] = {}
    for r in clean:
        pid = prompt_ids[(r["region_id"], r["prompt_hash"])]
        for text, h in ((r["chosen"], r["chosen_hash"]), (r["rejected"], r["rejected_hash"])):
            if h not in gen_ids and h not in new_gens:
                new_gens[h] = {"prompt_id": pid, "model_version_id": version.id, "text": text, "seed": 0,
                               "params": {"source": source}, "content_hash": h}
    for chunk in _chunks(list(new_gens.values())):
        for gid, h in session.execute(
            insert(Generation).returning(Generation.id, Generation.content_hash, sort_by_parameter_order=True), chunk
        ):
            gen_ids[h] = gid

    # 2. pairs (chosen as "a") and the import user's vote; a pair already voted by the import user is a duplicate
    ab = [(gen_ids[r["chosen_hash"]], gen_ids[r["rejected_hash"]]) for r in clean]
    existing_pairs: dict[frozenset, tuple[int, int]] = {}
    all_gens = sorted({g for pair in ab for g in pair})
    for chunk in _chunks(all_gens):
        for pid_, a, b in session.execute(
            select(Pair.id, Pair.generation_a_id, Pair.generation_b_id).where(Pair.generation_a_id.in_(chunk))
        ):
            existing_pairs[frozenset((a, b))] = (pid_, a)
    voted = set()
    pair_ids = [p for p, _ in existing_pairs.values()]
    for chunk in _chunks(pair_ids):
        voted.update(session.scalars(select(Vote.pair_id).where(Vote.user_id == user.id, Vote.pair_id.in_(chunk))))
    new_pairs, todo_votes = [], []
    for r, (a, b) in zip(clean, ab, strict=True):
        key = frozenset((a, b))
        if key in existing_pairs:
            pair_id, first = existing_pairs[key]
            if pair_id in voted or pair_id is None:
                report.duplicates_skipped += 1
                continue
            voted.add(pair_id)
            todo_votes.append((r, pair_id, Choice.a if first == a else Choice.b))
            continue
        existing_pairs[key] = (None, a)  # claimed by this file: a repeat row is a duplicate
        new_pairs.append((r, a, b))
    for chunk in _chunks(new_pairs):
        ids = session.scalars(insert(Pair).returning(Pair.id, sort_by_parameter_order=True), [
            {"prompt_id": prompt_ids[(r["region_id"], r["prompt_hash"])], "region_id": r["region_id"],
             "generation_a_id": a, "generation_b_id": b, "model_a_id": version.id, "model_b_id": version.id}
            for r, a, b in chunk
        ]).all()
        todo_votes.extend((r, pair_id, Choice.a) for (r, _, _), pair_id in zip(chunk, ids, strict=True))
    for chunk in _chunks(todo_votes):
        session.execute(insert(Vote), [
            {"pair_id": pair_id, "user_id": user.id, "region_id": r["region_id"], "choice": choice,
             "strength": Strength(r["strength"]) if r["strength"] else None, "comment": "", "shown_left": Side.a,
             "source": "import"}
            for r, pair_id, choice in chunk
        ])
    for r, _, _ in todo_votes:
        report.splits[new_splits.get((r["region_id"], r["prompt_hash"]), "existing prompt")] += 1
        report.regions[r["region"]] += 1
    report.pairs_created = len(todo_votes)
