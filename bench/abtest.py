"""How fast A/B results come back in, and how long an export takes on the default policy (SmolLM2-135M-Instruct).

    python bench/abtest.py                            # 50,000 briefs (100,000 variants), SQLite and PostgreSQL
    python bench/abtest.py --briefs 200000 --backend postgres
    python bench/abtest.py --export 32                # also export a 32-brief test (both arms) on the default policy

On a scratch database (SQLite in a temporary folder; PostgreSQL in a throwaway database next to the one
``DATABASE_URL`` or the default test server names), stores one A/B test with ``--briefs`` briefs, writes the
campaign tool's results file (one row per variant) and times: the first import (every variant set), the same
file again (nothing changes), a file whose last row is bad (rejected whole: nothing written), and the lift table
the Dashboard draws. With ``--export N`` it also times ``geoalign abtest export`` of N demo briefs: the base
model against a LoRA adapter on it, both arms generated (needs the converted model: ``geoalign model build-demo``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from align.abtest import import_results, variant_key  # noqa: E402
from cli.demo import DEMO_DATA  # noqa: E402
from collect.ingest import import_regions  # noqa: E402
from db import migrate  # noqa: E402
from db.errors import ValidationError  # noqa: E402
from db.models import AbTest, AbVariant, ModelVersion, Region  # noqa: E402
from db.queries import ab_results  # noqa: E402
from db.session import make_engine, session_scope  # noqa: E402
from db.settings import get_settings  # noqa: E402
from rewards.lift import lift_table  # noqa: E402

REGION = "en-GB-manchester"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"  # only used to CREATE/DROP the bench database


def fill(engine, briefs: int) -> None:
    with session_scope(engine) as s:
        import_regions(s, DEMO_DATA / REGION / "region.json")
        base = ModelVersion(name="base", base_model="demo")
        s.add(base)
        s.flush()
        tuned = ModelVersion(name="v1", base_model="demo", adapter_path="v1", parent_id=base.id)
        s.add(tuned)
        s.flush()
        test = AbTest(name="bench", region_id=s.scalar(select(Region.id).where(Region.code == REGION)),
                      generic_version_id=base.id, tuned_version_id=tuned.id)
        s.add(test)
        s.flush()
        s.execute(insert(AbVariant), [
            {"test_id": test.id, "variant_key": variant_key("bench", f"b{i}", arm), "row_key": f"b{i}", "arm": arm,
             "task_type": "ad_copy", "brief": f"brief {i}", "text": f"{arm} copy {i}"}
            for i in range(briefs) for arm in ("generic", "tuned")])


def results(path: Path, briefs: int, seed: int = 0, bad_last: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variant_id", "impressions", "clicks", "conversions"])
        for i in range(briefs):
            for arm, ctr in (("generic", 0.030), ("tuned", 0.033)):
                n = int(rng.integers(200, 2000))
                clicks = int(rng.binomial(n, ctr))
                w.writerow([variant_key("bench", f"b{i}", arm), n, clicks, int(rng.binomial(clicks, 0.12))])
        if bad_last:
            w.writerow([variant_key("bench", "b0", "tuned") + "-typo", 10, 20, 0])
    return path


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def run(url: str, briefs: int, tmp: Path) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine)
    _, fill_s = timed(fill, engine, briefs)
    print(f"  stored {briefs:,} briefs ({2 * briefs:,} variants) in {fill_s:.1f} s")
    path = results(tmp / "results.csv", briefs)
    bad = results(tmp / "bad.csv", briefs, seed=1, bad_last=True)

    def load(p):
        with session_scope(engine) as s:
            return import_results(s, p)

    summary, first = timed(load, path)
    print(f"  first import: {summary.rows:,} rows in {first:.2f} s ({summary.rows / first:,.0f} rows/s), "
          f"{summary.changed:,} changed")
    summary, again = timed(load, path)
    print(f"  same file again: {again:.2f} s ({summary.rows / again:,.0f} rows/s), {summary.changed} changed")
    t0 = time.perf_counter()
    try:
        load(bad)
        raise SystemExit("the bad file was accepted")
    except ValidationError as exc:
        rejected = time.perf_counter() - t0
        print(f"  file with one bad last row: rejected in {rejected:.2f} s ({len(exc.problems)} problem), "
              "nothing written")
    with session_scope(engine) as s:
        frame, read_s = timed(ab_results, s)
    table, lift_s = timed(lift_table, frame)
    ctr = table[table["metric"] == "click-through"].iloc[0]
    print(f"  lift table: read {read_s:.2f} s + statistics {lift_s:.3f} s; click-through lift "
          f"{ctr['lift']:+.1%} (95% CI {ctr['low']:+.1%} to {ctr['high']:+.1%}; simulated truth +10.0%)")
    engine.dispose()


def export_bench(n: int, tmp: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from align.abtest import export_test
    from align.generate import Constraints
    from align.sampling import DecodingParams

    model = get_settings().default_model_dir
    if not (model / "config.json").exists():
        print(f"  no base model at {model}: run `geoalign model build-demo` first; export not timed")
        return
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(model),
                          LoraConfig(r=8, target_modules="all-linear", init_lora_weights=False))
    lora.save_pretrained(tmp / "v1")
    engine = make_engine(f"sqlite:///{tmp}/export.db")
    migrate.upgrade(engine)
    with session_scope(engine) as s:
        import_regions(s, DEMO_DATA / REGION / "region.json")
        s.flush()
        base = ModelVersion(name="base", base_model=str(model))
        s.add(base)
        s.flush()
        s.add(ModelVersion(name="v1", base_model=str(model), adapter_path=str(tmp / "v1"), parent_id=base.id))
        region = s.scalar(select(Region).where(Region.code == REGION))
        constraints = Constraints.for_region(region.avoid_terms or [], region.local_terms or [])
    briefs = [json.loads(line) for line in (DEMO_DATA / REGION / "examples.jsonl").read_text().splitlines()][:n]
    src = tmp / "briefs.csv"
    with src.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "brief", "task_type"])
        w.writerows([f"b{i}", b["prompt"], b["task_type"]] for i, b in enumerate(briefs))
    summary, seconds = timed(export_test, engine, "bench", REGION, "v1", src, tmp / "ab.csv",
                             DecodingParams(max_new_tokens=48), constraints, batch_size=32, progress=False)
    print(f"  export of {summary.rows} briefs × 2 arms (48 new tokens, region constraints): {seconds:.1f} s "
          f"({2 * summary.rows / seconds:.1f} variants/s), {summary.resampled} re-sampled")
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--briefs", type=int, default=50_000, help="briefs in the test (two variants each)")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--export", type=int, default=0, help="also time an export of this many demo briefs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.backend in ("sqlite", "both"):
            print(f"SQLite, {args.briefs:,} briefs")
            run(f"sqlite:///{tmp}/abtest.db", args.briefs, tmp)
        if args.backend in ("postgres", "both"):
            admin_url = os.environ.get("DATABASE_URL", "")
            admin = create_engine(admin_url if admin_url.startswith("postgresql") else PG_ADMIN_URL,
                                  isolation_level="AUTOCOMMIT")
            name = f"geoalign_abtest_tmp{os.getpid()}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                print(f"PostgreSQL, {args.briefs:,} briefs")
                run(admin.url.set(database=name).render_as_string(hide_password=False), args.briefs, tmp)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if args.export:
            print(f"export on {get_settings().default_model_dir.name}, {args.export} briefs")
            export_bench(args.export, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
