"""``geoalign status``, ``stats`` and ``votes simulate``: what has been collected and what the votes say.

    geoalign status                                  # prompts, examples, pairs and votes per region
    geoalign stats --region en-GB-manchester --out stats/
    geoalign votes simulate --region en-GB-manchester --limit 200
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from cli.common import add, add_region_filter, cli_actor, engine, group
from collect.overview import model_version_count, region_overview
from collect.simulate import simulate_all_regions
from db.errors import ValidationError
from db.queries import ALL_REGIONS
from db.session import session_scope
from rewards.dashboard import load_dashboard


def cmd_status(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        rows = region_overview(session)
        versions = model_version_count(session)
    if not rows:
        print("no regions yet: run `geoalign demo` or `geoalign import regions`")
        return 0
    print(f"{'region':22} {'prompts':>8} {'examples':>9} {'pairs':>6} {'votes':>6} {'waiting':>8}")
    for r in rows:
        print(f"{r['region']:22} {r['prompts']:8} {r['examples']:9} {r['pairs']:6} {r['votes']:6} "
              f"{r['pairs_waiting']:8}")
    print(f"model versions: {versions}")
    return 0


def cmd_votes_simulate(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        counts = simulate_all_regions(session, args.region, per_region=args.limit, seed=args.seed)
    for code, n in counts.items():
        print(f"{code:24} {n} simulated votes")
    print(f"{sum(counts.values())} simulated votes (source=simulated; not human judgement)")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        everything = load_dashboard(session, cli_actor(session), n_boot=args.bootstrap)
    region = args.region or ALL_REGIONS
    if args.region and args.region not in everything.regions:
        raise ValidationError(f"no votes in region {args.region!r} (regions with votes: "
                              f"{', '.join(everything.regions) or 'none'})")
    d = everything.region(region)
    if everything.total_votes == 0:
        print("no votes yet: the statistics appear once reviewers have judged pairs")
        return 0
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 3):
        print(f"win-rates ({region}; ties count half, both_bad shown apart, 95% CI)")
        print(d.win_rates[["region", "version", "opponent", "opponent_version", "n", "both_bad", "rate", "low",
                           "high"]].to_string(index=False) if not d.win_rates.empty else "  none")
        print(f"\nprediction-powered win-rates ({region}; the round's reward model on every evaluation pair, "
              "corrected by the votes on a random sample of them: PPI++, 95% CI)")
        print(d.predicted[["region", "version", "opponent", "n", "n_unlabelled", "rate", "low", "high",
                           "human_rate", "human_low", "human_high", "effective_votes"]]
              .rename(columns={"n": "voted", "n_unlabelled": "predicted_only", "effective_votes": "worth_votes"})
              .to_string(index=False) if not d.predicted.empty else
              "  none (needs a round's evaluation pairs with 10 or more votes)")
        print(f"\nstopping rule ({region}; the newest versions vs their parent and base, ±5 points wanted)")
        for _, row in d.decisions.iterrows():
            print(f"  {row['region']:22} {row['version']} vs {row['opponent']}: {row['verdict']} [{row['source']}]")
        if d.decisions.empty:
            print("  none")
        print(f"\nBradley–Terry leaderboard ({region}; base = 1000, bootstrap 95% CI)")
        print(d.leaderboard[["rank", "version", "rating", "low", "high", "games"]].to_string(index=False)
              if not d.leaderboard.empty else "  none")
        flagged = d.reviewers[d.reviewers["flagged"]] if not d.reviewers.empty else d.reviewers
        print(f"\nreviewers flagged: {len(flagged)}")
        for user, reasons in zip(flagged.get("user", []), flagged.get("reasons", []), strict=True):
            print(f"  {user}: {reasons}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in d.tables().items():
            frame.to_csv(out / f"{name}.csv", index=False)
        print(f"\nwrote {len(d.tables())} CSV tables to {out}")
    return 0


def register(sub) -> None:
    """``geoalign status``, ``votes simulate`` and ``stats``."""
    add(sub, "status", cmd_status, "prompts, examples, pairs and votes per region")

    votes = group(sub, "votes", "vote utilities")
    p = add(votes, "simulate", cmd_votes_simulate, "cast simulated votes (rule-based judge) on queued pairs",
            "For load tests and offline demos of a full round: one simulated reviewer per region judges its "
            "queued pairs with the rule-based regional reward (rewards/rules.py). Votes are stored with "
            "source=simulated so they can be told apart from human judgement. Not for production data.")
    add_region_filter(p)
    p.add_argument("--limit", type=int, default=1000, help="votes per region at most")
    p.add_argument("--seed", type=int, default=0, help="seed for simulated review times")

    p = add(sub, "stats", cmd_stats, "win-rates vs base and parent, whether each is decided, leaderboard, "
            "flagged reviewers",
            "The leads' dashboard figures in the terminal: each version's win-rate against the base and its "
            "parent with 95% CIs, human votes only and prediction-powered (the round's reward model on every "
            "evaluation pair, corrected by the votes: PPI++) with the votes it is worth, the stopping rule's "
            "verdict per watched comparison (decided, or about how many more votes to +/-5 points), the "
            "Bradley–Terry leaderboard with bootstrap CIs, and reviewers flagged by the quality checks. --out "
            "writes every dashboard table as CSV.")
    p.add_argument("--region", help="region code (default: all regions together)")
    p.add_argument("--out", help="folder to write every table as CSV")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the rating CIs")
