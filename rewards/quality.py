"""Reviewer quality: agreement between reviewers, accuracy on gold pairs, position bias, speed.

Two ways in, the same numbers out:

* the votes frame of ``db.queries.vote_records`` (one row per human vote; columns vote_id, pair_id, region, user,
  choice, shown_left, seconds_taken, is_gold, gold_choice, source, ...): ``agreement(votes)``,
  ``reviewer_quality(votes)``, ``position_bias(votes)``; simple, for tests and small databases;
* at scale, what the database already summed up: ``db.queries.reviewer_activity`` (counts per reviewer and
  region), ``seconds_medians`` and ``shared_votes`` (votes on the most recent multiply-reviewed pairs), fed to
  ``reviewer_quality_from`` and ``position_bias_from``; ``summarize(votes)`` builds the same three from a votes
  frame, which is how the two ways are kept equal.

Votes with source "import" are left out everywhere: they were attributed to the import account, which saw no
sides and took no time, so they say nothing about how anyone reviews.
"""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
from scipy import stats

CATEGORIES = ("a", "b", "tie", "both_bad")  # nominal codes 0..3 in the reliability matrix
ALL_REGIONS = "All regions"
ACTIVITY_COLUMNS = ["user", "region", "votes", "decisive_votes", "left_picks", "gold_votes", "gold_correct"]
AGREEMENT_COLUMNS = ["region", "alpha", "pairs", "votes", "reviewers"]
QUALITY_COLUMNS = [
    "user", "votes", "regions", "gold_votes", "gold_correct", "gold_accuracy", "decisive_votes", "left_share",
    "position_p", "timed_votes", "median_seconds", "compared_votes", "majority_agreement", "flagged", "reasons",
]


def reviewer_votes(votes: pd.DataFrame) -> pd.DataFrame:
    """The votes that reflect a person's (or a simulated reviewer's) behaviour: all but source "import" (frames
    without a source column come from queries that left those out already)."""
    return votes[votes["source"] != "import"] if "source" in votes.columns else votes


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
    """Two-sided exact binomial p-value of ``left`` of ``n`` against 1/2. The null is symmetric, so it is twice the
    smaller tail: what ``scipy.stats.binomtest`` returns (to 1e-15), at a hundredth of its cost per reviewer."""
    return float(min(1.0, 2 * stats.binom.cdf(min(left, n - left), n, 0.5))) if n else float("nan")


def position_bias(votes: pd.DataFrame) -> dict:
    """Over all reviewer votes: share of decisive votes for the left side, their count, two-sided binomial p."""
    return position_bias_from(summarize(votes)[0])


def position_bias_from(activity: pd.DataFrame) -> dict:
    n, left = int(activity["decisive_votes"].sum()), int(activity["left_picks"].sum())
    return {"left_share": left / n if n else float("nan"), "n": n, "p_value": _binom_p(left, n)}


