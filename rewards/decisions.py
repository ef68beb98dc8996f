"""Did this round win? Per comparison leads watch, the prediction-powered win-rate beside the human-only one, and the
stopping rule's verdict: decided, or about how many more votes until the interval is ±5 points.

Inputs are the frames of ``db.queries``: ``predicted_pairs`` (every evaluation pair with the reward model's
prediction and its votes so far, zero for an unvoted pair), ``versions_frame``, and the human-only ``win_rates`` of
``rewards.ratings.version_win_rates``. A comparison's outcome is seen from the newer version's side: a pair's label
is the mean of its votes (ties ½, "both bad" left out) and its prediction is the reward model's P(newer preferred).

Example:
    >>> pairs = pd.DataFrame({"region": ["x"] * 4, "pair_id": [1, 2, 3, 4], "model_a": [2, 1, 2, 2],
    ...                       "model_b": [1, 2, 1, 1], "predicted_a": [0.9, 0.2, 0.7, 0.6],
    ...                       "a": [1.0, 0.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0, 0.0], "tie": [0.0, 0.0, 1.0, 0.0],
    ...                       "both_bad": [0.0] * 4})
    >>> labels(pairs, new_id=2).round(2).tolist()  # pair 2 has version 2 on side b: its b vote is a win
    [1.0, 1.0, 0.5, nan]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rewards.ppi import PPIWinRate, ppi_win_rate
from rewards.ratings import ALL_REGIONS, matchups
from rewards.stopping import GOAL_HALF_WIDTH, Verdict, more_votes_human, verdict
from rewards.winrate import win_rate_counts

MIN_LABELLED = 10  # fewer voted pairs than this estimate the reward model's error too loosely to lean on it

PREDICTED_COLUMNS = ["region", "version_id", "version", "opponent", "opponent_id", "opponent_version", "n",
                     "n_unlabelled", "rate", "low", "high", "effective_votes", "human_rate", "human_low",
                     "human_high", "agreement", "more_votes"]
DECISION_COLUMNS = ["region", "version_id", "version", "opponent", "opponent_version", "source", "rate", "low",
                    "high", "votes", "more_votes", "decided", "winner", "verdict"]


def labels(pairs: pd.DataFrame, new_id: int) -> pd.Series:
    """Each pair's human outcome for version ``new_id``: (wins + ties/2) / (wins + ties + losses) of its summed vote
    weights; NaN for a pair without a decisive or tie vote (unvoted, or "both bad" only)."""
    new_is_a = pairs["model_a"] == new_id
    wins = pairs["a"].where(new_is_a, pairs["b"])
    losses = pairs["b"].where(new_is_a, pairs["a"])
    n = wins + losses + pairs["tie"]
    return ((wins + pairs["tie"] / 2) / n).where(n > 0)


def predictions(pairs: pd.DataFrame, new_id: int) -> pd.Series:
    """The reward model's P(version ``new_id`` preferred) per pair."""
    return pairs["predicted_a"].where(pairs["model_a"] == new_id, 1 - pairs["predicted_a"])


def comparison_ppi(pairs: pd.DataFrame, new_id: int) -> PPIWinRate | None:
    """The prediction-powered win-rate of ``new_id`` over the pairs of one comparison, or None with fewer than
    ``MIN_LABELLED`` voted pairs. Pairs with only "both bad" votes are left out of both sets: they were judged, so
    they are not a random draw of the unjudged, and they say nothing about which side is better."""
    y, yhat = labels(pairs, new_id), predictions(pairs, new_id)
    voted = y.notna()
    unvoted = ~voted & (pairs["both_bad"] == 0)
    if voted.sum() < MIN_LABELLED:
        return None
    return ppi_win_rate(y[voted].to_numpy(), yhat[voted].to_numpy(), yhat[unvoted].to_numpy())


def _row(ppi: PPIWinRate, goal: float) -> dict:
    more = ppi.more_votes(goal)
    return {"n": ppi.n, "n_unlabelled": ppi.n_unlabelled, "rate": ppi.rate, "low": ppi.low, "high": ppi.high,
            "effective_votes": ppi.effective_votes, "human_rate": ppi.human.rate, "human_low": ppi.human.low,
            "human_high": ppi.human.high, "agreement": ppi.agreement, "more_votes": np.nan if more is None else more}


def stratified(parts: list[PPIWinRate], goal: float = GOAL_HALF_WIDTH) -> dict:
    """Several regions' prediction-powered rates as one across regions: each region weighs its share of the
    comparison's pairs, and the variances add with the squared weights (a stratified estimate). Pooling the pairs
    instead would be biased: regions vote on different shares of their pairs, so the pooled voted pairs are no
    random sample of the pooled pairs. ``more_votes`` scales today's variance: votes spread like today's."""
    sizes = np.array([p.n + p.n_unlabelled for p in parts], dtype=float)
    w = sizes / sizes.sum()
    rate = float(np.dot(w, [p.rate for p in parts]))
    half = math.sqrt(float(np.dot(w**2, [p.half_width**2 for p in parts])))
    n = sum(p.n for p in parts)
    human = win_rate_counts(*(sum(getattr(p.human, k) for p in parts) for k in ("wins", "ties", "losses")))
    agreements = [(p.agreement, p.n) for p in parts if p.agreement is not None]
    unreachable = any(p.more_votes(goal) is None for p in parts)
    return {"n": n, "n_unlabelled": sum(p.n_unlabelled for p in parts), "rate": rate,
            "low": max(0.0, rate - half), "high": min(1.0, rate + half),
            "effective_votes": n * ((human.high - human.low) / 2 / half) ** 2, "human_rate": human.rate,
            "human_low": human.low, "human_high": human.high,
            "agreement": sum(a * k for a, k in agreements) / sum(k for _, k in agreements) if agreements else None,
            "more_votes": np.nan if unreachable else max(0, math.ceil(n * (half / goal) ** 2) - n)}


