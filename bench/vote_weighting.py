"""Reliability-weighted votes against plain majority votes, when some reviewers click at random.

    python bench/vote_weighting.py                         # defaults: three regions, about 5 minutes on 2 cores
    python bench/vote_weighting.py --regions en-GB-manchester de-DE-munich --epochs 3 --seed 1
    python bench/vote_weighting.py --random-share 0.5 --votes-per-pair 2

Everything runs on a temporary SQLite database; no policy model is needed.

1. The bundled demo regions and their gold copy are imported as ``geoalign demo`` imports them; the bench then
   puts ``--train-share`` of each region's briefs in the train split and the rest in val (held out), so that the
   held-out set is large enough to tell the two models apart.
2. Each brief whose gold copy uses some of the region's local terms (``local_terms`` of its region.json) gets
   ``--pairs-per-brief`` pairs: its gold copy against *off-region* copy, the same text with each local term swapped
   for one of the region's ``avoid_terms`` (references of other regions, seasons or language variants), drawn
   anew for each pair: "zero mither in Didsbury" against "zero y'all in Thanksgiving". The right answer is known
   (the local copy, which the rule-based regional reward prefers too). Sides are shuffled.
3. Each region has ``--reviewers`` simulated reviewers; ``--random-share`` of them click A or B at random, the
   others pick the right side with probability ``--honest-accuracy`` (a "clear" preference 70% of the time).
   Every train pair gets ``--votes-per-pair`` votes from distinct reviewers of its region, and ``--gold-share`` of
   them are gold pairs (known answer), as leads seed them.
4. The reward model's rows are built by ``collect.datasets.preference_rows`` twice: as today, and with
   ``collect.reliability.reviewer_reliability`` (crowd-kit Dawid–Skene per region), exactly what a round's snapshot
   writes with ``round.vote_weighting: none`` and ``reliability``.
5. Each set trains the reward stage as a round runs it (``align.stages.reward.run``: TRL's ``RewardTrainer`` on the
   bundled MiniLM encoder, the stage's settings except ``--epochs``, no validation rows so both run the same
   steps), and each model is scored on the clean held-out pairs: each held-out brief's local copy against
   ``--pairs-per-brief`` off-region copies, the known answer, never voted on.

Prints the reliability estimated for honest and random reviewers, how many training rows point the right way and
with what margins, and the reward model's accuracy on the clean held-out pairs for both.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEMO_DATA = Path(__file__).resolve().parent.parent / "collect" / "demo_data"
# three regions, two languages: enough pairs per region for every reviewer to pass rewards.reliability.MIN_VOTES,
# few enough for two reward models in about five minutes on two CPU cores
REGIONS = ("en-GB-manchester", "en-US-austin", "es-ES-madrid")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regions", nargs="+", default=list(REGIONS), help="demo region codes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed for pairs, reviewers, votes and training")
    parser.add_argument("--reviewers", type=int, default=10, help="simulated reviewers per region (default 10)")
    parser.add_argument("--random-share", type=float, default=0.3,
                        help="share of reviewers who click at random (default 0.3)")
    parser.add_argument("--honest-accuracy", type=float, default=0.9,
                        help="how often an honest reviewer picks the right side (default 0.9)")
    parser.add_argument("--train-share", type=float, default=0.5,
                        help="share of each region's briefs voted on; the rest are held out (default 0.5)")
    parser.add_argument("--pairs-per-brief", type=int, default=2, help="pairs per brief (default 2)")
    parser.add_argument("--votes-per-pair", type=int, default=3, help="reviewers per pair (default 3)")
    parser.add_argument("--gold-share", type=float, default=0.1, help="share of pairs that are gold (default 0.1)")
    parser.add_argument("--epochs", type=float, default=2, help="reward model epochs (default 2, to fit about 5 "
                        "minutes on two cores; a round uses 10 with early stopping on a few dozen pairs)")
    args = parser.parse_args()
    if not 0 <= args.random_share <= 1 or args.votes_per_pair > args.reviewers:
        parser.error("--random-share must be in [0, 1] and --votes-per-pair at most --reviewers")
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="geoalign-vote-weighting-"))
    os.environ["GEOALIGN_HOME"] = str(home)
    os.environ.pop("DATABASE_URL", None)

    from db import migrate
    from db.session import make_engine
    from db.settings import Settings

    engine = make_engine(Settings.from_env().database_url)
    migrate.upgrade(engine)
    regions = args.regions
    rng = random.Random(args.seed)
    print(f"[{_clock(started)}] importing {len(regions)} demo regions into {home}", flush=True)
    briefs = load_briefs(engine, regions, args.train_share, args.pairs_per_brief, rng)
    train = [b for b in briefs if b["split"] == "train"]
    print(f"[{_clock(started)}] {len(briefs)} briefs with local terms: {len(train)} to vote on, "
          f"{len(briefs) - len(train)} held out", flush=True)
    clickers, answers = make_votes(engine, regions, train, rng, args)
    print(f"[{_clock(started)}] votes written; estimating reliability and building rows", flush=True)

    from collect.datasets import DatasetFilter, preference_rows
    from collect.reliability import reviewer_reliability
    from db.session import session_scope

    with session_scope(engine) as session:
        reliability = reviewer_reliability(session, tuple(regions))
        plain = preference_rows(session, DatasetFilter(splits=("train",)), "conversational")[0]
        weighted = preference_rows(session, DatasetFilter(splits=("train",)), "conversational",
                                   reliability=reliability)[0]
        heldout = heldout_rows(session, briefs)
    print_reliability(reliability, clickers)
    print("\ntraining rows (right: the chosen side is the local copy)")
    print_rows("unweighted", plain)
    print_rows("reliability", weighted)
    print_posteriors(reliability, answers)

    accuracy = {}
    for name, rows in (("unweighted", plain), ("reliability", weighted)):
        print(f"[{_clock(started)}] training the reward model on the {name} rows ({len(rows)} pairs, "
              f"{args.epochs:g} epochs)", flush=True)
        accuracy[name] = train_and_score(home / name, rows, heldout, args)
        print(f"[{_clock(started)}] {name}: accuracy {accuracy[name]:.3f} on {len(heldout)} clean held-out pairs",
              flush=True)
    print(f"\nreward-model accuracy on {len(heldout)} clean held-out pairs: unweighted {accuracy['unweighted']:.3f}, "
          f"reliability-weighted {accuracy['reliability']:.3f} ({_clock(started)} in all)")
    return 0


def _clock(started: float) -> str:
    s = time.monotonic() - started
    return f"{int(s // 60)}:{int(s % 60):02d}"


def load_briefs(engine, regions: list[str], train_share: float, variants: int, rng: random.Random) -> list[dict]:
    """Import the demo regions and gold copy, and split each region's briefs train/val (``train_share``); one dict
    per brief whose copy has local terms: region, prompt id, split, copy and ``variants`` off-region versions."""
    import json

    from sqlalchemy import select

    from collect.ingest import import_examples, import_regions
    from collect.tags import ensure_default_tags
    from db.models import Example, Prompt, Region, Split
    from db.session import session_scope

    with session_scope(engine) as session:
        ensure_default_tags(session)
        for code in regions:
            import_regions(session, DEMO_DATA / code / "region.json")
        session.flush()
        for code in regions:
            import_examples(session, DEMO_DATA / code / "examples.jsonl", region=code)
    profiles = {code: json.loads((DEMO_DATA / code / "region.json").read_text(encoding="utf-8")) for code in regions}
    briefs = []
    with session_scope(engine) as session:
        rows = session.execute(select(Region.code, Prompt, Example.text).join(Prompt, Example.prompt_id == Prompt.id)
                               .join(Region, Prompt.region_id == Region.id).order_by(Prompt.id)).all()
        by_region: dict[str, list] = defaultdict(list)
        seen = set()
        for code, prompt, text in rows:
            if prompt.id not in seen:  # one gold copy per brief
                seen.add(prompt.id)
                by_region[code].append((prompt, text))
        for code, items in sorted(by_region.items()):
            rng.shuffle(items)
            n_train = round(train_share * len(items))
            for i, (prompt, text) in enumerate(items):
                prompt.split = Split.train if i < n_train else Split.val
                local, avoid = profiles[code]["local_terms"], profiles[code]["avoid_terms"]
                swapped = [off_region(text, local, avoid, rng) for _ in range(variants)]
                if swapped[0] != text:
                    briefs.append({"region": code, "prompt_id": prompt.id, "split": prompt.split.value,
                                   "copy": text, "off_region": list(dict.fromkeys(swapped))})
    return briefs


def off_region(text: str, local: list[str], avoid: list[str], rng: random.Random) -> str:
    """``text`` with each local term (longest first, whole words, any case) swapped for a random avoid term."""
    import re

    pattern = "|".join(re.escape(t) for t in sorted(local, key=len, reverse=True))
    return re.sub(rf"(?<!\w)(?:{pattern})(?!\w)", lambda _: rng.choice(avoid), text, flags=re.IGNORECASE)


def make_votes(engine, regions: list[str], train: list[dict], rng: random.Random,
               args) -> tuple[set[int], dict[int, str]]:
    """Pairs on the train briefs and the simulated reviewers' votes; returns the random clickers' user ids and each
    non-gold pair's right side ("a" or "b")."""
    from sqlalchemy import select

    from db.models import Choice, Generation, ModelVersion, Pair, Region, Side, Strength, User, Vote
    from db.session import session_scope

    clickers: set[int] = set()
    answers: dict[int, str] = {}
    with session_scope(engine) as session:
        gold_v = ModelVersion(name="gold-copy", base_model="-")
        off_v = ModelVersion(name="off-region", base_model="-")
        session.add_all([gold_v, off_v])
        session.flush()
        region_ids = dict(session.execute(select(Region.code, Region.id)).all())
        reviewers: dict[str, list[tuple[int, bool]]] = {}
        n_random = round(args.random_share * args.reviewers)
        for code in regions:
            users = [User(username=f"{code}-r{i}", password_hash="-") for i in range(args.reviewers)]
            session.add_all(users)
            session.flush()
            flags = [True] * n_random + [False] * (args.reviewers - n_random)
            rng.shuffle(flags)
            reviewers[code] = [(u.id, f) for u, f in zip(users, flags, strict=True)]
            clickers |= {u.id for u, f in zip(users, flags, strict=True) if f}
        pairs = 0
        for brief, n, other in ((b, n, o) for b in train for n, o in enumerate(b["off_region"])):
            right = rng.choice((Choice.a, Choice.b))
            texts = {right: (brief["copy"], gold_v.id),
                     (Choice.b if right == Choice.a else Choice.a): (other, off_v.id)}
            gens = {side: Generation(prompt_id=brief["prompt_id"], model_version_id=version, text=text, params={},
                                     seed=n) for side, (text, version) in texts.items()}
            session.add_all(gens.values())
            session.flush()
            is_gold = rng.random() < args.gold_share
            pair = Pair(prompt_id=brief["prompt_id"], region_id=region_ids[brief["region"]],
                        generation_a_id=gens[Choice.a].id, generation_b_id=gens[Choice.b].id,
                        model_a_id=gens[Choice.a].model_version_id, model_b_id=gens[Choice.b].model_version_id,
                        is_gold=is_gold, gold_choice=right if is_gold else None)
            session.add(pair)
            session.flush()
            pairs += 1
            if not is_gold:
                answers[pair.id] = right.value
            for user_id, clicks in rng.sample(reviewers[brief["region"]], args.votes_per_pair):
                if clicks:
                    choice = rng.choice((Choice.a, Choice.b))
                    strength = rng.choice((Strength.clear, Strength.slight))
                else:
                    correct = rng.random() < args.honest_accuracy
                    choice = right if correct else (Choice.b if right == Choice.a else Choice.a)
                    strength = Strength.clear if rng.random() < 0.7 else Strength.slight
                session.add(Vote(pair_id=pair.id, user_id=user_id, region_id=pair.region_id, choice=choice,
                                 strength=strength, shown_left=rng.choice((Side.a, Side.b)), seconds_taken=20.0,
                                 source="simulated"))
        print(f"  {pairs} pairs, {pairs * args.votes_per_pair} votes, {len(clickers)} of "
              f"{args.reviewers * len(regions)} reviewers click at random", flush=True)
    return clickers, answers


