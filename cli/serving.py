"""``geoalign generate`` and ``geoalign model export``: putting a model version to work outside the review loop.

    geoalign generate --region en-GB-manchester --version all-r1 --input prompts.csv --output out.jsonl
    geoalign model export --version all-r1 --out exported/all-r1
    geoalign keys add cms-manchester --region en-GB-manchester
    geoalign deploy set --region en-GB-manchester --version all-r1
    geoalign serve --port 8000
    geoalign abtest export --name spring-mcr --region en-GB-manchester --version all-r1 --input briefs.csv \
        --output spring-mcr.csv
    geoalign abtest import-results campaign-results.csv
    geoalign abtest show spring-mcr
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from db.errors import NotFound


def _version_and_region(name: str, region_code: str | None = None) -> tuple[dict, dict | None]:
    from sqlalchemy import select

    from cli.main import _engine
    from db.models import ModelVersion, Region
    from db.session import session_scope

    with session_scope(_engine()) as session:
        version = session.scalar(select(ModelVersion).where(ModelVersion.name == name))
        if version is None:
            known = ", ".join(session.scalars(select(ModelVersion.name).order_by(ModelVersion.id))) or "none"
            raise NotFound(f"model version {name!r} does not exist (known: {known})")
        region = None
        if region_code is not None:
            r = session.scalar(select(Region).where(Region.code == region_code))
            if r is None:
                raise NotFound(f"region {region_code!r} does not exist")
            region = {"code": r.code, "name": r.name, "locale": r.locale, "avoid_terms": list(r.avoid_terms or []),
                      "local_terms": list(r.local_terms or []), "climate_by_month": dict(r.climate_by_month or {})}
        return {"name": version.name, "base_model": version.base_model, "adapter": version.adapter_path}, region


def _decoding(args: argparse.Namespace, region: dict):
    """Decoding parameters and constraints from the shared options of ``generate`` and ``abtest export``."""
    from align.generate import Constraints
    from align.sampling import DecodingParams

    constraints = Constraints.for_region(region["avoid_terms"], region["local_terms"], args.ban or (),
                                         args.boost or (), use_region=not args.no_region_terms,
                                         require=args.require or ())
    params = DecodingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    return params, constraints


def cmd_generate(args: argparse.Namespace) -> int:
    from align.generate import generate_file

    version, region = _version_and_region(args.version, args.region)
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
    from align.abtest import export_test
    from cli.main import _engine

    _, region = _version_and_region(args.version, args.region)
    params, constraints = _decoding(args, region)
    summary = export_test(_engine(), args.name, args.region, args.version, Path(args.input), Path(args.output),
                          params, constraints, generic_name=args.generic, seed=args.seed, batch_size=args.batch_size)
    how = "generated" if summary.generated else "already existed; rewritten from the stored variants"
    print(f"A/B test {summary.test!r}: {summary.rows} briefs × 2 variants written to {args.output} ({how}). "
          f"Report results per variant_id with `geoalign abtest import-results`.")
    return 0


def cmd_abtest_import(args: argparse.Namespace) -> int:
    from align.abtest import import_results
    from cli.main import _engine
    from db.session import session_scope

    with session_scope(_engine()) as session:
        summary = import_results(session, Path(args.path), test_name=args.test)
    print(f"{summary.rows} variants read, {summary.changed} updated ({summary.rows - summary.changed} unchanged) "
          f"in {', '.join(summary.tests)}")
    return 0


def cmd_abtest_list(args: argparse.Namespace) -> int:
    from align.abtest import list_tests
    from cli.main import _engine
    from db.session import session_scope

    with session_scope(_engine()) as session:
        tests = list_tests(session)
    for t in tests:
        print(f"{t['test']:24} {t['region']:20} {t['generic']} vs {t['tuned']}: {t['briefs']} briefs, "
              f"{t['variants_with_results']} variants with results")
    if not tests:
        print("no A/B tests yet: geoalign abtest export --help")
    return 0


def cmd_abtest_show(args: argparse.Namespace) -> int:
    import pandas as pd

    from cli.main import _engine
    from db.queries import ab_results
    from db.session import session_scope
    from rewards.lift import lift_table

    with session_scope(_engine()) as session:
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


def _decoding_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ban", action="append", help="a term that must not appear (repeatable)")
    p.add_argument("--boost", action="append", help="a term to favour, e.g. a local place name (repeatable)")
    p.add_argument("--require", action="append", help="a term every output must contain, e.g. a brand name "
                   "(repeatable)")
    p.add_argument("--no-region-terms", action="store_true", help="ignore the region's own avoid/local terms")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--temperature", type=float, default=0.9)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)


def cmd_model_export(args: argparse.Namespace) -> int:
    from align.generate import export_merged

    version, _ = _version_and_region(args.version)
    out = export_merged(version["base_model"], version["adapter"], Path(args.out))
    print(f"exported {version['name']} ({'LoRA merged' if version['adapter'] else 'base weights'}) to {out}")
    return 0


def cmd_keys_add(args: argparse.Namespace) -> int:
    from cli.main import _engine
    from db.apikeys import create_key
    from db.session import session_scope

    with session_scope(_engine()) as session:
        token = create_key(session, args.name, args.region or [], args.all_regions)
    print(f"API key {args.name!r} (shown once; store it now):\n{token}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from cli.main import _engine
    from db.apikeys import list_keys
    from db.session import session_scope

    with session_scope(_engine()) as session:
        keys = list_keys(session)
    for k in keys:
        print(f"{k['name']:24} {k['prefix']}…  regions: {k['regions']}{'  (revoked)' if k['revoked'] else ''}")
    if not keys:
        print("no API keys yet: geoalign keys add NAME --region CODE")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from cli.main import _engine
    from db.apikeys import revoke_key
    from db.session import session_scope

    with session_scope(_engine()) as session:
        revoke_key(session, args.name)
    print(f"revoked {args.name!r}")
    return 0


def cmd_deploy_set(args: argparse.Namespace) -> int:
    from align.deploy import deploy
    from cli.main import _engine
    from db.session import session_scope

    with session_scope(_engine()) as session:
        deploy(session, args.region, args.version)
    print(f"{args.region} now serves {args.version} (running servers switch at their next request)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from align.serve import create_app
    from cli.main import _engine

    uvicorn.run(create_app(_engine(), max_batch=args.max_batch, timeout_s=args.timeout), host=args.host,
                port=args.port, log_level="info")
    return 0


def add_deploy_commands(sub, add: Callable, model_group) -> None:
    """Register ``generate`` on the top-level subparsers and ``export`` under ``model``."""
    p = add(sub, "generate", cmd_generate, "batch generation with a model version for one region",
            "Generate one output per row of a CSV (columns brief or prompt, task_type, optional id) with the "
            "version's policy, in the region's voice. The region's references to avoid are banned and its local "
            "terms boosted inside decoding (bad_words_ids, sequence_bias); --ban and --boost add more. Writes "
            "JSONL atomically, with a progress bar.")
    p.add_argument("--region", required=True, help="region code, e.g. en-GB-manchester")
    p.add_argument("--version", required=True, help="model version name (see `geoalign model list`)")
    p.add_argument("--input", required=True, help="CSV of briefs")
    p.add_argument("--output", required=True, help="JSONL to write")
    _decoding_arguments(p)
    p = add(model_group, "export", cmd_model_export, "merged Hugging Face weights of a version, for vLLM or TGI",
            "Load the base model with the version's LoRA adapter, merge it (merge_and_unload) and save model and "
            "tokenizer as a plain Hugging Face directory; written to a temporary folder and renamed into place.")
    p.add_argument("--version", required=True, help="model version name")
    p.add_argument("--out", required=True, help="directory to create")

    def group(name: str, help: str):
        g = sub.add_parser(name, help=help, description=help, formatter_class=p.formatter_class)
        return g.add_subparsers(dest=f"{name}_command", required=True, metavar="SUBCOMMAND")

    keys = group("keys", "API keys of the generation API, each scoped to regions")
    p = add(keys, "add", cmd_keys_add, "create a key for some regions (the secret is printed once)")
    p.add_argument("name")
    p.add_argument("--region", action="append", help="region code the key may use (repeatable)")
    p.add_argument("--all-regions", action="store_true", help="the key may use every region")
    add(keys, "list", cmd_keys_list, "keys with their regions (never the secrets)")
    p = add(keys, "revoke", cmd_keys_revoke, "revoke a key at once")
    p.add_argument("name")
    dep = group("deploy", "which version the generation API serves per region")
    p = add(dep, "set", cmd_deploy_set, "serve a version for a region (running servers switch without a restart)")
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

    ab = group("abtest", "A/B tests of tuned vs generic copy in campaign tools, and their results")
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
    _decoding_arguments(p)
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
