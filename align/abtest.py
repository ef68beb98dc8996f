"""A/B tests in campaign tools: a generic and a tuned variant per brief out, impressions, clicks and conversions
back in.

``export_test`` writes, for every brief of a CSV, the base model's copy (generic) and the chosen version's copy
(tuned) on one row, each with a variant id the campaign tool reports results against; both arms are decoded with
the same parameters, seed and constraints, so the test measures the adapter alone. The variants are stored, so
exporting the same test again rewrites the file from the database instead of generating anew.

``import_results`` reads per-variant totals to date (CSV, JSONL, JSON or Parquet: ``variant_id``,
``impressions``, ``clicks``, ``conversions``), checks every row first and writes all of them or none; importing
the same file again changes nothing, a newer export of the totals replaces the older one. ``rewards.lift`` turns
them into the lift with its interval that the Dashboard and ``geoalign abtest show`` report.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from align.generate import Constraints, brief_contexts, generate_constrained, read_prompts
from align.sampling import DecodingParams, load_policy, render_all
from collect.export import write_rows
from collect.readers import read_records
from db.errors import NotFound, ValidationError
from db.lookups import get_region
from db.models import AbTest, AbVariant, AuditEvent, ModelVersion, Region, TaskType, VersionStatus
from db.session import session_scope

ARMS = ("generic", "tuned")
COUNTS = ("impressions", "clicks", "conversions")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ROW_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
VARIANT_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,200}")  # what variant_key() can make of a NAME and a ROW_ID
MAX_COUNT = 2**31 - 1  # the INTEGER columns' range on PostgreSQL; SQLite overflows at 2**63
WHOLE = re.compile(r"([0-9]+)(?:\.0*)?")  # ASCII only: re's \d also takes "٣" and "²"
EXPORT_COLUMNS = ["test", "id", "region", "task_type", "brief", "generic_variant_id", "generic_version",
                  "generic_text", "tuned_variant_id", "tuned_version", "tuned_text"]


def variant_key(test: str, row_id: str, arm: str) -> str:
    """The id a campaign tool reports a variant's results against."""
    return f"{test}-{row_id}-{arm}"


def base_of(session: Session, version: ModelVersion) -> ModelVersion:
    """The root of ``version``'s lineage: the generic model it was tuned from."""
    while version.parent_id is not None:
        version = session.get(ModelVersion, version.parent_id)
    return version


@dataclass
class ExportSummary:
    test: str
    rows: int
    generated: bool  # False when the test already existed and the file was rewritten from the database
    resampled: int = 0  # outputs sampled again because a banned term slipped through the decoding controls


def _rows_of(session: Session, test: AbTest) -> list[dict]:
    """The export rows of a stored test, in input order."""
    versions = {v.id: v.name for v in session.scalars(select(ModelVersion).where(
        ModelVersion.id.in_([test.generic_version_id, test.tuned_version_id])))}
    variants = session.scalars(select(AbVariant).where(AbVariant.test_id == test.id).order_by(AbVariant.id)).all()
    rows: dict[str, dict] = {}
    for v in variants:
        row = rows.setdefault(v.row_key, {"test": test.name, "id": v.row_key, "region": test.region.code,
                                          "task_type": v.task_type.value, "brief": v.brief})
        version_id = test.generic_version_id if v.arm == "generic" else test.tuned_version_id
        row |= {f"{v.arm}_variant_id": v.variant_key, f"{v.arm}_version": versions[version_id],
                f"{v.arm}_text": v.text}
    return [{c: r[c] for c in EXPORT_COLUMNS} for r in rows.values()]


