"""Reviewer quality: agreement between reviewers, accuracy on gold pairs, position bias, speed.

Everything works on the votes frame of ``db.queries.vote_records`` (one row per human vote; columns vote_id,
pair_id, region, user, choice, shown_left, seconds_taken, is_gold, gold_choice, source, ...), so it needs neither
the database nor Streamlit. Votes with source "import" are left out everywhere: they were attributed to the import
account, which saw no sides and took no time, so they say nothing about how anyone reviews.

    votes = vote_records(session)
    agreement(votes)          # Krippendorff's alpha per region
    reviewer_quality(votes)   # one row per reviewer, with the reasons a reviewer is flagged
"""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
from scipy import stats

CATEGORIES = ("a", "b", "tie", "both_bad")  # nominal codes 0..3 in the reliability matrix
ALL_REGIONS = "All regions"
AGREEMENT_COLUMNS = ["region", "alpha", "pairs", "votes", "reviewers"]
QUALITY_COLUMNS = [
    "user", "votes", "regions", "gold_votes", "gold_correct", "gold_accuracy", "decisive_votes", "left_share",
    "position_p", "timed_votes", "median_seconds", "compared_votes", "majority_agreement", "flagged", "reasons",
]


def reviewer_votes(votes: pd.DataFrame) -> pd.DataFrame:
    """The votes that reflect a person's (or a simulated reviewer's) behaviour: all but source "import"."""
    return votes[votes["source"] != "import"]


def _multiply_reviewed(votes: pd.DataFrame) -> pd.DataFrame:
    """Votes on pairs that at least two reviewers judged."""
    per_pair = votes.groupby("pair_id")["user"].transform("nunique")
    return votes[per_pair >= 2]


def _alpha(votes: pd.DataFrame) -> float:
    """Nominal Krippendorff's alpha of votes on multiply-reviewed pairs; NaN when it says nothing.

    Undefined (NaN) with fewer than two pairs (one pair cannot show agreement beyond chance) and when every vote
    has the same choice (no variation: expected disagreement is zero, so alpha is 0/0).
    """
    if votes["pair_id"].nunique() < 2 or votes["choice"].nunique() < 2:
        return float("nan")
    codes = votes["choice"].map({c: i for i, c in enumerate(CATEGORIES)}).astype(float)
    # reliability matrix: reviewers × pairs, NaN where a reviewer did not judge a pair
    matrix = codes.groupby([votes["user"], votes["pair_id"]]).first().unstack("pair_id")
    return float(krippendorff.alpha(reliability_data=matrix.to_numpy(dtype=float), level_of_measurement="nominal",
                                    value_domain=list(range(len(CATEGORIES)))))


def agreement(votes: pd.DataFrame) -> pd.DataFrame:
    """Inter-reviewer agreement per region and over "All regions" (last row).

    Columns: region, alpha (nominal Krippendorff's alpha over choices a/b/tie/both_bad; NaN per ``_alpha``),
    pairs (pairs judged by >= 2 reviewers), votes (the votes on those pairs, i.e. the values alpha is computed
    from), reviewers (distinct reviewers among them). Gold pairs count like any other pair: their votes are real
    judgements, and gold pairs are the ones most often seen by several reviewers. Every region with a reviewer vote
    gets a row, with pairs 0 and alpha NaN when nobody's work overlapped there.
    """
    votes = reviewer_votes(votes)
    shared = _multiply_reviewed(votes)
    rows = []
    for region in sorted(votes["region"].unique()):
        part = shared[shared["region"] == region]
        rows.append({"region": region, "alpha": _alpha(part), "pairs": part["pair_id"].nunique(),
                     "votes": len(part), "reviewers": part["user"].nunique()})
    rows.append({"region": ALL_REGIONS, "alpha": _alpha(shared), "pairs": shared["pair_id"].nunique(),
                 "votes": len(shared), "reviewers": shared["user"].nunique()})
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def _left_picks(votes: pd.DataFrame) -> tuple[int, int]:
    """(decisive a/b votes, how many of them picked the side shown left)."""
    decisive = votes[votes["choice"].isin(("a", "b"))]
    return len(decisive), int((decisive["choice"] == decisive["shown_left"]).sum())


def _binom_p(left: int, n: int) -> float:
    return float(stats.binomtest(left, n, 0.5, alternative="two-sided").pvalue) if n else float("nan")


def position_bias(votes: pd.DataFrame) -> dict:
    """Over all reviewer votes: share of decisive votes for the left side, their count, two-sided binomial p."""
    n, left = _left_picks(reviewer_votes(votes))
    return {"left_share": left / n if n else float("nan"), "n": n, "p_value": _binom_p(left, n)}