def heldout_rows(session, briefs: list[dict]) -> list[dict]:
    """Clean preference rows on the held-out briefs: the local copy chosen, each off-region version rejected."""
    from collect.prompting import BriefContext, dataset_completion, dataset_prompt
    from db.models import Prompt, Region

    rows = []
    for brief in (b for b in briefs if b["split"] != "train"):
        prompt = session.get(Prompt, brief["prompt_id"])
        region = session.get(Region, prompt.region_id)
        context = dataset_prompt(BriefContext.of_prompt(region, prompt), "conversational")
        rows += [{"prompt": context, "chosen": dataset_completion(brief["copy"], "conversational"),
                  "rejected": dataset_completion(other, "conversational")} for other in brief["off_region"]]
    return rows


def print_reliability(reliability, clickers: set[int]) -> None:
    frame = reliability.reviewers
    known = frame[frame["estimated"]]
    rand = known[known["user"].isin(clickers)]["reliability"]
    honest = known[~known["user"].isin(clickers)]["reliability"]
    print(f"\nreliability (Dawid-Skene, per region; {len(known)} of {len(frame)} reviewers estimated)")
    for label, values in (("honest", honest), ("random", rand)):
        if len(values):
            print(f"  {label:7} n={len(values):3}  mean {values.mean():.3f}  median {values.median():.3f}  "
                  f"min {values.min():.3f}  max {values.max():.3f}")


