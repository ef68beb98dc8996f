"""A ranking of k outputs (best to worst, ties allowed) as the pairwise outcomes it implies, and their weight.

A ranking is given as ``ranks``: ``ranks[p]`` is the rank of candidate ``p`` (1 = best; tied candidates share a
rank, so ``[1, 2, 2]`` and ``[1, 2, 3]`` are both valid for k = 3). It implies k(k-1)/2 pairwise outcomes, one per
pair of candidates: the better-ranked one wins, equal ranks tie.

Each implied outcome weighs ``2 / k`` (``pair_weight``), so the k(k-1)/2 of them together count as k-1
comparisons' worth of evidence, not k(k-1)/2:

* they are not independent: all of them come from one reviewer's single reading of the same k texts, and pairs
  sharing a candidate share that candidate's (mis)judged quality;
* a strict order of k items is fixed by its k-1 adjacent comparisons; the other pairs follow by transitivity and
  add no new judgement;
* counted at full weight, a ranking of 4 would pass for 6 independent votes, and the win-rate intervals (whose
  width goes with 1/sqrt(n)) would shrink by a factor sqrt(6/3) too many — dishonestly narrow. ``simulate`` below
  is the model the coverage checks (tests/test_ranking.py) and ``bench/label_efficiency.py`` use to show that the
  weighted intervals cover and the unweighted ones do not.

Example:
    >>> [(o.first, o.second, o.outcome, round(o.weight, 3)) for o in implied_outcomes([2, 1, 2])]
    [(0, 1, 'second', 0.667), (0, 2, 'tie', 0.667), (1, 2, 'first', 0.667)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from db.errors import ValidationError

RANK_SIZES = (3, 4)  # 2 is a pairwise vote; more than 4 outputs is more reading than one screen holds


@dataclass(frozen=True)
class ImpliedOutcome:
    """One pairwise outcome of a ranking: candidates ``first`` < ``second`` (positions); ``outcome`` is "first",
    "second" (the better-ranked one) or "tie"; ``weight`` its share of evidence (2/k)."""

    first: int
    second: int
    outcome: str
    weight: float
    gap: int  # rank difference (0 for a tie): how far apart the reviewer put them


def pair_weight(k: int) -> float:
    """The weight of each of a ranking's k(k-1)/2 implied outcomes: 2/k, so together they weigh k-1."""
    check_k(k)
    return 2.0 / k


def check_k(k: int, field: str = "k") -> int:
    """``k`` if it is a ranking size (3 or 4), else a ValidationError naming ``field``."""
    if isinstance(k, bool) or not isinstance(k, int) or k not in RANK_SIZES:
        raise ValidationError(f"{field}={k!r}: a ranking orders 3 or 4 outputs")
    return k


def check_ranks(ranks: Sequence[int], k: int) -> list[int]:
    """The ranks as competition ranks ("1224": a tie shares the better rank, the next rank skips), or a
    ValidationError naming the field: one rank per candidate, each a whole number from 1 to k."""
    check_k(k)
    ranks = list(ranks)
    if len(ranks) != k:
        raise ValidationError(f"ranks: {len(ranks)} given for {k} outputs; rank every output once")
    for p, r in enumerate(ranks):
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 1 <= r <= k:
            raise ValidationError(f"ranks[{p}]={r!r} is out of range: ranks run from 1 (best) to {k}")
    return [1 + sum(other < r for other in ranks) for r in ranks]


def implied_outcomes(ranks: Sequence[int]) -> list[ImpliedOutcome]:
    """The k(k-1)/2 pairwise outcomes of a ranking, each weighted 2/k (see the module docstring for why)."""
    k = len(ranks)
    ranks = check_ranks(ranks, k)
    w = pair_weight(k)
    out = []
    for i, j in combinations(range(k), 2):
        outcome = "tie" if ranks[i] == ranks[j] else ("first" if ranks[i] < ranks[j] else "second")
        out.append(ImpliedOutcome(i, j, outcome, w, abs(ranks[i] - ranks[j])))
    return out


def cross_outcomes(ranks: np.ndarray, versions: Sequence[int], weight: float | None = None) -> np.ndarray:
    """Per ranking, the weighted (wins, ties, losses) of version 1 against version 0 it implies: shape (R, 3).

    ``ranks``: (R, k) ranks of R rankings; ``versions``: (k,) 0 or 1, which version each candidate position holds.
    Only pairs of different versions count (two samples of one version say nothing about which is better).
    ``weight`` defaults to 2/k; 1.0 gives the unweighted expansion.
    """
    ranks = np.asarray(ranks)
    k = ranks.shape[1]
    w = pair_weight(k) if weight is None else weight
    out = np.zeros((ranks.shape[0], 3))
    for i, j in combinations(range(k), 2):
        if versions[i] == versions[j]:
            continue
        new, old = (j, i) if versions[j] == 1 else (i, j)
        out += w * np.stack([ranks[:, new] < ranks[:, old], ranks[:, new] == ranks[:, old],
                             ranks[:, new] > ranks[:, old]], axis=1)
    return out


def cross_counts(ranks: np.ndarray, versions: Sequence[int], weight: float | None = None) -> np.ndarray:
    """``cross_outcomes`` summed over the rankings: shape (3,)."""
    return cross_outcomes(ranks, versions, weight).sum(axis=0)


def simulate(rng: np.random.Generator, n: int, versions: Sequence[int], gap: float, tie_width: float) -> np.ndarray:
    """``n`` simulated rankings of candidates from two versions: shape (n, k) of competition ranks.

    A Thurstone model: each candidate's perceived quality is ``gap`` (version 1) or 0 (version 0) plus standard
    normal noise per candidate, drawn once per ranking (the reviewer reads each text once); qualities falling in the
    same bin of width ``tie_width`` tie (0: no ties). k = 2 is the pairwise vote under the same model.
    """
    v = np.asarray(versions, dtype=float)
    quality = gap * v[None, :] + rng.standard_normal((n, len(v)))
    if tie_width > 0:
        quality = np.floor(quality / tie_width)
    # competition rank: 1 + how many candidates are strictly better
    return 1 + (quality[:, None, :] > quality[:, :, None]).sum(axis=2)


def true_score(gap: float, tie_width: float, draws: int = 2_000_000, seed: int = 12345) -> float:
    """P(new beats old) + P(tie)/2 for one candidate of each version under ``simulate``'s model (Monte Carlo,
    standard error below 0.0004 at the default ``draws``)."""
    ranks = simulate(np.random.default_rng(seed), draws, [1, 0], gap, tie_width)  # (draws, 2)
    return float(((ranks[:, 0] < ranks[:, 1]).sum() + (ranks[:, 0] == ranks[:, 1]).sum() / 2) / draws)
