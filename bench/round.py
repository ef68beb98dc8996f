"""Time a whole alignment round on the default policy (SmolLM2-135M-Instruct): each stage's wall time and tokens/s,
the ratio of each stage's tokens/s to a plain TRL script of the same stage on the same data, and the whole round.

    python bench/round.py                          # fresh GEOALIGN_HOME in a temp dir: demo setup, then one round
    python bench/round.py --home .geoalign          # reuse a home where `geoalign demo --no-app` already ran
    python bench/round.py --all --samples 2         # all six regions; print two test briefs per region
    python bench/round.py --no-compare              # skip the plain-TRL runs (halves the time)

Setup: `geoalign demo` (conversion of the model, import, accounts, first pairs; timed on its own) and one
simulated vote per pair (collect/simulate.py; rule-based judge), so the reward and DPO stages have data. Timed: the
round as a worker runs it, from claiming the job to the committed version and new pairs. Then each trained stage
again as a plain TRL script (bench/plain_trl.py: the same data and work, TRL's defaults otherwise). Targets on 2
CPU cores: one region ≤ 6 min, --all ≤ 20 min, the demo ≤ 4 min, every stage's ratio ≥ 1.0.
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
    parser.add_argument("--no-compare", action="store_true", help="skip the plain TRL script of each stage")
    args = parser.parse_args()
    settings, demo_s = demo_home(args.home, "geoalign-bench-")
    home = settings.home

    from align.config import load_config
    from align.jobs import claim_job, run_job
    from align.rounds import queue_round, round_dir
    from cli.common import cli_actor
    from collect.simulate import simulate_all_regions
    from db.models import Job
    from db.session import get_engine, session_scope

    engine = get_engine(settings.database_url)
    with session_scope(engine) as session:
        votes = simulate_all_regions(session)
    print(f"geoalign demo (after setup): {demo_s:.1f} s (target ≤ 240 s); then {sum(votes.values())} simulated "
          f"votes  [home {home}, base {settings.base_model}]")

    with session_scope(engine) as session:
        rnd, job = queue_round(session, cli_actor(session), None if args.all else args.region,
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
    plain = {} if args.no_compare else compare_with_plain_trl(settings, round_id, result["stages"])
    print(f"\nround {round_id} ({scope}) → {result['version']}")
    print(f"{'stage':8} {'wall s':>7} {'train s':>8} {'steps':>6} {'tokens':>8} {'tokens/s':>9} {'plain':>7} "
          f"{'ratio':>6} {'plain wall':>10} {'wall ratio':>10}  notes")
    for stage, m in result["stages"].items():
        notes = m.get("skipped") or ", ".join(f"{k}={m[k]}" for k in ("train_loss", "val_accuracy", "last_reward")
                                              if m.get(k) is not None)
        p = plain.get(stage)
        # The same rows and steps: the ratio of tokens/s is the ratio of training times. Training time leaves out
        # what a trainer does before train() (DPO's precomputed reference pass), so the wall ratio (loading,
        # preparing, training and, for ours, saving and scoring) is printed beside it.
        same = p is not None and p["steps"] == m.get("steps") and p["train_runtime_s"] > 0
        plain_tps = f"{m['tokens'] / p['train_runtime_s']:7.0f}" if same else f"{'-':>7}"
        ratio = f"{p['train_runtime_s'] / m['train_runtime_s']:6.2f}" if same else f"{'-':>6}"
        wall = f"{p['wall_s']:10.1f} {p['wall_s'] / m['wall_s']:10.2f}" if same else f"{'-':>10} {'-':>10}"
        if p is not None and not same:
            notes += f" (plain run took {p['steps']} steps, not comparable)"
        print(f"{stage:8} {m.get('wall_s', 0):7.1f} {m.get('train_runtime_s', 0):8.1f} {m.get('steps', 0):6} "
              f"{m.get('tokens', 0):8} {m.get('tokens_per_s', 0):9.0f} {plain_tps} {ratio} {wall}  {notes}")
    ev = result["eval"]
    print(f"{'eval':8} {ev['wall_s']:7.1f}  {ev['prompts']} test prompts, scorer {ev['scorer']}")
    print(f"{'publish':8} {result['publish_s']:7.1f}")
    target = 1200 if args.all else 360
    print(f"{'round':8} {total:7.1f}  (target ≤ {target} s on 2 CPU cores)")
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


def demo_home(home: str | None, prefix: str):
    """Point GEOALIGN_HOME at ``home`` (default: a new temporary folder) and run the demo setup there.

    Returns the settings and the demo's seconds (conversion of the model, import, accounts, first pairs).
    """
    os.environ["GEOALIGN_HOME"] = str(Path(home or tempfile.mkdtemp(prefix=prefix)).resolve())
    os.environ.setdefault("GEOALIGN_REVIEWER_PASSWORD", "bench-password-1")
    os.environ.setdefault("GEOALIGN_ADMIN_PASSWORD", "bench-password-1")

    from cli.demo import run_demo
    from db.settings import Settings

    settings = Settings.from_env()
    started = time.monotonic()
    run_demo(settings, progress=False, say=lambda _: None)
    return settings, time.monotonic() - started


def compare_with_plain_trl(settings, round_id: int, stages: dict) -> dict[str, dict]:
    """Each trained stage again as a plain TRL script on the round's data (bench/plain_trl.py)."""
    from align.config import load_config
    from align.rounds import round_dir
    from bench.plain_trl import run_plain
    from db.models import Round
    from db.session import get_engine, session_scope

    with session_scope(get_engine(settings.database_url)) as session:
        rnd = session.get(Round, round_id)
        config = load_config(rnd.config)
        rules = {r.code: {"local_terms": list(r.local_terms or []), "avoid_terms": list(r.avoid_terms or [])}
                 for r in _regions(session)}
    out: dict[str, dict] = {}
    workdir = round_dir(settings, round_id)
    reward_model = workdir / "stages" / "reward" / "model"
    for stage, metrics in stages.items():
        if metrics.get("skipped"):
            continue
        stage_config = config.stage_args(stage, Path(tempfile.mkdtemp())).to_dict()
        if stage == "reward":
            stage_config["backbone"] = config.settings.reward_backbone
        t0 = time.monotonic()
        out[stage] = run_plain(workdir, stage, settings.base_model, stage_config, config.lora().to_dict(), rules,
                               str(reward_model) if reward_model.exists() else None)
        out[stage]["wall_s"] = round(time.monotonic() - t0, 2)
        print(f"plain TRL {stage}: {time.monotonic() - t0:.1f} s wall, {out[stage]['train_runtime_s']} s training, "
              f"{out[stage]['steps']} steps")
    return out


def _regions(session):
    from sqlalchemy import select

    from db.models import Region

    return session.scalars(select(Region))


if __name__ == "__main__":
    sys.exit(main())
