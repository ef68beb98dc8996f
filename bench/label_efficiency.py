"""Votes the active pair scheduler needs, against round-robin over the watched comparisons (the fair baseline) and
uniform random pairing, before leads can trust the newest win-rates; and the reviewer-seconds each review mode
(pairwise, rank-3, rank-4) needs for the same precision.

    python bench/label_efficiency.py                # all scenarios, 20 runs each, then the review modes
    python bench/label_efficiency.py --closeness-only --runs 30   # scheduler vs round-robin by closeness and ties
    python bench/label_efficiency.py --runs 5 --versions 4 --gap 0.1
    python bench/label_efficiency.py --modes-only   # just the reviewer-seconds table

Simulated reviewers judge a lineage base → v1 → … → newest whose true Bradley–Terry strengths rise by ``gap``
(natural-log units) per round, with ties at ``--tie-rate``. Leads watch two win-rates: newest vs base and newest vs
parent. A run ends when both 95% intervals (``rewards.winrate.win_rate_counts``, the interval the dashboard shows)
are ±5 points or narrower. The scheduler draws comparisons with ``collect.scheduler.choose_target``, the very
function that serves reviewers; round-robin takes the watched comparisons in turn (skipping one once it is narrow
enough), which needs no active sampling at all; uniform random pairing draws any two versions with equal
probability, as an arena without active sampling would. Prints the median votes of each policy per scenario and
their ratios; exits with status 1 when a scenario with four or more versions misses the target ratio to uniform
pairing (≤ 0.5). A second table places three versions by closeness (P(newest beats parent) from 0.52 to 0.85) and
tie rate (0–30%) and states the ratio to round-robin, the gain that matters.

Review modes: simulated reviewers judge outputs of a new and an old version under the Thurstone model of
``rewards.ranking.simulate`` (each output's perceived quality is the version's strength plus standard normal noise,
ties when two fall in the same bin of ``--tie-width``): pairwise sees one of each, rank-3 two new and one old, rank-4
two of each (what ``collect.ranking`` puts in a rank set). Each ranking's implied outcomes count 2/k, as in the
database. A run ends when the new-vs-old 95% interval is ±5 points. Seconds per judgement are an assumption, not a
measurement (no timed human rankings exist yet): reading one output takes ``--read-seconds`` (8 s: a 30–40-word
ad copy at about 250 words a minute) and placing it against the others ``--decide-seconds`` per adjacent
comparison (4 s, a little above the 3 s under which rewards.quality flags a reviewer as too fast), so a judgement
of k outputs takes ``k·read + (k−1)·decide``: 20 s pairwise, 32 s rank-3, 44 s rank-4.
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

import numpy as np  # noqa: E402

from collect.scheduler import Target, choose_target  # noqa: E402
from rewards.ranking import cross_outcomes, simulate, true_score  # noqa: E402
from rewards.winrate import score_intervals, win_rate_counts  # noqa: E402

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


def run(policy: str, versions: int, gap: float, tie_rate: float, seed: int, theta: list[float] | None = None) -> int:
    """Votes until every watched interval is within ±5 points, under ``policy``:

    * ``scheduler``: ``collect.scheduler.choose_target``, as reviewers are served;
    * ``round-robin``: the watched comparisons in turn (newest vs parent, newest vs base), skipping one once its
      interval is narrow enough: the fair baseline, no active sampling;
    * ``uniform``: any two versions with equal probability (an arena without active sampling; votes on pairs
      nobody watches are wasted).

    ``theta`` (the versions' true strengths, base first) overrides ``versions`` and ``gap``."""
    rng = random.Random(seed)
    theta = theta if theta is not None else [gap * i for i in range(versions)]
    versions = len(theta)
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
        if policy == "round-robin":
            short = [t for t in targets if not precise([t])]
            target = short[votes % len(short)]
            record(target, outcome(rng, theta[target.new_id], theta[target.old_id], tie_rate))
            continue
        i, j = rng.choice(all_pairs)
        result = outcome(rng, theta[j], theta[i], tie_rate)  # j > i: j is the newer version
        target = by_pair.get(frozenset((i, j)))
        if target is not None and target.new_id == j:
            record(target, result)
    return votes


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# (P(newest beats parent), P(newest beats base), tie rate): close to far, few to many ties; the middle row is the
# case a review of this bench simulated by hand (scheduler 497 votes, round-robin 560, most-uncertain-first 488)
CLOSENESS = [(0.52, 0.60, 0.0), (0.55, 0.80, 0.25), (0.60, 0.70, 0.15), (0.70, 0.85, 0.30), (0.85, 0.95, 0.15)]


def closeness(runs: int, seed: int) -> float:
    """Median votes of the scheduler, round-robin over the watched comparisons and uniform pairing, for three
    versions (base, parent, newest) placed so that the newest beats its parent and the base with the given
    probabilities (ties left out); prints the table and returns the median scheduler / round-robin ratio."""
    print(f"\nvotes until newest-vs-parent and newest-vs-base are both ±{GOAL * 100:.0f} points, three versions "
          f"(median of {runs} runs)")
    print(f"{'P(>parent)':>10} {'P(>base)':>8} {'ties':>5} {'scheduler':>10} {'round-robin':>11} {'uniform':>8} "
          f"{'vs round-robin':>14} {'vs uniform':>10}")
    ratios = []
    for p_parent, p_base, ties in CLOSENESS:
        theta = [0.0, logit(p_base) - logit(p_parent), logit(p_base)]
        medians = {policy: statistics.median(run(policy, 3, 0.0, ties, seed + r, theta) for r in range(runs))
                   for policy in ("scheduler", "round-robin", "uniform")}
        ratios.append(medians["scheduler"] / medians["round-robin"])
        print(f"{p_parent:>10.2f} {p_base:>8.2f} {ties:>5.0%} {medians['scheduler']:>10.0f} "
              f"{medians['round-robin']:>11.0f} {medians['uniform']:>8.0f} {ratios[-1]:>14.2f} "
              f"{medians['scheduler'] / medians['uniform']:>10.2f}")
    print(f"scheduler / round-robin: median {statistics.median(ratios):.2f} (1.00 = no gain over the fair baseline)")
    return statistics.median(ratios)


MODES = {"pairwise": [1, 0], "rank-3": [1, 1, 0], "rank-4": [1, 1, 0, 0]}  # version of each output: 1 new, 0 old


def judgements_until_precise(versions: list[int], gap: float, tie_width: float, seed: int,
                             batch: int = 5_000) -> int:
    """Judgements (votes or rankings) until the new-vs-old 95% interval is within ±``GOAL``."""
    rng = np.random.default_rng(seed)
    ranks = simulate(rng, batch, versions, gap, tie_width)  # (batch, k)
    weight = 1.0 if len(versions) == 2 else None  # a pairwise vote counts 1, a ranking's outcomes 2/k each
    per = cross_outcomes(ranks, versions, weight)  # (batch, 3)
    wins, ties, losses = np.cumsum(per, axis=0).T
    _, low, high = score_intervals(wins, ties, losses)
    done = np.flatnonzero((high - low) / 2 <= GOAL)
    return int(done[0]) + 1 if done.size else batch


def review_modes(runs: int, gaps: list[float], tie_width: float, read: float, decide: float, seed: int) -> None:
    """Print reviewer-seconds until ±5 points per review mode (see the module docstring for the assumptions)."""
    print(f"\nreviewer-seconds until the new-vs-old 95% CI is within ±{GOAL * 100:.0f} points "
          f"(median of {runs} runs; tie bin {tie_width}; a judgement of k outputs takes "
          f"{read:g}·k + {decide:g}·(k−1) s)")
    print("gap: the new version's advantage in perceived quality, in standard deviations of one output's noise; "
          "score: its true win-rate (ties half); pairs: the implied pairwise outcomes stored (reward-model data)")
    print(f"{'gap':>5} {'score':>5} {'mode':>9} {'s/judgement':>11} {'judgements':>10} {'reviewer-s':>10} "
          f"{'hours':>6} {'vs pairwise':>11} {'pairs':>6}")
    for gap in gaps:
        base = None
        score = true_score(gap, tie_width, draws=200_000)
        for mode, versions in MODES.items():
            k = len(versions)
            seconds = read * k + decide * (k - 1)
            n = statistics.median(judgements_until_precise(versions, gap, tie_width, seed + r) for r in range(runs))
            total = n * seconds
            base = base or total
            print(f"{gap:>5.2f} {score:>5.2f} {mode:>9} {seconds:>11.0f} {n:>10.0f} {total:>10.0f} "
                  f"{total / 3600:>6.1f} {total / base:>11.2f} {n * k * (k - 1) // 2:>6.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="simulations per scenario and policy (default 20)")
    parser.add_argument("--versions", type=int, nargs="*", default=[3, 4, 6],
                        help="lineage lengths including the base (default 3 4 6)")
    parser.add_argument("--gap", type=float, nargs="*", default=[0.1, 0.4, 1.0],
                        help="true strength step per round in log-odds; 0.1 close, 1.0 far (default 0.1 0.4 1.0)")
    parser.add_argument("--tie-rate", type=float, default=0.15, help="share of votes that are ties (default 0.15)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes-only", action="store_true", help="only the reviewer-seconds per review mode")
    parser.add_argument("--closeness-only", action="store_true",
                        help="only the scheduler against round-robin and uniform pairing, by closeness and ties")
    parser.add_argument("--tie-width", type=float, default=0.5,
                        help="review modes: perceived qualities within one bin of this width tie (default 0.5)")
    parser.add_argument("--read-seconds", type=float, default=8.0, help="review modes: seconds to read one output")
    parser.add_argument("--decide-seconds", type=float, default=4.0,
                        help="review modes: seconds per adjacent comparison when ordering")
    args = parser.parse_args(argv)

    started = time.monotonic()
    if args.closeness_only:
        closeness(args.runs, args.seed)
        print(f"{time.monotonic() - started:.1f} s")
        return 0
    if args.modes_only:
        review_modes(args.runs, args.gap, args.tie_width, args.read_seconds, args.decide_seconds, args.seed)
        print(f"{time.monotonic() - started:.1f} s")
        return 0
    print(f"votes until newest-vs-base and newest-vs-parent 95% CIs are within ±{GOAL * 100:.0f} points "
          f"(median of {args.runs} runs, ties {args.tie_rate:.0%})")
    print(f"{'versions':>8} {'gap':>5} {'P(new>parent)':>13} {'scheduler':>10} {'round-robin':>11} {'uniform':>10} "
          f"{'ratio':>6} {'vs rr':>6}")
    failed = False
    for versions, gap in itertools.product(args.versions, args.gap):
        medians = {}
        for policy in ("scheduler", "round-robin", "uniform"):
            medians[policy] = statistics.median(run(policy, versions, gap, args.tie_rate, args.seed + r)
                                                for r in range(args.runs))
        ratio = medians["scheduler"] / medians["uniform"]
        p_parent = 1 / (1 + math.exp(-gap))
        ok = ratio <= TARGET_RATIO
        failed |= versions >= 4 and not ok
        print(f"{versions:>8} {gap:>5.2f} {p_parent:>13.3f} {medians['scheduler']:>10.0f} "
              f"{medians['round-robin']:>11.0f} {medians['uniform']:>10.0f} {ratio:>6.2f} "
              f"{medians['scheduler'] / medians['round-robin']:>6.2f}{'' if ok else '  (above 0.5)'}")
    print(f"target: scheduler <= {TARGET_RATIO} x uniform; {time.monotonic() - started:.1f} s")
    closeness(args.runs, args.seed)
    review_modes(args.runs, args.gap, args.tie_width, args.read_seconds, args.decide_seconds, args.seed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
