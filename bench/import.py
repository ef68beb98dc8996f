"""Time the import of a large preference JSONL (default 100k rows) into a fresh database.

    python bench/import.py                         # SQLite in a temporary GEOALIGN_HOME
    python bench/import.py --rows 20000 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

Prints rows/s for validation + PII scrubbing + writing, and the time of a second (all-duplicate) import.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.demo import DEMO_DATA, demo_region_dirs  # noqa: E402
from collect.ingest import import_file, import_regions  # noqa: E402
from collect.tags import ensure_default_tags  # noqa: E402
from db import migrate  # noqa: E402
from db.session import make_engine, session_scope  # noqa: E402

TASKS = ["ad_copy", "meta_description", "social_post", "email_subject"]


def make_file(path: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` explicit-layout preference rows built from the demo corpus, each with a unique prompt."""
    rng = random.Random(seed)
    corpus = []
    for folder in demo_region_dirs(DEMO_DATA):
        corpus += [json.loads(line) for line in (folder / "examples.jsonl").read_text("utf-8").splitlines()]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            a, b = rng.sample(corpus, 2)
            fh.write(json.dumps({"region": a["region"], "task_type": rng.choice(TASKS),
                                 "prompt": f"{a['prompt']} (variant {i})", "chosen": a["completion"],
                                 "rejected": b["completion"], "strength": rng.choice(["slight", "clear"])},
                                ensure_ascii=False) + "\n")
    return sorted({c["region"] for c in corpus})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        engine = make_engine(url)
        if args.database_url:  # a dedicated bench database: start from an empty schema
            migrate.downgrade(engine, "base")
        migrate.upgrade(engine)
        with session_scope(engine) as s:
            ensure_default_tags(s)
            for folder in demo_region_dirs(DEMO_DATA):
                import_regions(s, folder / "region.json")
        path = Path(tmp) / "prefs.jsonl"
        t0 = time.perf_counter()
        make_file(path, args.rows)
        size = path.stat().st_size / 2**20
        print(f"generated {args.rows:,} rows ({size:.1f} MiB) in {time.perf_counter() - t0:.1f} s")
        for label in ("first import", "re-import (all duplicates)"):
            t0 = time.perf_counter()
            with session_scope(engine) as s:
                report = import_file(s, path, "preferences")
            dt = time.perf_counter() - t0
            print(f"{label:28} {dt:7.1f} s  {args.rows / dt:10,.0f} rows/s  "
                  f"created {report.pairs_created:,}, duplicates {report.duplicates_skipped:,}")
        print(f"database: {engine.url.render_as_string(hide_password=True)}")
        engine.dispose()


if __name__ == "__main__":
    main()
