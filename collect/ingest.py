"""Import regions and gold examples from files: validate everything first, then write it all in one transaction.

Every problem is reported with file, row and field; one bad row imports nothing. Duplicates (by content hash,
per region) are skipped and counted, so importing the same file twice changes nothing.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from collect.splits import assign_splits, content_hash
from db.errors import NotFound, ValidationError
from db.models import AuditEvent, Example, Prompt, Region, Split, Tag, TaskType, example_tags

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 512 * 1024 * 1024  # beyond this, split the file: it is read into memory to validate it whole
MAX_TEXT_CHARS = 20_000  # marketing copy is short; longer text is almost always a column mix-up
TASK_TYPES = [t.value for t in TaskType]
REGION_FIELDS = {
    "code": str, "name": str, "locale": str, "country": str, "currency": str, "hemisphere": str,
    "timezone": str, "profile": str, "climate_by_month": dict, "local_terms": list, "avoid_terms": list,
}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do)."""

    file: str
    rows: int = 0
    prompts_created: int = 0
    prompts_existing: int = 0
    examples_created: int = 0
    duplicates_skipped: int = 0
    splits: Counter = field(default_factory=Counter)
    regions: Counter = field(default_factory=Counter)
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        splits = ", ".join(f"{k} {self.splits[k]}" for k in ("train", "val", "test"))
        return (f"{self.file}: {self.rows} rows read; {verb} {self.examples_created} examples and "
                f"{self.prompts_created} new prompts ({splits}); {self.duplicates_skipped} duplicates skipped")