def _resolve(session: Session, name: str, region_code: str, tuned_name: str,
             generic_name: str | None) -> tuple[Region, ModelVersion, ModelVersion]:
    region = get_region(session, region_code)
    found = {}
    for arm, version_name in (("tuned", tuned_name), ("generic", generic_name)):
        if version_name is None:
            continue
        version = session.scalar(select(ModelVersion).where(ModelVersion.name == version_name))
        if version is None:
            raise NotFound(f"model version {version_name!r} (--{arm if arm == 'generic' else 'version'}) does "
                           "not exist; see geoalign model list")
        if version.status != VersionStatus.ready:
            raise ValidationError(f"model version {version_name!r} is {version.status.value}, not ready")
        found[arm] = version
    generic = found.get("generic") or base_of(session, found["tuned"])
    if generic.id == found["tuned"].id:
        raise ValidationError(f"test {name!r}: the tuned version {tuned_name!r} is its own base; pick a tuned "
                              "version or name the generic one with --generic")
    return region, generic, found["tuned"]


def export_test(engine: Engine, name: str, region_code: str, tuned_name: str, input_path: Path, output_path: Path,
                params: DecodingParams, constraints: Constraints, generic_name: str | None = None, seed: int = 0,
                batch_size: int = 16, progress: bool = True) -> ExportSummary:
    """Generate both variants for every brief of ``input_path``, store them as test ``name`` and write the CSV
    ``output_path`` (atomically). An existing test of the same region and versions is re-exported as stored."""
    if not NAME.fullmatch(name):
        raise ValidationError(f"test name {name!r}: use up to 64 letters, digits, '-', '_' or '.'")
    with session_scope(engine) as session:
        region, generic, tuned = _resolve(session, name, region_code, tuned_name, generic_name)
        existing = session.scalar(select(AbTest).where(AbTest.name == name))
        if existing is not None:
            wanted = (region.id, generic.id, tuned.id)
            if (existing.region_id, existing.generic_version_id, existing.tuned_version_id) != wanted:
                raise ValidationError(f"test {name!r} already exists for another region or other versions; "
                                      "pick a new --name")
            rows = _rows_of(session, existing)
            write_rows(rows, output_path, "csv")
            return ExportSummary(name, len(rows), generated=False)
        region_info = {"code": region.code, "name": region.name, "locale": region.locale,
                       "climate_by_month": dict(region.climate_by_month or {})}
        arms = {"generic": (generic.name, generic.base_model, generic.adapter_path),
                "tuned": (tuned.name, tuned.base_model, tuned.adapter_path)}

    briefs = read_prompts(input_path)
    seen: dict[str, int] = {}
    for n, row in enumerate(briefs, start=2):
        if not ROW_ID.fullmatch(row["id"]):
            raise ValidationError(f"{input_path}: row {n}: field id {row['id']!r} may hold up to 100 letters, "
                                  "digits, '-', '_', '.' or ':'")
        if row["id"] in seen:
            raise ValidationError(f"{input_path}: row {n}: field id {row['id']!r} repeats row {seen[row['id']]}")
        seen[row["id"]] = n
    contexts = brief_contexts(region_info, briefs)
    texts, resampled = {}, 0
    for arm, (_, base_model, adapter) in arms.items():
        model, tokenizer = load_policy(base_model, adapter)
        prompts = render_all(tokenizer, contexts)  # each arm through its own tokenizer's chat template
        texts[arm], report = generate_constrained(model, tokenizer, prompts, params, constraints, seed, batch_size,
                                                  progress=progress)
        resampled += report.resampled
        if report.still_violating:
            ids = [briefs[i]["id"] for i in report.still_violating]
            raise ValidationError(f"test {name!r}: the {arm} copy of briefs {ids} kept a banned term or lacked a "
                                  "required one after re-sampling; nothing was exported (loosen --ban/--require "
                                  "or raise --max-new-tokens)")
        del model

    settings = {"params": asdict(params), "seed": seed, "banned": list(constraints.banned),
                "boosted": list(constraints.boosted), "required": list(constraints.required),
                "input": Path(input_path).name}
    try:
        with session_scope(engine) as session:
            test = AbTest(name=name, region_id=region.id, generic_version_id=generic.id, tuned_version_id=tuned.id,
                          settings=settings)
            session.add(test)
            session.flush()
            session.add_all(
                AbVariant(test_id=test.id, variant_key=variant_key(name, b["id"], arm), row_key=b["id"], arm=arm,
                          task_type=TaskType(b["task_type"]), brief=b["brief"], text=texts[arm][i])
                for i, b in enumerate(briefs) for arm in ARMS)
            session.add(AuditEvent(action="abtest_export", entity="ab_test", entity_id=test.id,
                                   details={"name": name, "tuned": tuned.name, "generic": generic.name,
                                            "briefs": len(briefs)}))
            session.flush()
            rows = _rows_of(session, test)
            write_rows(rows, output_path, "csv")  # inside the transaction: no file without its stored test
    except IntegrityError as exc:
        raise ValidationError(f"test {name!r} was created meanwhile by someone else; export it again to get "
                              "their file") from exc
    return ExportSummary(name, len(rows), generated=True, resampled=resampled)


