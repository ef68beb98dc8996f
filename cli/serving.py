"""Putting a model version to work outside the review loop: ``geoalign generate``, ``serve``, ``keys``, ``deploy``
and ``abtest``.

    geoalign generate --region en-GB-manchester --version all-r1 --input prompts.csv --output out.jsonl
    geoalign keys add cms-manchester --region en-GB-manchester
    geoalign deploy set --region en-GB-manchester --version all-r1
    geoalign deploy promote --region en-GB-manchester --version en-GB-manchester-r2   # only a decided winner
    geoalign serve --port 8000
    geoalign abtest export --name spring-mcr --region en-GB-manchester --version all-r1 --input briefs.csv \
        --output spring-mcr.csv
    geoalign abtest import-results campaign-results.csv
    geoalign abtest show spring-mcr
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import uvicorn

from align.deploy import deploy
from align.promotion import promote
from align.registry import generation_target
from cli.common import add, add_decoding_arguments, cli_actor, engine, group
from db.apikeys import create_key, list_keys, revoke_key
from db.queries import ab_results
from db.session import session_scope
from rewards.lift import lift_table

if TYPE_CHECKING:
    from align.generate import Constraints
    from align.sampling import DecodingParams


def _target(version: str, region_code: str) -> tuple[dict, dict]:
    """The version's weights and the region's profile, read in a session of their own (generation is long)."""
    with session_scope(engine()) as session:
        return generation_target(session, version, region_code)


def _decoding(args: argparse.Namespace, region: dict) -> tuple[DecodingParams, Constraints]:
    """Decoding parameters and constraints from the shared options of ``generate`` and ``abtest export``."""
    from align.generate import Constraints  # lazy: pulls in torch and transformers
    from align.sampling import DecodingParams  # lazy: pulls in torch and transformers

    constraints = Constraints.for_region(region["avoid_terms"], region["local_terms"], args.ban or (),
                                         args.boost or (), use_region=not args.no_region_terms,
                                         require=args.require or ())
    params = DecodingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    return params, constraints


def cmd_generate(args: argparse.Namespace) -> int:
    from align.generate import generate_file  # lazy: pulls in torch and transformers

    version, region = _target(args.version, args.region)
    params, constraints = _decoding(args, region)
    report = generate_file(version["base_model"], version["adapter"], version["name"], region, Path(args.input),
                           Path(args.output), params, constraints, seed=args.seed, batch_size=args.batch_size)
    print(f"{report.rows} outputs written to {args.output} ({len(constraints.banned)} banned, "
          f"{len(constraints.boosted)} boosted, {len(constraints.required)} required terms; "
          f"{report.resampled} resampled after a constraint slipped through)")
    if report.still_violating:
        print(f"warning: rows {report.still_violating} still break a constraint (see banned_terms_present, "
              "required_terms_missing)")
        return 1
    return 0


def cmd_abtest_export(args: argparse.Namespace) -> int:
    from align.abtest import export_test  # lazy: pulls in torch and transformers via align.generate

    _, region = _target(args.version, args.region)
    params, constraints = _decoding(args, region)
    summary = export_test(engine(), args.name, args.region, args.version, Path(args.input), Path(args.output),
                          params, constraints, generic_name=args.generic, seed=args.seed, batch_size=args.batch_size)
    how = "generated" if summary.generated else "already existed; rewritten from the stored variants"
    print(f"A/B test {summary.test!r}: {summary.rows} briefs × 2 variants written to {args.output} ({how}). "
          f"Report results per variant_id with `geoalign abtest import-results`.")
    return 0


def cmd_abtest_import(args: argparse.Namespace) -> int:
    from align.abtest import import_results  # lazy: pulls in torch and transformers via align.generate

    with session_scope(engine()) as session:
        summary = import_results(session, Path(args.path), test_name=args.test)
    print(f"{summary.rows} variants read, {summary.changed} updated ({summary.rows - summary.changed} unchanged) "
          f"in {', '.join(summary.tests)}")
    return 0


def cmd_abtest_list(args: argparse.Namespace) -> int:
    from align.abtest import list_tests  # lazy: pulls in torch and transformers via align.generate

    with session_scope(engine()) as session:
        tests = list_tests(session)
    for t in tests:
        print(f"{t['test']:24} {t['region']:20} {t['generic']} vs {t['tuned']}: {t['briefs']} briefs, "
              f"{t['variants_with_results']} variants with results")
    if not tests:
        print("no A/B tests yet: geoalign abtest export --help")
    return 0


def cmd_abtest_show(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        results = ab_results(session)
    if args.name:
        results = results[results["test"] == args.name]
    table = lift_table(results)
    if table.empty:
        print("no results to compare yet: import them with geoalign abtest import-results (both arms need "
              "impressions)")
        return 0
    shown = pd.DataFrame({
        "test": table["test"], "metric": table["metric"], "briefs": table["briefs"],
        "generic": [f"{e:,}/{n:,} = {r:.2%}" for e, n, r in zip(table["generic_events"], table["generic_n"],
                                                               table["generic_rate"], strict=True)],
        "tuned": [f"{e:,}/{n:,} = {r:.2%}" for e, n, r in zip(table["tuned_events"], table["tuned_n"],
                                                             table["tuned_rate"], strict=True)],
        "lift (95% CI)": [note or f"{lift:+.1%} ({low:+.1%} to {high:+.1%})" for lift, low, high, note in zip(
            table["lift"], table["low"], table["high"], table["note"], strict=True)],
        "p": [f"{p:.3g}" for p in table["p_value"]]})
    print(shown.to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"written to {args.out}")
    return 0


def cmd_keys_add(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        token = create_key(session, args.name, args.region or [], args.all_regions)
    print(f"API key {args.name!r} (shown once; store it now):\n{token}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        keys = list_keys(session)
    for k in keys:
        print(f"{k['name']:24} {k['prefix']}…  regions: {k['regions']}{'  (revoked)' if k['revoked'] else ''}")
    if not keys:
        print("no API keys yet: geoalign keys add NAME --region CODE")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        revoke_key(session, args.name)
    print(f"revoked {args.name!r}")
    return 0


def cmd_deploy_set(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        deploy(session, args.region, args.version)
    print(f"{args.region} now serves {args.version} (running servers switch at their next request)")
    return 0


def cmd_deploy_promote(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        verdict = promote(session, cli_actor(session), args.version, args.region)
    print(f"{args.region} now serves {args.version}: {verdict.text}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from align.serve import create_app  # lazy: pulls in torch and transformers via align.generate

    uvicorn.run(create_app(engine(), max_batch=args.max_batch, timeout_s=args.timeout), host=args.host,
                port=args.port, log_level="info")
    return 0


def register(sub) -> None:
    """``geoalign generate``, ``keys``, ``deploy``, ``serve`` and ``abtest``."""
    p = add(sub, "generate", cmd_generate, "batch generation with a model version for one region",
            "Generate one output per row of a CSV (columns brief or prompt, task_type, optional id) with the "
            "version's policy, in the region's voice. The region's references to avoid are banned and its local "
            "terms boosted inside decoding (bad_words_ids, sequence_bias); --ban and --boost add more. Writes "
            "JSONL atomically, with a progress bar.")
    p.add_argument("--region", required=True, help="region code, e.g. en-GB-manchester")
    p.add_argument("--version", required=True, help="model version name (see `geoalign model list`)")
    p.add_argument("--input", required=True, help="CSV of briefs")
    p.add_argument("--output", required=True, help="JSONL to write")
    add_decoding_arguments(p)
    keys = group(sub, "keys", "API keys of the generation API, each scoped to regions")
    p = add(keys, "add", cmd_keys_add, "create a key for some regions (the secret is printed once)")
    p.add_argument("name")
    p.add_argument("--region", action="append", help="region code the key may use (repeatable)")
    p.add_argument("--all-regions", action="store_true", help="the key may use every region")
    add(keys, "list", cmd_keys_list, "keys with their regions (never the secrets)")
    p = add(keys, "revoke", cmd_keys_revoke, "revoke a key at once")
    p.add_argument("name")
    dep = group(sub, "deploy", "which version the generation API serves per region")
    p = add(dep, "set", cmd_deploy_set, "serve a version for a region (running servers switch without a restart)")
    p.add_argument("--region", required=True)
    p.add_argument("--version", required=True)
    p = add(dep, "promote", cmd_deploy_promote, "serve a version that has been decided to beat its parent",
            "deploy set, gated by the stopping rule: refused, with the reason, unless the version's win-rate over "
            "its parent in the region has a 95% lower bound above 50% (prediction-powered where the round's "
            "evaluation pairs allow). The audit event records the verdict. The Rounds page's Promote button "
            "runs the same code.")
    p.add_argument("--region", required=True)
    p.add_argument("--version", required=True)
    p = add(sub, "serve", cmd_serve, "run the generation API (FastAPI; docs at /docs)",
            "An HTTP API for marketing tools: POST /v1/generate with a region, briefs and decoding parameters; "
            "region-scoped keys (geoalign keys add), the version deployed per region (geoalign deploy set), "
            "constrained decoding, request size and time limits. OpenAPI docs at /docs.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=32, help="most briefs per request")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a request may generate for")

    ab = group(sub, "abtest", "A/B tests of tuned vs generic copy in campaign tools, and their results")
    p = add(ab, "export", cmd_abtest_export, "a CSV with a generic and a tuned variant per brief, with ids",
            "For every brief of a CSV (columns id, brief or prompt, task_type), generate the generic variant with "
            "the base model (the root of --version's lineage, or --generic) and the tuned variant with --version, "
            "with the same decoding parameters, seed and constraints. Writes one row per brief with "
            "generic_variant_id/generic_text and tuned_variant_id/tuned_text, for a campaign tool to split "
            "traffic; the variants are stored, and exporting the same --name again rewrites the file.")
    p.add_argument("--name", required=True, help="test name, part of every variant id, e.g. spring-mcr")
    p.add_argument("--region", required=True, help="region code, e.g. en-GB-manchester")
    p.add_argument("--version", required=True, help="the tuned model version")
    p.add_argument("--generic", help="the generic version (default: the base the tuned version was trained from)")
    p.add_argument("--input", required=True, help="CSV of briefs")
    p.add_argument("--output", required=True, help="CSV to write")
    add_decoding_arguments(p)
    p = add(ab, "import-results", cmd_abtest_import, "per-variant impressions, clicks and conversions",
            "Read the campaign tool's totals to date (CSV, JSONL, JSON or Parquet with variant_id, impressions, "
            "clicks, conversions). Every row is checked first (unknown ids, repeats, negative or non-integer "
            "counts, more clicks or conversions than impressions) and nothing is written unless all are valid; "
            "importing newer totals replaces the older ones, the same file twice changes nothing.")
    p.add_argument("path", help="results file")
    p.add_argument("--test", help="only accept variants of this test")
    add(ab, "list", cmd_abtest_list, "A/B tests with their versions and how many variants have results")
    p = add(ab, "show", cmd_abtest_show, "the lift of tuned over generic per rate, with its 95%% CI",
            "Click-through, conversion and (where valid) conversions-per-click rates of both arms; lift = tuned / "
            "generic − 1 with a 95% interval (rate ratio, log method) and Fisher's exact p-value.")
    p.add_argument("name", nargs="?", help="one test (default: all)")
    p.add_argument("--out", help="also write the table as CSV")
