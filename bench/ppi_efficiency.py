"""Votes a comparison needs before its 95% interval is ±5 points, human-only against prediction-powered, as the reward
model's agreement with reviewers rises from 55% to 85%.

    python bench/ppi_efficiency.py                  # 100 runs per row, about 20 s on 2 cores
    python bench/ppi_efficiency.py --runs 20 --seed 3

Each pair has a latent probability p that reviewers prefer the new output, drawn from a U-shaped Beta (most pairs
have a clear favourite) with mean 0.62, so that with 15% ties the comparison's true win-rate is 0.60. Each pair gets
one vote: a tie with probability 0.15, else a win with probability p. The reward model sees p through noise on the
logit scale and reports a calibrated-ish probability, ``sigmoid((logit p + σ·ε) / sqrt(1 + πσ²/8))``; σ is tuned by
bisection to each target agreement (the share of non-tie votes whose side the RM picks), and the table reports the
agreement measured in the runs. Two more rows show the RM that knows p exactly ("oracle") and the same predictions
squeezed into [½, 1], (1 + p)/2: as informative (same ρ), but it calls "new" on every pair, so its agreement is low.

A run scores a pool of 5,000 pairs and votes them in a random order, 10 at a time, until the half-width is 0.05 or
less: the human-only tie-aware Wilson interval (``rewards.winrate``, what the dashboard shows) and the
prediction-powered one (``rewards.ppi.ppi_win_rate``, the voted pairs leaving the pool of predictions-only pairs).
Both see the same votes. Prints per row the median votes of each, their ratio, the share of runs where PPI needed
more votes, and two ceilings on the ratio. With optimal λ and N → ∞ the PPI variance is Var(Y)·(1 − ρ²) for
ρ = corr(Y, Yhat), so the ratio is at most 1/(1 − ρ²); for a *calibrated* RM and a binary vote, ρ² ≤ 2a − 1 at
agreement a (the best case is an RM certain and right on a share 2a − 1 of pairs and a coin on the rest), so the
ratio is at most 1/(2 − 2a): twice fewer votes needs a ≥ 0.75. The bench checks that bound on every simulated RM and
on the best-case RM itself, with and without ties (ties lower ρ² further), and prints what it finds; the squeezed
oracle shows the bound is one on calibrated RMs only: agreement is not what PPI uses, correlation is.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from scipy.special import expit, logit  # noqa: E402

from rewards.ppi import agreement, ppi_win_rate  # noqa: E402
from rewards.winrate import score_intervals  # noqa: E402

GOAL = 0.05  # ±5 points at 95%
TIE_RATE = 0.15
TRUE_RATE = 0.60
MEAN_P = (TRUE_RATE - TIE_RATE / 2) / (1 - TIE_RATE)  # P(new preferred | not a tie) that gives TRUE_RATE
CONCENTRATION = 0.5  # Beta(a, b) with a + b = 0.5: U-shaped, so an RM that knows p agrees with 89% of votes
TARGETS = (0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85)
CALIBRATION_PAIRS = 200_000  # σ is tuned on this many pairs: agreement's s.e. is about 0.1 point
SQUEEZED = "oracle squeezed to [½,1]"  # (1 + p)/2: ranks pairs as the oracle does, calls "new" on every one


def latent(rng: np.random.Generator, shape) -> np.ndarray:
    """Each pair's probability that reviewers prefer the new output when they do not call a tie."""
    return rng.beta(CONCENTRATION * MEAN_P, CONCENTRATION * (1 - MEAN_P), shape)