# ---------------------------------------------------------------------------------------------- results


@dataclass
class ImportSummary:
    rows: int
    changed: int  # variants whose totals differ from what was stored
    tests: list[str]


def _count(record: dict, field: str) -> int | str:
    """The whole number 0..MAX_COUNT in ``record[field]``, or a message saying what is wrong with it."""
    value = record.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        return "is missing"
    if isinstance(value, bool):
        return f"{value!r} is not a whole number"
    if isinstance(value, str):
        value = value.strip()
        whole = WHOLE.fullmatch(value)
        if whole is None:
            return f"{_short(value)} is not a non-negative whole number"
        digits = whole.group(1).lstrip("0") or "0"
        # int() of a long digit string is slow and refuses over 4,300 digits: compare lengths first
        if len(digits) > len(str(MAX_COUNT)) or int(digits) > MAX_COUNT:
            return f"{_short(value)} is over the largest count, {MAX_COUNT}"
        return int(digits)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        return f"{_short(value)} is not a non-negative whole number"
    if value > MAX_COUNT:
        return f"{_short(value)} is over the largest count, {MAX_COUNT}"
    return value


def _short(value: object) -> str:
    """``repr(value)``, cut to 40 characters: a 5,000-digit count need not be quoted whole."""
    try:
        text = repr(value)
    except ValueError:  # an int too long for str(): Python refuses over 4,300 digits
        return "a number of more than 4,300 digits"
    return text if len(text) <= 40 else text[:37] + "..."


def _key(value: object) -> str:
    if isinstance(value, (dict, list)):  # not an id; its str() could be huge
        return "(a JSON object or list)"
    try:
        return str(value or "").strip()
    except ValueError:  # an int too long for str()
        return "(a number of more than 4,300 digits)"


