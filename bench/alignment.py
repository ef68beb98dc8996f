"""Proof that the loop localises copy: rounds on SmolLM2-135M-Instruct for Manchester and München, judged apart.

    python bench/alignment.py                                  # fresh GEOALIGN_HOME: demo setup, 3 rounds × 2 regions
    python bench/alignment.py --rounds 1 --regions en-GB-manchester --seeds 2   # a quick look
    python bench/alignment.py --home .geoalign --examples 2    # reuse a home; print two briefs per region

1. ``geoalign demo`` (import, accounts, the converted model, base-vs-base pairs).
2. The judge: ``rewards.judge.LocalityJudge``, sentence embeddings of the pretrained MiniLM encoder against each
   region's gold copy for *validation* briefs. No stage trains on it (not the rule reward RL optimises, not the
   reward model, which learns only from votes); its agreement with held-out (test-split) gold is printed first.
3. Before each round, one simulated reviewer per region votes on every queued pair of its region through the real
   review path (``next_item`` → ``submit_vote``), with the judge as its taste.
4. Each round runs as the worker runs it (SFT → reward model → DPO → GRPO → evaluation → publish → new pairs).
5. Every version is sampled ``--seeds`` times on each test-split brief of its region; the judge's win-rate of the
   new version vs the base and vs its parent is the share of (brief, seed) comparisons it wins (ties count half),
   with a 95% interval from a bootstrap over briefs (samples of one brief are not independent).

Goal: vs base ≥ 0.75 after round 1 and ≥ 0.85 after round 3; vs parent > 0.5 in rounds 2 and 3. The last line
reads ``alignment: round N vs base <rate> [<lo>, <hi>]``, pooled over the regions.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.round import demo_home  # noqa: E402

REGIONS = ("en-GB-manchester", "de-DE-munich")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="GEOALIGN_HOME to use (default: a new temporary one)")
    parser.add_argument("--regions", nargs="+", default=list(REGIONS), help="region codes (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per region (default 3; 0: only the judge's "
                        "agreement with gold)")
    parser.add_argument("--seeds", type=int, default=4, help="samples per test brief and version (default 4)")
    parser.add_argument("--config", help="round config YAML (default: built-in defaults)")
    parser.add_argument("--examples", type=int, default=2, help="test briefs per region to print verbatim")
    args = parser.parse_args()
    started = time.monotonic()
    settings, demo_s = demo_home(args.home, "geoalign-alignment-")

    from align.config import load_config
    from align.evaluation import judge_references
    from db.session import get_engine, session_scope
    from rewards.judge import LocalityJudge

    engine = get_engine(settings.database_url)
    config = load_config(Path(args.config) if args.config else None)
    with session_scope(engine) as session:
        judge = LocalityJudge(judge_references(session))
    print(f"setup {demo_s:.0f} s  [home {settings.home}, base {settings.base_model}]", flush=True)
    print(f"judge: {judge.name}; references: validation-split gold of {len(judge.regions)} regions", flush=True)

    bench = Bench(engine, settings, judge, args.regions, args.seeds, config.settings.max_new_tokens)
    bench.print_agreement()
    if args.rounds == 0:
        return 0
    print(f"\n{'round':>5} {'region':18} {'votes':>5} {'judge vs base':>20} {'judge vs parent':>20} "
          f"{'RM newest acc':>13} {'RM val acc':>10} {'minutes':>7}")
    pooled: dict[int, list[np.ndarray]] = {}
    for number in range(1, args.rounds + 1):
        for region in args.regions:
            t0 = time.monotonic()
            votes = bench.vote(region)
            version, stages = bench.run_round(region, config)
            vs_base, vs_parent = bench.compare(region, version)
            pooled.setdefault(number, []).append(vs_base)
            reward = stages.get("reward", {})
            print(f"{number:>5} {region:18} {votes:>5} {interval(vs_base):>20} "
                  f"{interval(vs_parent) if number > 1 else '(parent = base)':>20} "
                  f"{fmt(reward.get('newest_accuracy')):>13} {fmt(reward.get('val_accuracy')):>10} "
                  f"{(time.monotonic() - t0) / 60:7.1f}", flush=True)
    bench.print_examples(args.examples)
    for number, parts in pooled.items():
        print(f"round {number} vs base, {len(parts)} regions pooled: {interval(np.concatenate(parts))}")
    last = max(pooled)
    rate, lo, hi = bootstrap(np.concatenate(pooled[last]))
    print(f"total {(time.monotonic() - started) / 60:.1f} min")
    print(f"alignment: round {last} vs base {rate:.2f} [{lo:.2f}, {hi:.2f}]")
    return 0


class Bench:
    """The state of one benchmark run: test briefs, gold, and every version's samples on them."""

    def __init__(self, engine, settings, judge, regions: list[str], seeds: int, max_new_tokens: int):
        from align.evaluation import split_prompts
        from align.sampling import prompt_format_of
        from db.models import Split

        self.engine, self.settings, self.judge, self.seeds = engine, settings, judge, seeds
        self.max_new_tokens = max_new_tokens
        fmt = prompt_format_of(settings.base_model)
        self.tests = {code: split_prompts(engine, code, Split.test, 10_000, fmt) for code in regions}
        self.samples: dict[str, dict[str, list[list[str]]]] = {code: {} for code in regions}  # [seed][brief]
        self.parent: dict[str, str] = {code: "base" for code in regions}
        for code in regions:
            self.samples[code]["base"] = self.sample(code, None)

    def sample(self, region: str, adapter: str | None) -> list[list[str]]:
        """``seeds`` samples of every test brief of ``region``: a list per seed, in brief order."""
        from align.sampling import DecodingParams, load_policy, render_all, sample_texts

        model, tokenizer = load_policy(self.settings.base_model, adapter)
        prompts = render_all(tokenizer, [row["context"] for row in self.tests[region]])
        params = DecodingParams(max_new_tokens=self.max_new_tokens)
        return [sample_texts(model, tokenizer, prompts, params, seed=1000 + s, progress=False)
                for s in range(self.seeds)]

    def print_agreement(self) -> None:
        """How often the judge prefers held-out local gold over other regions' gold and over base outputs."""
        from sqlalchemy import select

        from db.models import Example, Prompt, Region, Split
        from db.session import session_scope
        from rewards.judge import agreement

        with session_scope(self.engine) as session:
            gold = [{"region": code, "task_type": p.task_type.value, "text": text, "prompt_id": p.id}
                    for text, p, code in session.execute(
                        select(Example.text, Prompt, Region.code).join(Prompt, Example.prompt_id == Prompt.id)
                        .join(Region, Prompt.region_id == Region.id)
                        .where(Prompt.split == Split.test, Example.vote_id.is_(None)))]
        base = {row["prompt_id"]: text for code, rows in self.tests.items()
                for row, text in zip(rows, self.samples[code]["base"][0], strict=True)}
        a = agreement(self.judge, gold, base)
        print(f"judge agreement on test-split gold: prefers a region's gold over another region's gold for the same "
              f"task {a['gold_vs_other_regions']:.2f} (n={a['gold_vs_other_regions_n']}); over the base model's "
              f"output for the same brief {a['gold_vs_base']:.2f} (n={a['gold_vs_base_n']}); ranks other regions' "
              f"gold above the base model's output {a['other_regions_gold_vs_base']:.2f} "
              f"(n={a['other_regions_gold_vs_base_n']}, lower is better)", flush=True)

    def vote(self, region: str) -> int:
        """The region's simulated reviewer votes on all its queued pairs, by the judge's taste."""
        from collect.simulate import Taste, simulate_all_regions
        from db.session import session_scope

        # gaps in the judge's score below 0.01 are noise between near-identical copy: a tie, as a person would say
        taste = Taste(lambda texts, regions, _tasks: self.judge.score(texts, regions), tie_margin=0.01,
                      clear_margin=0.05, floor=None)
        with session_scope(self.engine) as session:
            return simulate_all_regions(session, [region], per_region=10_000, taste=taste)[region]

    def run_round(self, region: str, config) -> tuple[str, dict]:
        """Queue and run one round as a worker would; the published version's name and stage metrics."""
        from align.jobs import claim_job, run_job
        from align.rounds import queue_round
        from cli.common import cli_actor
        from db.models import Job
        from db.session import session_scope

        with session_scope(self.engine) as session:
            _, job = queue_round(session, cli_actor(session), region, config)
            job_id = job.id
        claim_job(self.engine, job_id, "bench")
        status = run_job(self.engine, job_id)
        with session_scope(self.engine) as session:
            job = session.get(Job, job_id)
            result, error = (job.progress or {}).get("result") or {}, job.error
        if status.value != "succeeded":
            raise SystemExit(f"round for {region} {status.value}: {error}")
        return result["version"], result["stages"]

    def compare(self, region: str, version: str) -> tuple[np.ndarray, np.ndarray]:
        """Judge outcomes of ``version`` vs base and vs its parent, shape (briefs, seeds), values in {0, 0.5, 1}."""
        from align.registry import get_version
        from db.session import session_scope

        with session_scope(self.engine) as session:
            adapter = get_version(session, version).adapter_path
        self.samples[region][version] = self.sample(region, adapter)
        out = [self.outcomes(region, version, other) for other in ("base", self.parent[region])]
        self.parent[region] = version
        return out[0], out[1]

    def outcomes(self, region: str, new: str, old: str) -> np.ndarray:
        n_briefs = len(self.tests[region])
        a = np.array([self.judge.score(texts, [region] * n_briefs) for texts in self.samples[region][new]]).T
        b = np.array([self.judge.score(texts, [region] * n_briefs) for texts in self.samples[region][old]]).T
        return np.where(a > b, 1.0, np.where(a < b, 0.0, 0.5))  # (briefs, seeds)

    def print_examples(self, per_region: int) -> None:
        for region, rows in self.tests.items():
            last = list(self.samples[region])[-1]
            for i, row in enumerate(rows[:per_region]):
                print(f"\n[{region}] {row['task_type']} (test): {row['brief']}")
                print(f"  base   {self.samples[region]['base'][0][i]!r}")
                print(f"  {last:6} {self.samples[region][last][0][i]!r}")


def bootstrap(outcomes: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean outcome and a 95% percentile interval from resampling briefs (rows of ``outcomes``, shape (briefs, k))."""
    from scipy import stats

    per_brief = outcomes.mean(axis=1)  # (briefs,): a brief's samples are not independent, so briefs are the unit
    if np.ptp(per_brief) == 0:  # every brief alike: nothing to resample
        return float(per_brief[0]), float(per_brief[0]), float(per_brief[0])
    ci = stats.bootstrap((per_brief,), np.mean, n_resamples=resamples, method="percentile",
                         rng=np.random.default_rng(seed)).confidence_interval
    return float(per_brief.mean()), float(ci.low), float(ci.high)


def interval(outcomes: np.ndarray) -> str:
    rate, lo, hi = bootstrap(outcomes)
    return f"{rate:.2f} [{lo:.2f}, {hi:.2f}]"


def fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}"


if __name__ == "__main__":
    sys.exit(main())
