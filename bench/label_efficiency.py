"""Votes the active pair scheduler needs, against uniform random pairing, before leads can trust the newest win-rates.

    python bench/label_efficiency.py                # all scenarios, 20 runs each
    python bench/label_efficiency.py --runs 5 --versions 4 --gap 0.1

Simulated reviewers judge a lineage base → v1 → … → newest whose true Bradley–Terry strengths rise by ``gap``
(natural-log units) per round, with ties at ``--tie-rate``. Leads watch two win-rates: newest vs base and newest vs
parent. A run ends when both 95% intervals (``rewards.winrate.win_rate_counts``, the interval the dashboard shows)
are ±5 points or narrower. The scheduler draws comparisons with ``collect.scheduler.choose_target``, the very
function that serves reviewers; uniform random pairing draws any two versions with equal probability, as an
arena without active sampling would. Prints the median votes of each policy per scenario and their ratio; exits
with status 1 when a scenario with four or more versions misses the target ratio (≤ 0.5).
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collect.scheduler import Target, choose_target  # noqa: E402
from rewards.winrate import win_rate_counts  # noqa: E402

GOAL = 0.05
TARGET_RATIO = 0.5
MAX_VOTES = 200_000


def outcome(rng: random.Random, theta_new: float, theta_old: float, tie_rate: float) -> str:
    """One simulated reviewer's verdict on new vs old: "win", "tie" or "loss"."""
    if rng.random() < tie_rate:
        return "tie"
    p = 1 / (1 + math.exp(theta_old - theta_new))
    return "win" if rng.random() < p else "loss"


def record(target: Target, result: str) -> None:
    if result == "win":
        target.wins += 1
    elif result == "loss":
        target.losses += 1
    else:
        target.ties += 1


def precise(targets: list[Target]) -> bool:
    for t in targets:
        if t.n == 0:
            return False
        wr = win_rate_counts(t.wins, t.ties, t.losses)
        if (wr.high - wr.low) / 2 > GOAL:
            return False
    return True


def lineage_targets(versions: int) -> list[Target]:
    newest = versions - 1
    targets = [Target(0, newest, newest - 1, "parent")]
    if newest - 1 != 0:
        targets.append(Target(0, newest, 0, "base"))
    return targets


def run(policy: str, versions: int, gap: float, tie_rate: float, seed: int) -> int:
    """Votes until every target interval is within ±5 points."""
    rng = random.Random(seed)
    theta = [gap * i for i in range(versions)]
    targets = lineage_targets(versions)
    by_pair = {frozenset((t.new_id, t.old_id)): t for t in targets}
    all_pairs = list(itertools.combinations(range(versions), 2))
    votes = 0
    while not precise(targets) and votes < MAX_VOTES:
        votes += 1
        if policy == "scheduler":
            target = choose_target(targets, rng, GOAL)
            record(target, outcome(rng, theta[target.new_id], theta[target.old_id], tie_rate))
            continue
        i, j = rng.choice(all_pairs)
        result = outcome(rng, theta[j], theta[i], tie_rate)  # j > i: j is the newer version
        target = by_pair.get(frozenset((i, j)))
        if target is not None and target.new_id == j:
            record(target, result)
    return votes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="simulations per scenario and policy (default 20)")
    parser.add_argument("--versions", type=int, nargs="*", default=[3, 4, 6],
                        help="lineage lengths including the base (default 3 4 6)")
    parser.add_argument("--gap", type=float, nargs="*", default=[0.1, 0.4, 1.0],
                        help="true strength step per round in log-odds; 0.1 close, 1.0 far (default 0.1 0.4 1.0)")
    parser.add_argument("--tie-rate", type=float, default=0.15, help="share of votes that are ties (default 0.15)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.monotonic()
    print(f"votes until newest-vs-base and newest-vs-parent 95% CIs are within ±{GOAL * 100:.0f} points "
          f"(median of {args.runs} runs, ties {args.tie_rate:.0%})")
    print(f"{'versions':>8} {'gap':>5} {'P(new>parent)':>13} {'scheduler':>10} {'uniform':>10} {'ratio':>6}")
    failed = False
    for versions, gap in itertools.product(args.versions, args.gap):
        medians = {}
        for policy in ("scheduler", "uniform"):
            medians[policy] = statistics.median(run(policy, versions, gap, args.tie_rate, args.seed + r)
                                                for r in range(args.runs))
        ratio = medians["scheduler"] / medians["uniform"]
        p_parent = 1 / (1 + math.exp(-gap))
        ok = ratio <= TARGET_RATIO
        failed |= versions >= 4 and not ok
        print(f"{versions:>8} {gap:>5.2f} {p_parent:>13.3f} {medians['scheduler']:>10.0f} "
              f"{medians['uniform']:>10.0f} {ratio:>6.2f}{'' if ok else '  (above 0.5)'}")
    print(f"target: scheduler <= {TARGET_RATIO} x uniform; {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
