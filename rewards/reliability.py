"""Reviewer reliability per region, estimated from votes, gold pairs and agreement with crowd-kit's Dawid–Skene.

Input: a votes frame, one row per vote, columns ``region``, ``task`` (the pair), ``user``, ``label`` (a, b, tie,
both_bad) and ``gold`` (the known answer of a gold pair, else None). Each region is estimated on its own:

1. Reviewers with fewer than ``min_votes`` votes in the region are left out of the fit (a confusion matrix from a
   handful of votes is noise) and keep reliability NaN.
2. Dawid–Skene (``crowdkit.aggregation.DawidSkene``) fits one confusion matrix per remaining reviewer, the
   label priors and a posterior of each pair's true label; gold pairs' known answers are passed as ``true_labels``,
   which pins their posterior to the answer in every EM step, so gold anchors what "right" means.
3. A reviewer's ``accuracy`` is the probability that their label is the true one, ``Σ_k prior_k · e[k|k]``;
   their ``reliability`` is that accuracy corrected for chance (Cohen's κ against the estimated truth):
   ``(accuracy - chance) / (1 - chance)`` with ``chance = Σ_k prior_k · q_k``, ``q`` being the reviewer's own label
   distribution, clipped to [0, 1]. Someone who clicks at random scores about 0 whatever the label mix, someone
   always right 1; raw accuracy would give the random clicker 0.5 on a two-sided choice, too much weight to
   give a coin.

A region is estimated only when at least two reviewers pass ``min_votes`` and some pair was judged by two of them
or is a gold pair (without either, nothing tells a reviewer's errors from the truth). Where a reviewer is not
estimated, ``Reliability.weight`` is 1.0: their votes count as they do without reliability weighting.

Example:
    >>> rel = estimate_reliability(votes)            # votes: region, task, user, label, gold
    >>> rel.reviewers.sort_values("reliability")     # region, user, votes, accuracy, reliability, estimated
    >>> rel.weight("en-GB-manchester", 7)            # 1.0 when unknown
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

LABELS = ("a", "b", "tie", "both_bad")
VOTE_COLUMNS = ["region", "task", "user", "label", "gold"]
REVIEWER_COLUMNS = ["region", "user", "votes", "accuracy", "reliability", "estimated"]
MIN_VOTES = 10  # a 2×2 confusion matrix needs a few votes on each side before it says more than the prior
DS_ITERATIONS = 100  # crowd-kit's default; EM stops earlier once the bound gains less than its tolerance


@dataclass
class Reliability:
    """Estimated reliabilities and label posteriors; ``weight`` gives 1.0 where nothing was estimated."""

    reviewers: pd.DataFrame  # REVIEWER_COLUMNS, one row per (region, user) with a vote
    posteriors: pd.DataFrame  # region, task, then one probability column per label in LABELS (fitted pairs only)
    _by_key: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.reviewers.empty:
            return
        known = self.reviewers[self.reviewers["estimated"].astype(bool)]
        self._by_key = {(r, u): float(v) for r, u, v in zip(known["region"], known["user"], known["reliability"],
                                                            strict=True)}

    def weight(self, region: str, user) -> float:
        """How much ``user``'s votes in ``region`` count, in [0, 1]; 1.0 for a reviewer without an estimate."""
        return self._by_key.get((region, user), 1.0)

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        """Per region: reviewers with votes, how many were estimated, their median reliability and how many fall
        below 0.2 (near-random clicking), for a round's lineage."""
        out: dict[str, dict[str, float | int | None]] = {}
        if self.reviewers.empty:
            return out
        for region, part in self.reviewers.groupby("region", sort=True):
            known = part.loc[part["estimated"], "reliability"]
            out[str(region)] = {"reviewers": len(part), "estimated": len(known),
                                "median_reliability": round(float(known.median()), 4) if len(known) else None,
                                "below_0_2": int((known < 0.2).sum())}
        return out