def print_posteriors(reliability, answers: dict[int, str]) -> None:
    """How often Dawid-Skene's most probable side (A or B) is the right one on the non-gold pairs it fitted."""
    post = reliability.posteriors
    post = post[post["task"].isin(answers)]
    if post.empty:
        return
    picked = ["a" if a > b else "b" if b > a else "tie" for a, b in zip(post["a"], post["b"], strict=True)]
    right = sum(p == answers[t] for p, t in zip(picked, post["task"], strict=True))
    print(f"  Dawid-Skene posterior: {len(post)} non-gold pairs, {right / len(post):.1%} right")


def print_rows(name: str, rows: list[dict]) -> None:
    """How many training rows point the right way (chosen = the brief's own copy), and their margins/weights."""
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append(row)
    votes = by_kind["vote"]
    right = [r for r in votes if r["chosen_model"] == "gold-copy"]
    wrong = [r for r in votes if r["chosen_model"] != "gold-copy"]

    def mean(rs, key):
        return f"{statistics.fmean(r[key] for r in rs):.3f}" if rs else "-"

    line = (f"  {name:11} {len(rows):4} rows ({len(by_kind['gold'])} gold), {len(votes)} from votes: "
            f"{len(right) / max(len(votes), 1):.1%} right; margin right {mean(right, 'margin')} / wrong "
            f"{mean(wrong, 'margin')}")
    if votes and "vote_weight" in votes[0]:
        line += f"; DPO weight right {mean(right, 'vote_weight')} / wrong {mean(wrong, 'vote_weight')}"
    print(line, flush=True)


def train_and_score(workdir: Path, rows: list[dict], heldout: list[dict], args) -> float:
    """The reward stage on ``rows`` (as a round runs it), then its accuracy on ``heldout``."""
    import json

    import torch

    from align.config import load_config
    from align.stages import StageInputs, run_stage
    from align.stages.reward import accuracy
    from rewards.reward_model import RewardScorer

    (workdir / "data").mkdir(parents=True)
    with (workdir / "data" / "pref_train.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    config = load_config({"round": {"report_to": "none", "seed": args.seed, "min_preference_pairs": 1},
                          "reward": {"num_train_epochs": args.epochs, "disable_tqdm": True, "logging_steps": 20}})
    # the stage seeds TRL, but the backbone's new scoring head is initialised before that, from torch's own
    # per-process random seed: seeded here, both models start from the same head and reruns print the same figures
    torch.manual_seed(args.seed)
    result = run_stage(StageInputs(stage="reward", workdir=str(workdir), config=config.raw, base_model="-",
                                   adapter_in=None))
    return accuracy(RewardScorer(result.reward_model), heldout, "held-out", False)


if __name__ == "__main__":
    sys.exit(main())