def _majority_matches(votes: pd.DataFrame) -> pd.DataFrame:
    """Per vote on a multiply-reviewed pair: does it match the other reviewers' majority choice?

    The majority is the strictly most common choice among the *other* reviewers of the pair; a vote whose
    others are split evenly (1 a vs 1 b) has no majority to agree with and is left out.
    """
    shared = _multiply_reviewed(votes)
    if shared.empty:
        return pd.DataFrame({"user": [], "agrees": []})
    own = shared["choice"].map({c: i for i, c in enumerate(CATEGORIES)}).to_numpy()
    per_pair = pd.crosstab(shared["pair_id"], shared["choice"]).reindex(columns=list(CATEGORIES), fill_value=0)
    # others[i, c]: how many *other* reviewers of vote i's pair chose category c; shape (votes, 4)
    others = per_pair.loc[shared["pair_id"]].to_numpy() - np.eye(len(CATEGORIES), dtype=int)[own]
    top = others.max(axis=1, keepdims=True)
    has_majority = (others == top).sum(axis=1) == 1
    agrees = others.argmax(axis=1) == own
    return pd.DataFrame({"user": shared["user"].to_numpy()[has_majority], "agrees": agrees[has_majority]})


def reviewer_quality(
    votes: pd.DataFrame,
    min_gold: int = 5,
    min_gold_accuracy: float = 0.6,  # a careful reviewer gets most gold pairs right; 60% leaves room for hard ones
    min_decisive: int = 20,  # fewer left/right votes cannot show a side preference with any confidence
    max_position_p: float = 0.01,  # strict: with many reviewers some look biased by chance at p < 0.05
    min_timed: int = 10,
    min_median_seconds: float = 3.0,  # reading two pieces of marketing copy takes longer than this
    min_compared: int = 10,
    min_majority_agreement: float = 0.5,  # agreeing less often than not with colleagues is worth a look
) -> pd.DataFrame:
    """One row per reviewer (sorted by user) with quality measures, ``flagged`` and human-readable ``reasons``.

    A reviewer is flagged when any check fails, and each check needs enough evidence first:
    gold accuracy < ``min_gold_accuracy`` over >= ``min_gold`` gold votes; a binomial test of left vs right picks
    with p < ``max_position_p`` over >= ``min_decisive`` decisive (a/b) votes; median time per vote under
    ``min_median_seconds`` over >= ``min_timed`` timed votes; agreement with the other reviewers' majority below
    ``min_majority_agreement`` over >= ``min_compared`` comparable votes. Measures without data are NaN.

    Example:
        >>> quality = reviewer_quality(votes)
        >>> quality.loc[quality["flagged"], ["user", "reasons"]]
    """
    votes = reviewer_votes(votes)
    matches = _majority_matches(votes)
    rows = []
    for user, own in votes.groupby("user", sort=True):
        gold = own[own["is_gold"].astype(bool) & own["gold_choice"].notna()]
        gold_correct = int((gold["choice"] == gold["gold_choice"]).sum())
        decisive, left = _left_picks(own)
        seconds = own["seconds_taken"].dropna()
        agrees = matches.loc[matches["user"] == user, "agrees"]
        row = {
            "user": user, "votes": len(own), "regions": ", ".join(sorted(own["region"].unique())),
            "gold_votes": len(gold), "gold_correct": gold_correct,
            "gold_accuracy": gold_correct / len(gold) if len(gold) else float("nan"),
            "decisive_votes": decisive, "left_share": left / decisive if decisive else float("nan"),
            "position_p": _binom_p(left, decisive),
            "timed_votes": len(seconds), "median_seconds": float(seconds.median()) if len(seconds) else float("nan"),
            "compared_votes": len(agrees),
            "majority_agreement": float(agrees.mean()) if len(agrees) else float("nan"),
        }
        reasons = []
        if row["gold_votes"] >= min_gold and row["gold_accuracy"] < min_gold_accuracy:
            reasons.append(f"gold accuracy {row['gold_accuracy']:.0%} ({gold_correct}/{len(gold)}) "
                           f"below {min_gold_accuracy:.0%}")
        if decisive >= min_decisive and row["position_p"] < max_position_p:
            side, share = ("left", row["left_share"]) if left * 2 >= decisive else ("right", 1 - row["left_share"])
            reasons.append(f"picks the {side} side {share:.0%} of the time (p={row['position_p']:.2g})")
        if row["timed_votes"] >= min_timed and row["median_seconds"] < min_median_seconds:
            reasons.append(f"median {row['median_seconds']:.1f} s per vote, under {min_median_seconds:g} s")
        if row["compared_votes"] >= min_compared and row["majority_agreement"] < min_majority_agreement:
            reasons.append(f"agrees with other reviewers {row['majority_agreement']:.0%} of the time "
                           f"({int(agrees.sum())}/{len(agrees)})")
        rows.append(row | {"flagged": bool(reasons), "reasons": "; ".join(reasons)})
    frame = pd.DataFrame(rows, columns=QUALITY_COLUMNS)
    return frame.astype({"flagged": bool}) if not frame.empty else frame