def estimate_reliability(votes: pd.DataFrame, min_votes: int = MIN_VOTES) -> Reliability:
    """Reliability per (region, user) and each fitted pair's label posterior (see the module docstring).

    ``votes``: VOTE_COLUMNS, one row per vote (shape (n_votes, 5)). Returns reviewers (one row per region and user
    with a vote) and posteriors (one row per pair of an estimated region whose reviewers were fitted).
    """
    missing = [c for c in VOTE_COLUMNS if c not in votes.columns]
    if missing:
        raise ValueError(f"votes frame lacks column(s) {missing}; expected {VOTE_COLUMNS}")
    reviewer_parts, posterior_parts = [], []
    for region, part in votes.groupby("region", sort=True):
        reviewers, posteriors = _estimate_region(part, min_votes)
        reviewer_parts.append(reviewers.assign(region=region))
        if posteriors is not None:
            posterior_parts.append(posteriors.assign(region=region))
    reviewers = (pd.concat(reviewer_parts, ignore_index=True)[REVIEWER_COLUMNS] if reviewer_parts
                 else pd.DataFrame(columns=REVIEWER_COLUMNS).astype({"estimated": bool}))
    posteriors = (pd.concat(posterior_parts, ignore_index=True)[["region", "task", *LABELS]] if posterior_parts
                  else pd.DataFrame(columns=["region", "task", *LABELS]))
    return Reliability(reviewers=reviewers, posteriors=posteriors)


def _estimate_region(part: pd.DataFrame, min_votes: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """One region's reviewers (user, votes, accuracy, reliability, estimated) and its pairs' posteriors, or None
    when the region cannot be estimated."""
    counts = part.groupby("user").size()
    reviewers = pd.DataFrame({"user": counts.index, "votes": counts.to_numpy(), "accuracy": math.nan,
                              "reliability": math.nan, "estimated": False})
    fitted = part[part["user"].isin(counts[counts >= min_votes].index)]
    gold = fitted.dropna(subset=["gold"]).drop_duplicates("task").set_index("task")["gold"]
    gold = gold[gold.isin(set(fitted["label"]))]  # an answer nobody ever gave has no column to pin
    overlap = fitted.groupby("task")["user"].nunique().max() if len(fitted) else 0
    if fitted["user"].nunique() < 2 or (overlap < 2 and gold.empty):
        return reviewers, None

    from crowdkit.aggregation import DawidSkene  # lazy: crowd-kit imports scikit-learn (seconds), pages need neither

    data = fitted.rename(columns={"user": "worker"})[["task", "worker", "label"]].reset_index(drop=True)
    with warnings.catch_warnings():  # crowd-kit's pandas idioms (inplace=, copy=) warn on pandas 3; results unaffected
        warnings.filterwarnings("ignore", module=r"crowdkit\.")
        model = DawidSkene(n_iter=DS_ITERATIONS).fit(data, true_labels=gold if not gold.empty else None)
    priors = model.priors_.astype(float)
    labels = list(priors.index)
    p = priors.to_numpy()  # shape (K,): prior of each true label
    accuracy, reliability = {}, {}
    for worker, errors in model.errors_.groupby(level="worker", sort=False):
        # e[observed, true], shape (K, K); labels a reviewer never gave are rows of zeros
        e = errors.droplevel("worker").reindex(index=labels, columns=labels, fill_value=0.0).to_numpy(dtype=float)
        acc = float(np.diag(e) @ p)
        chance = float(p @ (e @ p))  # Σ_k prior_k · q_k, q = e @ prior: the reviewer's own label distribution
        accuracy[worker] = acc
        reliability[worker] = float(np.clip((acc - chance) / (1 - chance), 0.0, 1.0)) if chance < 1 - 1e-9 \
            else math.nan  # one label for everything: nothing to tell skill from habit
    reviewers["accuracy"] = reviewers["user"].map(accuracy).astype(float)
    reviewers["reliability"] = reviewers["user"].map(reliability).astype(float)
    reviewers["estimated"] = reviewers["reliability"].notna()
    probas = model.probas_.reindex(columns=list(LABELS), fill_value=0.0).astype(float)
    posteriors = probas.rename_axis("task").reset_index()
    log.info("reliability: %d of %d reviewers estimated in %s (%d pairs, %d gold)", int(reviewers["estimated"].sum()),
             len(reviewers), part["region"].iloc[0], fitted["task"].nunique(), len(gold))
    return reviewers, posteriors