def vote(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """One reviewer's outcome per pair: 0.5 with probability TIE_RATE, else 1 with probability p, else 0."""
    return np.where(rng.random(p.shape) < TIE_RATE, 0.5, (rng.random(p.shape) < p).astype(float))


def predict(rng: np.random.Generator, p: np.ndarray, noise: float) -> np.ndarray:
    """The RM's P(new preferred): p seen through logit noise ``noise``, shrunk back towards ½ as the noise grows."""
    seen = logit(np.clip(p, 1e-6, 1 - 1e-6)) + noise * rng.standard_normal(p.shape)
    return expit(seen / math.sqrt(1 + math.pi * noise**2 / 8))


def noise_levels(seed: int) -> list[float]:
    """The logit noise σ whose RM agrees with each of TARGETS of non-tie votes (bisection: agreement falls as σ grows;
    the shrinking in ``predict`` keeps every prediction's side, so it is left out here)."""
    rng = np.random.default_rng(seed)
    p = latent(rng, CALIBRATION_PAIRS)
    y, eps = vote(rng, p), rng.standard_normal(CALIBRATION_PAIRS)
    seen = logit(np.clip(p, 1e-6, 1 - 1e-6))
    levels = []
    for target in TARGETS:
        lo, hi = 0.0, 50.0
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if agreement(y, expit(seen + mid * eps)) > target else (lo, mid)
        levels.append((lo + hi) / 2)
    return levels


def reward_models(seed: int) -> list[tuple[str, float | None, Callable]]:
    """(name, target agreement, predictions from (rng, p)) for each row of the table."""
    noisy = [(f"logit noise σ={noise:.2f}", target, partial(predict, noise=noise))
             for target, noise in zip(TARGETS, noise_levels(seed), strict=True)]
    return noisy + [("oracle", None, lambda rng, p: p), (SQUEEZED, None, lambda rng, p: (1 + p) / 2)]


def human_votes(y: np.ndarray, batch: int) -> np.ndarray:
    """Per run (rows of ``y``, shape (runs, pool)), the first multiple of ``batch`` votes with a Wilson half-width
    ≤ GOAL; NaN if the pool runs out first."""
    ends = np.arange(batch, y.shape[1] + 1, batch)
    counts = [np.cumsum(y == outcome, axis=1)[:, ends - 1] for outcome in (1.0, 0.5, 0.0)]  # (runs, batches)
    _, low, high = score_intervals(*counts)
    reached = (high - low) / 2 <= GOAL
    return np.where(reached.any(axis=1), ends[reached.argmax(axis=1)], np.nan)


def ppi_votes(y: np.ndarray, yhat: np.ndarray, batch: int) -> float:
    """One run's votes until the prediction-powered half-width is ≤ GOAL; voted pairs leave the unvoted pool."""
    for n in range(batch, len(y) - batch + 1, batch):
        if ppi_win_rate(y[:n], yhat[:n], yhat[n:]).half_width <= GOAL:
            return n
    return math.nan


def row(name: str, target: float | None, y: np.ndarray, yhat: np.ndarray, batch: int) -> dict:
    """Median votes both ways, agreement and correlation measured on every simulated pair of every run."""
    human = human_votes(y, batch)
    ppi = np.array([ppi_votes(y[i], yhat[i], batch) for i in range(len(y))])
    a = agreement(y.ravel(), yhat.ravel())
    rho2 = float(np.corrcoef(y.ravel(), yhat.ravel())[0, 1] ** 2)
    return {"name": name, "target": target, "agreement": a, "rho2": rho2, "human": np.nanmedian(human),
            "ppi": np.nanmedian(ppi), "worse": float(np.mean(ppi > human)), "bound_holds": rho2 <= 2 * a - 1}


def best_case_rho2(rng: np.random.Generator, a: float, size: int, ties: bool) -> tuple[float, float]:
    """(measured agreement, ρ²) of the best calibrated RM at agreement ``a``: certain and right on a share 2a − 1 of
    pairs (p is 0 or 1 there, 1 with probability MEAN_P), a coin on the rest (p = ½, predicted ½ ± a hair)."""
    certain = rng.random(size) < 2 * a - 1
    p = np.where(certain, (rng.random(size) < MEAN_P).astype(float), 0.5)
    y = vote(rng, p) if ties else (rng.random(size) < p).astype(float)
    yhat = np.where(certain, p, 0.5 + 1e-6 * rng.choice([-1.0, 1.0], size))
    return agreement(y, yhat), float(np.corrcoef(y, yhat)[0, 1] ** 2)


def print_table(rows: list[dict]) -> None:
    print(f"{'RM':<24} {'agree':>5} {'meas.':>6} {'corr':>5} {'ρ²':>5} {'human':>6} {'PPI':>6} {'fewer':>6} "
          f"{'PPI worse':>9} {'1/(1-ρ²)':>8} {'1/(2-2a)':>8}")
    for r in rows:
        target = "" if r["target"] is None else f"{r['target']:.0%}"
        print(f"{r['name']:<24} {target:>5} {r['agreement']:>6.1%} {math.sqrt(r['rho2']):>5.2f} {r['rho2']:>5.2f} "
              f"{r['human']:>6.0f} {r['ppi']:>6.0f} {r['human'] / r['ppi']:>5.2f}× {r['worse']:>9.0%} "
              f"{1 / (1 - r['rho2']):>7.2f}× {1 / (2 - 2 * r['agreement']):>7.2f}×")


def print_ceiling_check(rows: list[dict], rng: np.random.Generator) -> None:
    calibrated = [r for r in rows if r["name"] != SQUEEZED]
    failed = [r["name"] for r in calibrated if not r["bound_holds"]]
    print(f"\nρ² ≤ 2a − 1 holds for {len(calibrated) - len(failed)} of {len(calibrated)} calibrated-ish RMs"
          + (f"; it fails for {', '.join(failed)}" if failed else ""))
    print("best calibrated RM (certain and right on 2a − 1 of pairs, a coin on the rest):")
    for a in TARGETS:
        binary, tied = best_case_rho2(rng, a, 400_000, ties=False), best_case_rho2(rng, a, 400_000, ties=True)
        print(f"  a = {a:.0%}: 2a − 1 = {2 * a - 1:.2f}; binary votes: a = {binary[0]:.1%}, ρ² = {binary[1]:.2f}; "
              f"with {TIE_RATE:.0%} ties: a = {tied[0]:.1%}, ρ² = {tied[1]:.2f}")
    for r in rows:
        if r["name"] == SQUEEZED:
            verdict = "holds" if r["bound_holds"] else "does NOT hold"
            print(f"squeezed oracle (miscalibrated): a = {r['agreement']:.1%}, ρ² = {r['rho2']:.2f} vs 2a − 1 = "
                  f"{2 * r['agreement'] - 1:.2f}: the bound {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="simulated comparisons per row (medians over these)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw; same seed, same table")
    parser.add_argument("--pool", type=int, default=5000, help="pairs the reward model scores per comparison")
    parser.add_argument("--batch", type=int, default=10, help="votes added between two looks at the interval")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    rows = []
    for name, target, predictions in reward_models(args.seed):
        p = latent(rng, (args.runs, args.pool))
        rows.append(row(name, target, vote(rng, p), predictions(rng, p), args.batch))
    print(f"votes to a 95% half-width ≤ {GOAL} (median of {args.runs} runs; pool {args.pool} pairs, "
          f"{TIE_RATE:.0%} ties, true rate {TRUE_RATE:.0%})\n")
    print_table(rows)
    print_ceiling_check(rows, rng)
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