def prediction_powered_win_rates(pairs: pd.DataFrame, versions: pd.DataFrame,
                                 goal: float = GOAL_HALF_WIDTH) -> pd.DataFrame:
    """One row per (region, version, opponent) whose comparison has at least ``MIN_LABELLED`` voted pairs with
    predictions: the PPI++ rate and 95% interval, the human-only rate of the same voted pairs, the votes the
    interval is worth (``effective_votes``) and the votes still needed for ±``goal`` (``more_votes``; NaN when the
    predictions alone are too few to get there). The ``ALL_REGIONS`` row combines the regions by ``stratified``,
    and is left out while one of them has too few votes."""
    if pairs.empty or versions.empty:
        return pd.DataFrame(columns=PREDICTED_COLUMNS)
    rows = []
    for _, m in matchups(versions).iterrows():
        new, old = int(m["version_id"]), int(m["opponent_id"])
        mine = pairs[((pairs["model_a"] == new) & (pairs["model_b"] == old))
                     | ((pairs["model_a"] == old) & (pairs["model_b"] == new))]
        if mine.empty:
            continue
        per_region = {code: comparison_ppi(group, new) for code, group in mine.groupby("region", sort=True)}
        found = {code: _row(ppi, goal) for code, ppi in per_region.items() if ppi is not None}
        if found and len(found) == len(per_region):
            parts = list(per_region.values())
            found = {ALL_REGIONS: _row(parts[0], goal) if len(parts) == 1 else stratified(parts, goal)} | found
        key = {"version_id": new, "version": m["version"], "opponent": m["opponent"], "opponent_id": old,
               "opponent_version": m["opponent_version"]}
        rows += [{"region": code} | key | row for code, row in found.items()]
    return pd.DataFrame(rows, columns=PREDICTED_COLUMNS)


@dataclass(frozen=True)
class Evidence:
    """What a comparison's verdict rests on: prediction-powered where there is enough, else human votes alone."""

    source: str  # "prediction-powered" or "human votes"
    rate: float
    low: float
    high: float
    votes: float  # human votes behind it (voted pairs for prediction-powered)
    more_votes: int | None

    def verdict(self, new_name: str, old_name: str, kind: str) -> Verdict:
        return verdict(self.rate, self.low, self.high, self.more_votes, new_name, old_name, kind)


def evidence(wins: float, ties: float, losses: float, ppi: PPIWinRate | None,
             goal: float = GOAL_HALF_WIDTH) -> Evidence | None:
    """The comparison's best interval: ``ppi`` when given, else the human-only one from the counts (None without
    any vote)."""
    if ppi is not None:
        return Evidence("prediction-powered", ppi.rate, ppi.low, ppi.high, ppi.n, ppi.more_votes(goal))
    if wins + ties + losses <= 0:
        return None
    human = win_rate_counts(wins, ties, losses)
    return Evidence("human votes", human.rate, human.low, human.high, human.n, more_votes_human(human, goal))


def watched(versions: pd.DataFrame) -> set[int]:
    """The versions leads watch: every derived version no other version was tuned from (the newest of its line)."""
    parents = set(versions["parent_id"].dropna().astype("int64"))
    return {int(v) for v, b in zip(versions["id"], versions["base_id"], strict=True) if v != b and v not in parents}


def decisions(win_rates: pd.DataFrame, predicted: pd.DataFrame, versions: pd.DataFrame,
              goal: float = GOAL_HALF_WIDTH) -> pd.DataFrame:
    """The stopping rule per watched comparison (newest version vs its parent and vs its base, per region):
    prediction-powered where ``predicted`` has the comparison, else the human-only interval of ``win_rates``."""
    if win_rates.empty:
        return pd.DataFrame(columns=DECISION_COLUMNS)
    newest = watched(versions)
    keys = ["region", "version_id", "opponent"]
    ppi_rows = {tuple(r[k] for k in keys): r for _, r in predicted.iterrows()}
    rows = []
    for _, w in win_rates[win_rates["version_id"].isin(newest)].iterrows():
        p = ppi_rows.get(tuple(w[k] for k in keys))
        if p is not None:
            more = None if pd.isna(p["more_votes"]) else int(p["more_votes"])
            ev = Evidence("prediction-powered", p["rate"], p["low"], p["high"], p["n"], more)
        else:
            ev = evidence(w["wins"], w["ties"], w["losses"], None, goal)
        v = ev.verdict(w["version"], w["opponent_version"], w["opponent"])
        rows.append({"region": w["region"], "version_id": w["version_id"], "version": w["version"],
                     "opponent": w["opponent"], "opponent_version": w["opponent_version"], "source": ev.source,
                     "rate": ev.rate, "low": ev.low, "high": ev.high, "votes": ev.votes,
                     "more_votes": v.more_votes, "decided": v.decided, "winner": v.winner, "verdict": v.text})
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)