def summarize(votes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A votes frame as the database sums it up: (activity per reviewer and region, median seconds per reviewer,
    votes on multiply-reviewed pairs) — the inputs of ``reviewer_quality_from``."""
    votes = reviewer_votes(votes)
    decisive = votes["choice"].isin(("a", "b"))
    gold = votes["is_gold"].astype(bool) & votes["gold_choice"].notna()
    parts = votes.assign(votes=1, decisive_votes=decisive.astype(int),
                         left_picks=(decisive & (votes["choice"] == votes["shown_left"])).astype(int),
                         gold_votes=gold.astype(int), gold_correct=(gold & (votes["choice"] == votes["gold_choice"]))
                         .astype(int))
    activity = parts.groupby(["user", "region"], as_index=False)[ACTIVITY_COLUMNS[2:]].sum()
    timed = votes.dropna(subset=["seconds_taken"])
    medians = timed.groupby("user", as_index=False).agg(median_seconds=("seconds_taken", "median"),
                                                        timed_votes=("seconds_taken", "size"))
    shared = _multiply_reviewed(votes)[["pair_id", "region", "user", "choice"]]
    return activity[ACTIVITY_COLUMNS], medians, shared.reset_index(drop=True)


def _majority_matches(votes: pd.DataFrame) -> pd.DataFrame:
    """Per vote on a multiply-reviewed pair: does it match the other reviewers' majority choice?

    The majority is the strictly most common choice among the *other* reviewers of the pair; a vote whose
    others are split evenly (1 a vs 1 b) has no majority to agree with and is left out.
    """
    shared = _multiply_reviewed(votes)
    if shared.empty:
        return pd.DataFrame({"user": [], "agrees": []})
    own = shared["choice"].map({c: i for i, c in enumerate(CATEGORIES)}).to_numpy()
    per_pair = (shared.groupby(["pair_id", "choice"]).size().unstack(fill_value=0)
                .reindex(columns=list(CATEGORIES), fill_value=0))
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
    return reviewer_quality_from(*summarize(votes), min_gold=min_gold, min_gold_accuracy=min_gold_accuracy,
                                 min_decisive=min_decisive, max_position_p=max_position_p, min_timed=min_timed,
                                 min_median_seconds=min_median_seconds, min_compared=min_compared,
                                 min_majority_agreement=min_majority_agreement)


def reviewer_quality_from(
    activity: pd.DataFrame,
    medians: pd.DataFrame,
    shared: pd.DataFrame,
    min_gold: int = 5,
    min_gold_accuracy: float = 0.6,
    min_decisive: int = 20,
    max_position_p: float = 0.01,
    min_timed: int = 10,
    min_median_seconds: float = 3.0,
    min_compared: int = 10,
    min_majority_agreement: float = 0.5,
) -> pd.DataFrame:
    """``reviewer_quality`` from the summed-up inputs (see ``summarize``); one row per reviewer in ``activity``."""
    matches = _majority_matches(shared)
    agreed = matches.groupby("user")["agrees"].agg(["sum", "size"]) if not matches.empty else None
    times = medians.set_index("user") if not medians.empty else None
    totals = activity.groupby("user", sort=True).agg(
        votes=("votes", "sum"), regions=("region", lambda r: ", ".join(sorted(set(r)))),
        gold_votes=("gold_votes", "sum"), gold_correct=("gold_correct", "sum"),
        decisive=("decisive_votes", "sum"), left=("left_picks", "sum"))
    rows = []
    for user, t in zip(totals.index, totals.itertuples(index=False), strict=True):
        gold_votes, gold_correct, decisive, left = int(t.gold_votes), int(t.gold_correct), int(t.decisive), int(t.left)
        timed = int(times.at[user, "timed_votes"]) if times is not None and user in times.index else 0
        agreed_n, compared = ((int(agreed.at[user, "sum"]), int(agreed.at[user, "size"]))
                              if agreed is not None and user in agreed.index else (0, 0))
        row = {
            "user": user, "votes": int(t.votes), "regions": t.regions,
            "gold_votes": gold_votes, "gold_correct": gold_correct,
            "gold_accuracy": gold_correct / gold_votes if gold_votes else float("nan"),
            "decisive_votes": decisive, "left_share": left / decisive if decisive else float("nan"),
            "position_p": _binom_p(left, decisive),
            "timed_votes": timed,
            "median_seconds": float(times.at[user, "median_seconds"]) if timed else float("nan"),
            "compared_votes": compared,
            "majority_agreement": agreed_n / compared if compared else float("nan"),
        }
        reasons = []
        if gold_votes >= min_gold and row["gold_accuracy"] < min_gold_accuracy:
            reasons.append(f"gold accuracy {row['gold_accuracy']:.0%} ({gold_correct}/{gold_votes}) "
                           f"below {min_gold_accuracy:.0%}")
        if decisive >= min_decisive and row["position_p"] < max_position_p:
            side, share = ("left", row["left_share"]) if left * 2 >= decisive else ("right", 1 - row["left_share"])
            reasons.append(f"picks the {side} side {share:.0%} of the time (p={row['position_p']:.2g})")
        if timed >= min_timed and row["median_seconds"] < min_median_seconds:
            reasons.append(f"median {row['median_seconds']:.1f} s per vote, under {min_median_seconds:g} s")
        if compared >= min_compared and row["majority_agreement"] < min_majority_agreement:
            reasons.append(f"agrees with other reviewers {row['majority_agreement']:.0%} of the time "
                           f"({agreed_n}/{compared})")
        rows.append(row | {"flagged": bool(reasons), "reasons": "; ".join(reasons)})
    frame = pd.DataFrame(rows, columns=QUALITY_COLUMNS)
    return frame.astype({"flagged": bool}) if not frame.empty else frame