def _check_size(path: Path) -> None:
    if not path.exists():
        raise NotFound(f"{path}: file not found")
    if path.is_dir():
        raise ValidationError(f"{path}: is a directory, expected a .jsonl, .json or .csv file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValidationError(f"{path}: {size / 2**20:.0f} MiB is over the {MAX_FILE_BYTES // 2**20} MiB limit")


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValidationError(f"{path}: not UTF-8 (invalid byte at line {line}, offset {exc.start})") from exc


def read_records(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL, JSON (a list of objects) or CSV file into a list of dicts; row numbers are 1-based."""
    path = Path(path)
    _check_size(path)
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows, problems = [], []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append((str(path), i, None, f"invalid JSON: {exc.msg} (column {exc.colno})"))
                continue
            if not isinstance(obj, dict):
                problems.append((str(path), i, None, f"expected a JSON object, got {type(obj).__name__}"))
                continue
            rows.append(obj | {"_row": i})
        if problems:
            raise ValidationError(f"{path}: {len(problems)} unreadable rows", problems)
        return rows
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
        if isinstance(data, dict):
            data = data.get("data", [data]) if "data" in data else [data]
        if not isinstance(data, list) or not all(isinstance(o, dict) for o in data):
            raise ValidationError(f"{path}: expected a JSON object or a list of objects")
        return [o | {"_row": i} for i, o in enumerate(data, start=1)]
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        return [dict(r) | {"_row": i} for i, r in enumerate(reader, start=2)]  # row 1 is the header
    raise ValidationError(f"{path}: unsupported file type {suffix or '(none)'}; use .jsonl, .json or .csv")


# ---------------------------------------------------------------------------------------------------- regions


def _validate_region(obj: dict[str, Any], file: str) -> list[tuple[str, int | None, str | None, str]]:
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
    if problems:
        raise ValidationError(f"{path}: {len(problems)} problems, nothing imported", problems)
    codes = []
    for obj in rows:
        values = {name: obj[name] for name in REGION_FIELDS}
        codes.append(values["code"])
        if dry_run:
            continue
        region = session.scalar(select(Region).where(Region.code == values["code"]))
        if region is None:
            session.add(Region(**values))
        else:
            for name, value in values.items():
                setattr(region, name, value)
    if not dry_run:
        session.flush()
        session.add(AuditEvent(action="import_regions", entity="region", details={"file": path.name, "codes": codes}))
    return codes


# ---------------------------------------------------------------------------------------------------- examples


def _tags_of(value: Any) -> list[str] | None:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value] if all(isinstance(v, str) for v in value) else None
    if isinstance(value, str):  # CSV: "a;b" or a JSON list
        value = value.strip()
        if value.startswith("["):
            try:
                return _tags_of(json.loads(value))
            except json.JSONDecodeError:
                return None
        return [t.strip() for t in value.replace(",", ";").split(";") if t.strip()]
    return None


def import_examples(
    session: Session, path: Path, region: str | None = None, dry_run: bool = False, source: str | None = None
) -> ImportReport:
    """Import gold examples (prompt + completion) from ``path``.

    Each row needs ``prompt``, ``completion`` and ``task_type`` (one of TASK_TYPES); ``region`` comes from the
    row or from the ``region`` argument; ``tags`` (list, or "a;b" in CSV) and ``month`` (1-12) are optional.
    """
    path = Path(path)
    rows = read_records(path)
    file = str(path)
    regions = {r.code: r for r in session.scalars(select(Region))}
    tags = {t.name: t for t in session.scalars(select(Tag))}
    if region is not None and region not in regions:
        known = ", ".join(sorted(regions)) or "none (import regions first)"
        raise NotFound(f"unknown region {region!r}; known: {known}")

    problems: list[tuple[str, int | None, str | None, str]] = []
    clean: list[dict[str, Any]] = []
    for obj in rows:
        row = obj["_row"]
        before = len(problems)
        code = obj.get("region") or region
        if not code:
            problems.append((file, row, "region", "missing (add a region column or pass --region)"))
        elif code not in regions:
            problems.append((file, row, "region", f"unknown region {code!r}"))
        elif region is not None and obj.get("region") not in (None, "", region):
            problems.append((file, row, "region", f"{obj['region']!r} contradicts --region {region}"))
        for name in ("prompt", "completion"):
            value = obj.get(name)
            if not isinstance(value, str) or not value.strip():
                problems.append((file, row, name, "missing or empty"))
            elif len(value) > MAX_TEXT_CHARS:
                problems.append((file, row, name, f"{len(value)} characters, over the {MAX_TEXT_CHARS} limit"))
        if obj.get("task_type") not in TASK_TYPES:
            problems.append((file, row, "task_type", f"{obj.get('task_type')!r} is not one of {TASK_TYPES}"))
        row_tags = _tags_of(obj.get("tags"))
        if row_tags is None:
            problems.append((file, row, "tags", "must be a list of tag names"))
        else:
            unknown = [t for t in row_tags if t not in tags]
            if unknown:
                problems.append((file, row, "tags", f"unknown tags {unknown}; known: {sorted(tags)}"))
        month = obj.get("month")
        if month not in (None, ""):
            try:
                month = int(month)
                if not 1 <= month <= 12:
                    raise ValueError
            except (TypeError, ValueError):
                problems.append((file, row, "month", f"{obj.get('month')!r} is not a month number 1-12"))
        if len(problems) == before:
            clean.append({"row": row, "region": code, "task_type": obj["task_type"], "prompt": obj["prompt"],
                          "completion": obj["completion"], "tags": row_tags, "month": month or None})
    if problems:
        raise ValidationError(f"{file}: {len(problems)} problems in {len(rows)} rows, nothing imported", problems)
    return _write_examples(session, clean, regions, tags, file, dry_run, source or path.name)


def _write_examples(session, clean, regions, tags, file, dry_run, source) -> ImportReport:
    report = ImportReport(file=file, rows=len(clean), dry_run=dry_run)
    region_ids = {code: regions[code].id for code in {r["region"] for r in clean}}

    # 1. prompts: reuse existing ones (same region and hash), create the rest with stratified splits
    for r in clean:
        r["prompt_hash"] = content_hash(r["task_type"], r["prompt"])
        r["example_hash"] = content_hash(r["prompt_hash"], r["completion"])
    existing_prompts: dict[tuple[int, str], int] = {}
    for rid in region_ids.values():
        hashes = {r["prompt_hash"] for r in clean if region_ids[r["region"]] == rid}
        for pid, h in session.execute(
            select(Prompt.id, Prompt.content_hash).where(Prompt.region_id == rid, Prompt.content_hash.in_(hashes))
        ):
            existing_prompts[(rid, h)] = pid
    new_prompts: dict[tuple[int, str], dict[str, Any]] = {}
    for r in clean:
        key = (region_ids[r["region"]], r["prompt_hash"])
        if key not in existing_prompts and key not in new_prompts:
            new_prompts[key] = {"region_id": key[0], "task_type": TaskType(r["task_type"]), "text": r["prompt"],
                                "month": r["month"], "source": source, "content_hash": key[1]}
    strata: dict[tuple[int, str], list[str]] = defaultdict(list)
    for (rid, h), p in new_prompts.items():
        strata[(rid, p["task_type"].value)].append(h)
    for (rid, task), hashes in strata.items():
        counts = dict(session.execute(
            select(Prompt.split, func.count()).where(Prompt.region_id == rid, Prompt.task_type == TaskType(task))
            .group_by(Prompt.split)
        ).all())
        for h, split in assign_splits(hashes, {k.value: v for k, v in counts.items()}).items():
            new_prompts[(rid, h)]["split"] = Split(split)
    report.prompts_created = len(new_prompts)
    report.prompts_existing = len({(region_ids[r["region"]], r["prompt_hash"]) for r in clean}) - len(new_prompts)

    # 2. examples: skip hashes already stored for the region, or repeated within the file
    existing_examples: set[tuple[int, str]] = set()
    for rid in region_ids.values():
        hashes = {r["example_hash"] for r in clean if region_ids[r["region"]] == rid}
        existing_examples.update(
            (rid, h) for h in session.scalars(
                select(Example.content_hash).where(Example.region_id == rid, Example.content_hash.in_(hashes))
            )
        )
    fresh: list[dict[str, Any]] = []
    seen: set[tuple[int, str]] = set()
    for r in clean:
        key = (region_ids[r["region"]], r["example_hash"])
        if key in existing_examples or key in seen:
            report.duplicates_skipped += 1
            continue
        seen.add(key)
        fresh.append(r)
        prompt_key = (key[0], r["prompt_hash"])
        split = new_prompts[prompt_key]["split"].value if prompt_key in new_prompts else None
        report.splits[split or "existing prompt"] += 1
        report.regions[r["region"]] += 1
    for k in ("train", "val", "test"):
        report.splits.setdefault(k, 0)
    report.examples_created = len(fresh)
    if dry_run:
        return report

    # 3. write: bulk inserts, all inside the caller's transaction
    if new_prompts:
        session.execute(insert(Prompt), list(new_prompts.values()))
        for rid in region_ids.values():
            hashes = [h for (r_id, h) in new_prompts if r_id == rid]
            for pid, h in session.execute(
                select(Prompt.id, Prompt.content_hash).where(Prompt.region_id == rid, Prompt.content_hash.in_(hashes))
            ):
                existing_prompts[(rid, h)] = pid
    if fresh:
        session.execute(insert(Example), [
            {"prompt_id": existing_prompts[(region_ids[r["region"]], r["prompt_hash"])],
             "region_id": region_ids[r["region"]], "text": r["completion"], "source": source,
             "content_hash": r["example_hash"]}
            for r in fresh
        ])
        links = []
        for rid in region_ids.values():
            by_hash = {r["example_hash"]: r for r in fresh if region_ids[r["region"]] == rid}
            for eid, h in session.execute(
                select(Example.id, Example.content_hash).where(Example.region_id == rid,
                                                                Example.content_hash.in_(list(by_hash)))
            ):
                links.extend({"example_id": eid, "tag_id": tags[t].id} for t in dict.fromkeys(by_hash[h]["tags"]))
        if links:
            session.execute(insert(example_tags), links)
    session.add(AuditEvent(action="import_examples", entity="example", details={
        "file": Path(file).name, "rows": report.rows, "examples_created": report.examples_created,
        "prompts_created": report.prompts_created, "duplicates_skipped": report.duplicates_skipped,
    }))
    session.flush()
    log.info(report.summary())
    return report