def import_results(session: Session, path: Path | str, test_name: str | None = None,
                   user_id: int | None = None) -> ImportSummary:
    """Set every listed variant's totals from ``path``; all rows are checked first and nothing is written unless
    every one is valid. ``test_name`` restricts the file to that test's variants."""
    path = Path(path)
    records = read_records(path)
    if not records:
        raise ValidationError(f"{path}: no rows")
    missing = [c for c in ("variant_id", *COUNTS) if c not in records[0]]
    if missing:
        raise ValidationError(f"{path}: needs columns variant_id, impressions, clicks, conversions; missing "
                              f"{', '.join(missing)}")
    only = None
    if test_name is not None:
        only = session.scalar(select(AbTest).where(AbTest.name == test_name))
        if only is None:
            raise NotFound(f"A/B test {test_name!r} does not exist; see geoalign abtest list")
    keys = [_key(r.get("variant_id")) for r in records]
    variants = {}  # variant_key -> (id, test_id, impressions, clicks, conversions), read in chunks of ids
    for start in range(0, len(keys), 1000):
        # only well-formed keys reach the query: a NUL byte or a lone surrogate would fail there, naming no row
        chunk = [k for k in keys[start:start + 1000] if k and VARIANT_KEY.fullmatch(k)]
        variants |= {row[0]: row[1:] for row in session.execute(select(
            AbVariant.variant_key, AbVariant.id, AbVariant.test_id, *(getattr(AbVariant, c) for c in COUNTS))
            .where(AbVariant.variant_key.in_(chunk)))}

    problems: list[tuple[str, int | None, str | None, str]] = []
    seen: dict[str, int] = {}
    updates: list[tuple[tuple, dict[str, int]]] = []
    for record, key in zip(records, keys, strict=True):
        row = record["_row"]

        def problem(field: str, message: str, row=row) -> None:
            problems.append((str(path), row, field, message))

        if not key:
            problem("variant_id", "is missing")
            continue
        if not VARIANT_KEY.fullmatch(key):
            problem("variant_id", f"{_short(key)} is not a variant id (letters, digits, '-', '_', '.', ':')")
            continue
        if key in seen:
            problem("variant_id", f"{key!r} repeats row {seen[key]}")
            continue
        seen[key] = row
        variant = variants.get(key)
        if variant is None:
            problem("variant_id", f"{key!r} is not a variant of any exported A/B test")
            continue
        if only is not None and variant[1] != only.id:
            problem("variant_id", f"{key!r} belongs to another test than {test_name!r}")
            continue
        counts = {field: _count(record, field) for field in COUNTS}
        bad = {f: v for f, v in counts.items() if isinstance(v, str)}
        for field, message in bad.items():
            problem(field, message)
        if bad:
            continue
        if counts["clicks"] > counts["impressions"]:
            problem("clicks", f"{counts['clicks']} clicks exceed {counts['impressions']} impressions")
            continue
        if counts["conversions"] > counts["impressions"]:
            problem("conversions", f"{counts['conversions']} conversions exceed {counts['impressions']} impressions")
            continue
        updates.append((variant, counts))
    if problems:
        raise ValidationError(f"{path}: {len(problems)} problem(s), nothing imported", problems)

    now = datetime.now(timezone.utc)
    changed = [{"id": variant[0], **counts, "results_at": now} for variant, counts in updates
               if tuple(variant[2:]) != tuple(counts[f] for f in COUNTS)]
    if changed:  # ORM bulk UPDATE by primary key: one executemany
        session.execute(update(AbVariant), changed)
    test_ids = sorted({variant[1] for variant, _ in updates})
    names = list(session.scalars(select(AbTest.name).where(AbTest.id.in_(test_ids)).order_by(AbTest.name)))
    if changed:
        session.add(AuditEvent(user_id=user_id, action="abtest_results", entity="ab_test",
                               entity_id=test_ids[0] if len(test_ids) == 1 else None,
                               details={"file": path.name, "rows": len(updates), "changed": len(changed),
                                        "tests": names}))
    session.flush()
    return ImportSummary(rows=len(updates), changed=len(changed), tests=names)


def list_tests(session: Session) -> list[dict]:
    """Every A/B test with its region, versions, briefs and how many variants have results (one query)."""
    generic, tuned = aliased(ModelVersion), aliased(ModelVersion)
    rows = session.execute(
        select(AbTest.name, Region.code, generic.name, tuned.name, func.count(AbVariant.id),
               func.count(AbVariant.impressions), AbTest.created_at)
        .join(Region, AbTest.region_id == Region.id).join(generic, AbTest.generic_version_id == generic.id)
        .join(tuned, AbTest.tuned_version_id == tuned.id).outerjoin(AbVariant, AbVariant.test_id == AbTest.id)
        .group_by(AbTest.id, AbTest.name, Region.code, generic.name, tuned.name, AbTest.created_at)
        .order_by(AbTest.id)).all()
    return [{"test": name, "region": region, "generic": g, "tuned": t, "briefs": n // 2,
             "variants_with_results": with_results, "created_at": created}
            for name, region, g, t, n, with_results, created in rows]
