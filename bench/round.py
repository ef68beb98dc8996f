"""Time a whole alignment round on the demo model: each stage's wall time and tokens/s, and the whole round.

    python bench/round.py                          # fresh GEOALIGN_HOME in a temp dir: demo setup, then one round
    python bench/round.py --home .geoalign          # reuse a home where `geoalign demo --no-app` already ran
    python bench/round.py --all --samples 3         # all six regions; print three test prompts per region

Setup (not timed): the demo (model build, import, first pairs) and one simulated vote per pair
(collect/simulate.py; rule-based judge), so the reward and DPO stages have data. Timed: the round as a worker runs
it, from claiming the job to the committed version and new pairs. Target on 2 CPU cores: ≤ 60 s per round.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="GEOALIGN_HOME to use (default: a new temporary one)")
    parser.add_argument("--region", default="en-GB-manchester", help="region of the round")
    parser.add_argument("--all", action="store_true", help="one round over all regions instead")
    parser.add_argument("--config", help="round config YAML (default: built-in defaults)")
    parser.add_argument("--samples", type=int, default=0, help="test prompts per region to print side by side")
    args = parser.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="geoalign-bench-")).resolve()
    os.environ["GEOALIGN_HOME"] = str(home)
    os.environ.setdefault("GEOALIGN_REVIEWER_PASSWORD", "bench-password-1")
    os.environ.setdefault("GEOALIGN_ADMIN_PASSWORD", "bench-password-1")

    from align.config import load_config
    from align.demo import run_demo
    from align.jobs import claim_job, run_job
    from align.rounds import queue_round, round_dir
    from collect.simulate import simulate_all_regions
    from db.models import Job
    from db.session import get_engine, session_scope
    from db.settings import Settings

    settings = Settings.from_env()
    t0 = time.monotonic()
    run_demo(settings, progress=False, say=lambda _: None)
    engine = get_engine(settings.database_url)
    with session_scope(engine) as session:
        votes = simulate_all_regions(session)
    print(f"setup (demo + {sum(votes.values())} simulated votes): {time.monotonic() - t0:.1f} s  [home {home}]")

    with session_scope(engine) as session:
        rnd, job = queue_round(session, None if args.all else args.region,
                               load_config(Path(args.config) if args.config else None))
        round_id, job_id = rnd.id, job.id
    claim_job(engine, job_id, "bench")
    t0 = time.monotonic()
    status = run_job(engine, job_id)
    total = time.monotonic() - t0
    with session_scope(engine) as session:
        job = session.get(Job, job_id)
        result, error = (job.progress or {}).get("result") or {}, job.error
    if status.value != "succeeded":
        print(f"round {status.value}: {error}")
        return 1

    scope = "all regions" if args.all else args.region
    print(f"\nround {round_id} ({scope}) → {result['version']}")
    print(f"{'stage':8} {'wall s':>7} {'train s':>8} {'steps':>6} {'tokens':>8} {'tokens/s':>9}  notes")
    for stage, m in result["stages"].items():
        notes = m.get("skipped") or ", ".join(f"{k}={m[k]}" for k in ("train_loss", "val_accuracy", "last_reward")
                                              if m.get(k) is not None)
        print(f"{stage:8} {m.get('wall_s', 0):7.1f} {m.get('train_runtime_s', 0):8.1f} {m.get('steps', 0):6} "
              f"{m.get('tokens', 0):8} {m.get('tokens_per_s', 0):9.0f}  {notes}")
    ev = result["eval"]
    print(f"{'eval':8} {ev['wall_s']:7.1f}  {ev['prompts']} test prompts, scorer {ev['scorer']}")
    print(f"{'publish':8} {result['publish_s']:7.1f}")
    print(f"{'round':8} {total:7.1f}  (target ≤ 60 s on 2 CPU cores)")
    for key in ("vs_parent", "vs_base", "rules_vs_base"):
        if key in ev:
            wr = ev[key]
            print(f"win-rate {key:14} {wr['rate']:.2f} [{wr['low']:.2f}, {wr['high']:.2f}] n={wr['n']}")

    if args.samples:
        rows = [json.loads(line) for line in (round_dir(settings, round_id) / "eval" / "samples.jsonl")
                .read_text(encoding="utf-8").splitlines()]
        shown: dict[str, int] = {}
        for row in rows:
            if row["split"] != "test" or shown.get(row["region"], 0) >= args.samples:
                continue
            shown[row["region"]] = shown.get(row["region"], 0) + 1
            print(f"\n[{row['region']}] {row['task_type']}: {row['brief']}")
            for label in ("base", "sft", "new"):
                if label in row["outputs"]:
                    print(f"  {label:5} {row['outputs'][label]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
