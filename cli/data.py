"""Data in and out: ``geoalign import``, ``export``, ``tags`` and ``pairs``.

    geoalign import examples gold.jsonl --region en-GB-manchester --dry-run
    geoalign export preferences prefs.jsonl --region en-GB-manchester
    geoalign pairs generate --version base --region en-GB-manchester
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from align.registry import get_version
from cli.common import add, add_region_filter, engine, group
from collect.datasets import DatasetFilter, preference_rows, regions_of, sft_rows
from collect.ingest import import_file, import_regions, write_rejects
from collect.pairing import make_pairs, newest_pairs, prompts_to_sample
from collect.tags import add_tag, ensure_default_tags, list_tags, remove_tag
from db.errors import GeoAlignError, NotFound
from db.lookups import get_regions
from db.session import session_scope

# -------------------------------------------------------------------------------------------------- import


def cmd_import_regions(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        codes = import_regions(session, Path(args.path), dry_run=args.dry_run)
        if args.dry_run:
            session.rollback()
    print(f"{'would import' if args.dry_run else 'imported'} {len(codes)} regions: {', '.join(codes)}")
    return 0


def _rejects_path(args: argparse.Namespace) -> Path:
    """Where ``--skip-invalid`` writes the rows it left out: ``--rejects``, else beside the ``--report-json``
    report, else ``<input name>.rejects.jsonl`` in the current directory."""
    if args.rejects:
        return Path(args.rejects)
    if args.report_json:
        report = Path(args.report_json)
        return report.with_name(report.stem + ".rejects.jsonl")
    return Path(Path(args.path).name + ".rejects.jsonl")


def cmd_import_rows(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        ensure_default_tags(session)
        report = import_file(session, Path(args.path), kind=args.kind, region=args.region, task_type=args.task_type,
                             dry_run=args.dry_run, skip_invalid=args.skip_invalid)
        if report.rejects:  # inside the transaction: a rejects file that cannot be written imports nothing
            print(f"{report.rejected} invalid rows skipped, listed in {write_rejects(report, _rejects_path(args))}")
    print(report.summary())
    if args.report_json:
        Path(args.report_json).write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    return 0


# -------------------------------------------------------------------------------------------------- export


def _date(value: str | None) -> datetime | None:
    """``--since``/``--until`` as an aware datetime (UTC unless the value names a zone)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise GeoAlignError(f"--since/--until {value!r} is not an ISO date (e.g. 2026-11-01)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _filter(args: argparse.Namespace) -> DatasetFilter:
    return DatasetFilter(splits=tuple(args.split or ["train"]), regions=tuple(args.region) if args.region else None,
                         rounds=tuple(args.round) if args.round else None, since=_date(args.since),
                         until=_date(args.until), allow_test=args.allow_test)


def cmd_export(args: argparse.Namespace) -> int:
    from collect.export import write_rows  # lazy: pulls in datasets (Hugging Face)

    filters = _filter(args)
    with session_scope(engine()) as session:
        if filters.regions:
            get_regions(session, filters.regions)
        if args.what == "sft":
            rows, extra = sft_rows(session, filters, args.prompt_format), ""
        else:
            rows, stats = preference_rows(session, filters, args.prompt_format)
            extra = (f"; {stats.votes} votes on {stats.pairs_with_votes} pairs: {stats.pairs_kept} kept, "
                     f"{stats.ties_dropped} ties dropped, {stats.both_bad} both-bad, "
                     f"{stats.rewrite_rows} rewrite rows")
    out = write_rows(rows, Path(args.output), args.format)
    per_region = ", ".join(f"{k} {v}" for k, v in sorted(regions_of(rows).items()))
    print(f"wrote {len(rows)} {args.what} rows to {out} ({per_region}){extra}")
    return 0


# ---------------------------------------------------------------------------------------------------- tags


def cmd_tags_list(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        ensure_default_tags(session)
        for tag in list_tags(session):
            print(f"{tag.name:26} {tag.label:26} {tag.description}")
    return 0


def cmd_tags_add(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        tag = add_tag(session, args.name, args.label, args.description)
    print(f"added tag {tag.name}")
    return 0


def cmd_tags_remove(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        remove_tag(session, args.name)
    print(f"removed tag {args.name}")
    return 0


# --------------------------------------------------------------------------------------------------- pairs


def cmd_pairs_generate(args: argparse.Namespace) -> int:
    from align.sampling import DecodingParams, generate_candidates  # lazy: pulls in torch and transformers

    params = DecodingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    with session_scope(engine()) as session:
        version_a = get_version(session, args.version)
        version_b = get_version(session, args.against) if args.against else version_a
        prompt_ids = prompts_to_sample(session, args.split or ["train"], args.region, args.limit)
        if not prompt_ids:
            raise NotFound("no prompts match the region and split filters")
        added = 0
        for version in {version_a.id: version_a, version_b.id: version_b}.values():
            added += generate_candidates(session, version, prompt_ids, samples_per_prompt=args.samples,
                                         params=params, seed=args.seed)
        pairs = make_pairs(session, prompt_ids, version_a, version_b, seed=args.seed)
    print(f"{len(prompt_ids)} prompts: {added} new generations, {pairs} new pairs "
          f"({version_a.name} vs {version_b.name})")
    return 0


def cmd_pairs_list(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        pairs = newest_pairs(session, args.limit, args.region)
        if not pairs:
            print("no pairs yet: `geoalign demo` or `geoalign pairs generate` makes some")
        for pair in pairs:
            print(f"pair {pair.id} · {pair.prompt.region.code} · {pair.prompt.task_type.value} · "
                  f"split {pair.prompt.split.value}\n  brief: {pair.prompt.text}")
            for side, gen in (("A", pair.generation_a), ("B", pair.generation_b)):
                print(f"  {side}: {gen.text}")
            print()
    return 0


# ------------------------------------------------------------------------------------------------ register


def register(sub) -> None:
    """``geoalign import``, ``export``, ``tags`` and ``pairs``."""
    imp = group(sub, "import", "import regions, gold examples, prompts and preference pairs (validated, "
                "all-or-nothing)")
    p = add(imp, "regions", cmd_import_regions, "create or update regions from region.json / regions.jsonl")
    p.add_argument("path", help="a .json or .jsonl file of region profiles")
    p.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    for kind, help_, description in (
        ("examples", "import gold examples (prompt + completion)",
         "Gold examples: fields prompt, completion, task_type, region (or --region), tags, month."),
        ("prompts", "import briefs without outputs (prompts only)",
         "Prompts only: fields prompt, task_type, region (or --region), month."),
        ("preferences", "import preference pairs (explicit, implicit or conversational layout)",
         "Preference pairs in any of TRL's layouts: explicit prompt/chosen/rejected; implicit chosen/rejected "
         "transcripts sharing a prompt prefix (e.g. '\\n\\nHuman: ... \\n\\nAssistant:'); conversational lists of "
         "{role, content} messages. Optional strength (slight/clear). Each pair is stored with one vote by the "
         "system user 'import'."),
    ):
        p = add(imp, kind, cmd_import_rows, help_, description + " Formats: JSONL, JSON, CSV, Parquet or a Hugging "
                "Face dataset directory. PII is scrubbed before anything is stored; all-or-nothing unless "
                "--skip-invalid; duplicates (by content hash, per region) are skipped and counted.")
        p.set_defaults(kind=kind)
        p.add_argument("path", help="a .jsonl, .json, .csv, .parquet file or a save_to_disk directory")
        p.add_argument("--region", help="region code for every row (rows may also carry a region column)")
        p.add_argument("--task-type", choices=["ad_copy", "meta_description", "social_post", "email_subject"],
                       help="task type for rows without a task_type column")
        p.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
        p.add_argument("--report-json", help="also write the import report to this JSON file")
        p.add_argument("--skip-invalid", action="store_true",
                       help="import the valid rows and write the invalid ones, with row, field and reason, to a "
                            "rejects file (JSONL, rows unscrubbed) instead of importing nothing")
        p.add_argument("--rejects", help="the rejects file of --skip-invalid (default: beside --report-json as "
                                         "NAME.rejects.jsonl, else INPUT.rejects.jsonl in the current directory)")

    exp = group(sub, "export", "export training datasets (HF datasets, JSONL, Parquet)")
    for what, help_ in (("sft", "prompt/completion rows from gold examples and reviewer rewrites"),
                        ("preferences", "prompt/chosen/rejected/margin rows aggregated from votes")):
        p = add(exp, what, cmd_export, help_, help_ + ". See the README for the aggregation rules.")
        p.set_defaults(what=what)
        p.add_argument("output", help="output path: DIR (HF save_to_disk), FILE.jsonl or FILE.parquet")
        p.add_argument("--format", choices=["hf", "jsonl", "parquet"], help="override the format the path implies")
        add_region_filter(p)
        p.add_argument("--round", action="append", type=int, help="round number of the pairs (repeatable)")
        p.add_argument("--split", action="append", choices=["train", "val", "test"],
                       help="prompt split (repeatable; default: train)")
        p.add_argument("--since", help="only votes/examples created at or after this ISO date")
        p.add_argument("--until", help="only votes/examples created before this ISO date")
        p.add_argument("--prompt-format", choices=["conversational", "text", "raw"], default="conversational",
                       help="conversational: TRL's chat-message format (system context + brief, assistant "
                            "completions); text: the plain 'Region: … Copy:' prompt and string completions; "
                            "raw: the brief as stored")
        p.add_argument("--allow-test", action="store_true",
                       help="allow the held-out test split (evaluation/audit only, never for training)")

    tg = group(sub, "tags", "the annotation tag vocabulary")
    add(tg, "list", cmd_tags_list, "list tags")
    p = add(tg, "add", cmd_tags_add, "add a tag")
    p.add_argument("name", help="slug, e.g. humour_lands")
    p.add_argument("--label", required=True, help="what reviewers see")
    p.add_argument("--description", default="", help="when to use it")
    p = add(tg, "remove", cmd_tags_remove, "remove a tag that nothing uses yet")
    p.add_argument("name")

    prs = group(sub, "pairs", "candidate generation and pairs for review")
    p = add(prs, "generate", cmd_pairs_generate, "sample candidates and pair them for review",
            "Sample outputs of --version (and --against) for matching prompts, store them as generations "
            "with their decoding parameters and seed, and add pairs to the review queue. Idempotent.")
    p.add_argument("--version", default="base", help="model version to sample")
    p.add_argument("--against", help="second model version (default: a second sample of --version)")
    add_region_filter(p)
    p.add_argument("--split", action="append", choices=["train", "val", "test"], default=None,
                   help="prompt split (repeatable; default: train)")
    p.add_argument("--limit", type=int, default=50, help="maximum number of prompts")
    p.add_argument("--samples", type=int, default=2, help="samples per prompt and version")
    p.add_argument("--max-new-tokens", type=int, default=96, help="decoding: maximum new tokens")
    p.add_argument("--temperature", type=float, default=0.9, help="decoding: temperature")
    p.add_argument("--top-p", type=float, default=0.95, help="decoding: nucleus sampling mass")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")

    p = add(prs, "list", cmd_pairs_list, "show the newest pairs with their brief and both outputs")
    p.add_argument("--region", help="only this region")
    p.add_argument("--limit", type=int, default=5, help="how many pairs")
