"""Ratings from human votes: per-version win-rates against base and parent, and Bradley–Terry ratings.

Pure DataFrame/numpy/scipy functions over the frames of ``db.queries``:

- ``counts``: one row per (region, week, model_a, model_b) with ``a_wins, b_wins, ties, both_bad``
  (``comparison_counts``; orientation is normalised here too, so model_a > model_b rows are fine). Counts may be
  weighted floats: the outcomes a ranking of k implies weigh 2/k each (``rewards.ranking``), so one ranking adds
  k-1 comparisons' worth to win-rates and to the Bradley–Terry likelihood;
- ``versions``: ``id, name, parent_id, base_id, round_number, ...`` (``versions_frame``).

Ties count half a win for each side. ``both_bad`` ("neither is usable") says nothing about which output is better,
so it never enters a win-rate or a rating; ``version_win_rates`` reports it beside them.

Example:
    >>> counts = pd.DataFrame({"region": ["en-US-austin"], "week": [pd.Timestamp("2024-06-03")], "model_a": [1],
    ...                        "model_b": [2], "a_wins": [10], "b_wins": [30], "ties": [0], "both_bad": [2]})
    >>> versions = pd.DataFrame({"id": [1, 2], "name": ["base", "r1"], "parent_id": pd.array([None, 1], "Int64"),
    ...                          "base_id": [1, 1], "round_number": pd.array([None, 1], "Int64")})
    >>> row = version_win_rates(counts, versions).iloc[0]
    >>> row["region"], row["opponent"], int(row["wins"]), int(row["losses"]), int(row["both_bad"]), float(row["rate"])
    ('All regions', 'base', 30, 10, 2, 0.75)
    >>> bt = bradley_terry(counts, versions, n_boot=50)
    >>> bt[bt.region == "All regions"][["version", "rating", "rank"]].round(1).values.tolist()
    [['r1', 1190.7, 1], ['base', 1000.0, 2]]
"""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.sparse import csr_array
from scipy.special import expit

from rewards.winrate import score_intervals

log = logging.getLogger(__name__)

ALL_REGIONS = "All regions"
OPPONENTS = ("base", "parent")
BASE_RATING = 1000.0
ELO_SCALE = 400 / np.log(10)  # 400 * log10(e): a 400-point gap means 10:1 odds, as in chess Elo
# L2 penalty on the natural-scale strengths, i.e. a N(0, 1/0.01) = N(0, 10^2) prior: far too weak to move ratings
# backed by tens of votes (30-10 moves by ~0.13 points) but it keeps the optimum finite and unique when a version
# won every vote or the comparison graph is disconnected (each component is then centred on 0 before anchoring).
BT_PENALTY = 1e-2

_COUNTS = ["a_wins", "b_wins", "ties", "both_bad"]
WIN_RATE_COLUMNS = ["region", "version_id", "version", "round_number", "opponent", "opponent_id", "opponent_version",
                    "n", "wins", "ties", "losses", "both_bad", "both_bad_share", "rate", "low", "high"]
RATING_COLUMNS = ["region", "version_id", "version", "rating", "low", "high", "games", "rank"]


def _canonical(counts: pd.DataFrame) -> pd.DataFrame:
    """Counts with model_a < model_b on every row (a_wins/b_wins swapped where needed)."""
    swap = counts["model_a"] > counts["model_b"]
    out = counts.copy()
    out["model_a"] = counts["model_a"].where(~swap, counts["model_b"]).astype("int64")
    out["model_b"] = counts["model_b"].where(~swap, counts["model_a"]).astype("int64")
    out["a_wins"] = counts["a_wins"].where(~swap, counts["b_wins"])
    out["b_wins"] = counts["b_wins"].where(~swap, counts["a_wins"])
    return out


def _with_all_regions(counts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Counts summed per (region, *keys, model_a, model_b), plus the same summed over regions as ``ALL_REGIONS``."""
    cells = ["model_a", "model_b"]
    per_region = counts.groupby(["region", *keys, *cells], as_index=False)[_COUNTS].sum()
    pooled = counts.groupby([*keys, *cells], as_index=False)[_COUNTS].sum().assign(region=ALL_REGIONS)
    return pd.concat([pooled, per_region], ignore_index=True)[["region", *keys, *cells, *_COUNTS]]


def _region_sort(frame: pd.DataFrame, then: list[str], ascending: list[bool] | None = None) -> pd.DataFrame:
    """Sort with ``ALL_REGIONS`` first, then regions by code, then ``then``."""
    order = frame.assign(_pooled=frame["region"] != ALL_REGIONS)
    ascending = [True, True, *(ascending or [True] * len(then))]
    order = order.sort_values(["_pooled", "region", *then], ascending=ascending, kind="mergesort")
    return order.drop(columns="_pooled").reset_index(drop=True)


def matchups(versions: pd.DataFrame) -> pd.DataFrame:
    """Every (non-base version, opponent kind, opponent id) a lead wants a win-rate for."""
    names = dict(zip(versions["id"].astype("int64"), versions["name"], strict=True))
    derived = versions[versions["id"] != versions["base_id"]]
    parts = []
    for kind, column in (("base", "base_id"), ("parent", "parent_id")):
        rows = derived[derived[column].notna()]
        parts.append(pd.DataFrame({
            "version_id": rows["id"].astype("int64"), "version": rows["name"],
            "round_number": rows["round_number"].astype("Int64"), "opponent": kind,
            "opponent_id": rows[column].astype("int64")}))
    matchups = pd.concat(parts, ignore_index=True)
    matchups["opponent_version"] = matchups["opponent_id"].map(names)
    return matchups


def version_win_rates(counts: pd.DataFrame, versions: pd.DataFrame, by: str | None = None,
                      confidence: float = 0.95) -> pd.DataFrame:
    """Win-rate of every non-base version against its base and its parent, per region and for ``ALL_REGIONS``.

    Only votes on pairs of exactly those two versions count, in either orientation. ``by="week"`` splits by the
    week the votes were cast (any other column of ``counts`` works the same way). A first-round version's parent is
    its base: its "parent" row repeats the "base" one. Matchups without a win, tie or loss are left out.

    Returns one row per (region, [by,] version, opponent) with ``WIN_RATE_COLUMNS`` (``by`` after ``region``);
    ``n = wins + ties + losses``, ``both_bad_share = both_bad / (n + both_bad)``, ``[low, high]`` the tie-aware
    Wilson interval of ``rewards.winrate``.
    """
    keys = [] if by is None else [by]
    if by is not None and by not in counts.columns:
        raise ValueError(f"by must be None or a column of counts ({', '.join(counts.columns)}), got {by!r}")
    columns = WIN_RATE_COLUMNS[:1] + keys + WIN_RATE_COLUMNS[1:]
    wanted = matchups(versions)
    if counts.empty or wanted.empty:
        return pd.DataFrame(columns=columns)
    cells = _with_all_regions(_canonical(counts), keys)
    wanted["model_a"] = np.minimum(wanted["version_id"], wanted["opponent_id"])
    wanted["model_b"] = np.maximum(wanted["version_id"], wanted["opponent_id"])
    rows = wanted.merge(cells, on=["model_a", "model_b"], how="inner")
    first = rows["version_id"] == rows["model_a"]
    rows["wins"] = rows["a_wins"].where(first, rows["b_wins"]).astype("float64")
    rows["losses"] = rows["b_wins"].where(first, rows["a_wins"]).astype("float64")
    rows["ties"] = rows["ties"].astype("float64")
    rows["both_bad"] = rows["both_bad"].astype("float64")
    rows["n"] = rows["wins"] + rows["ties"] + rows["losses"]
    rows = rows[rows["n"] > 0].copy()
    rows["both_bad_share"] = rows["both_bad"] / (rows["n"] + rows["both_bad"])
    rate, low, high = score_intervals(rows["wins"], rows["ties"], rows["losses"], confidence)
    rows["rate"], rows["low"], rows["high"] = rate, low, high
    rows["_opponent_order"] = rows["opponent"].map({kind: i for i, kind in enumerate(OPPONENTS)})
    rows = _region_sort(rows, [*keys, "version_id", "_opponent_order"])
    return rows[columns]


def _fit_strengths(i: np.ndarray, j: np.ndarray, w_ij: np.ndarray, w_ji: np.ndarray, k: int,
                   theta0: np.ndarray | None = None) -> np.ndarray:
    """Penalised Bradley–Terry MLE for B independent data sets at once; returns theta of shape (B, k).

    ``i, j``: (C,) version indices of the C compared pairs; ``w_ij, w_ji``: (B, C) wins of i over j and of j over i
    (ties already split in half). The objective is the sum of the B blocks' objectives and its gradient is
    block-separable, so one L-BFGS-B call fits a whole bootstrap.
    """
    b = w_ij.shape[0]
    n = w_ij + w_ji  # (B, C)
    cells = np.arange(len(i))
    # (k, C) sparse incidence, +1 at i and -1 at j: sends each pair's gradient to its two versions. Sparse, not a
    # dense matmul, because a threaded BLAS stalls on these tiny products when the CPUs are busy.
    signs = np.r_[np.ones(len(i)), -np.ones(len(j))]
    spread = csr_array((signs, (np.r_[i, j], np.r_[cells, cells])), shape=(k, len(i)))
    scale = 1.0 / max(float(n[0].sum()), 1.0)  # per-game units, so tolerances do not depend on the vote count

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta = x.reshape(b, k)
        d = theta[:, i] - theta[:, j]  # (B, C)
        # -log L = sum n * log(1 + e^d) - w_ij * d, with P(i beats j) = sigmoid(d)
        value = (n * np.logaddexp(0.0, d) - w_ij * d).sum() + BT_PENALTY / 2 * (theta * theta).sum()
        grad = (spread @ (n * expit(d) - w_ij).T).T + BT_PENALTY * theta  # (B, k)
        return value * scale, (grad * scale).ravel()

    x0 = np.zeros(b * k) if theta0 is None else np.asarray(theta0, dtype=float).ravel()
    res = minimize(objective, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10})
    if not res.success:
        log.warning("Bradley-Terry fit did not converge: %s", res.message)
    return res.x.reshape(b, k)


def _region_ratings(region: str, cells: pd.DataFrame, base_of: dict[int, int], n_boot: int, seed: int,
                    confidence: float) -> pd.DataFrame:
    ids = np.unique(np.concatenate([cells["model_a"].to_numpy(), cells["model_b"].to_numpy()]))
    i, j = np.searchsorted(ids, cells["model_a"]), np.searchsorted(ids, cells["model_b"])
    observed = cells[["a_wins", "b_wins", "ties"]].to_numpy(dtype=float)  # (C, 3)
    games = observed.sum(axis=1)  # (C,)
    theta = _fit_strengths(i, j, observed[None, :, 0] + observed[None, :, 2] / 2,
                           observed[None, :, 1] + observed[None, :, 2] / 2, len(ids))
    if n_boot:
        # a region's resamples depend only on the seed and its own name, not on which other regions exist
        rng = np.random.default_rng([seed, zlib.crc32(region.encode())])
        # weighted games (rankings count 2/k per implied outcome) are resampled as their effective number of
        # comparisons, rounded, and scaled back so each resample has the observed total weight
        draws = np.maximum(np.rint(games), 1).astype(np.int64)
        boot = rng.multinomial(draws, observed / games[:, None], size=(n_boot, len(games)))
        boot = boot.astype(float) * (games / draws)[None, :, None]  # (n_boot, C, 3)
        replicates = _fit_strengths(i, j, boot[..., 0] + boot[..., 2] / 2, boot[..., 1] + boot[..., 2] / 2, len(ids),
                                    theta0=np.repeat(theta, n_boot, axis=0))
        theta = np.vstack([theta, replicates])
    bases = [pos for pos, vid in enumerate(ids) if base_of.get(int(vid)) == int(vid)]
    anchor = bases if len(bases) == 1 else list(range(len(ids)))
    ratings = BASE_RATING + ELO_SCALE * (theta - theta[:, anchor].mean(axis=1, keepdims=True))  # (1 + n_boot, k)
    if n_boot:
        low, high = np.quantile(ratings[1:], [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    else:
        low = high = np.full(len(ids), np.nan)
    return pd.DataFrame({
        "region": region, "version_id": ids.astype("int64"), "rating": ratings[0], "low": low, "high": high,
        "games": np.bincount(i, games, len(ids)) + np.bincount(j, games, len(ids))})


def bradley_terry(counts: pd.DataFrame, versions: pd.DataFrame, n_boot: int = 200, seed: int = 0,
                  confidence: float = 0.95) -> pd.DataFrame:
    """Bradley–Terry ratings of every version per region and for ``ALL_REGIONS``, with bootstrap intervals.

    P(i beats j) = sigmoid(theta_i - theta_j), fitted by penalised maximum likelihood (``BT_PENALTY``) on the win
    matrix summed over weeks. Ratings are on the Elo scale, ``1000 + 400 * log10(e) * theta``, shifted so the base
    model sits at exactly 1000 (the mean of the region's versions when it has no single base). Intervals are
    percentile intervals over ``n_boot`` multinomial resamples of each pair's (a_wins, b_wins, ties), each
    anchored the same way, so a version's interval is that of its difference to the base. A version is rated in a
    region only where it was compared there; ``games`` counts its wins, losses and ties (weighted), and rank 1 is
    the best.

    Returns ``RATING_COLUMNS``, sorted by region (``ALL_REGIONS`` first) then rank.
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if counts.empty:
        return pd.DataFrame(columns=RATING_COLUMNS)
    cells = _with_all_regions(_canonical(counts), [])
    cells = cells[cells[["a_wins", "b_wins", "ties"]].sum(axis=1) > 0]
    base_of = dict(zip(versions["id"].astype("int64"), versions["base_id"].astype("int64"), strict=True))
    names = dict(zip(versions["id"].astype("int64"), versions["name"], strict=True))
    frames = [_region_ratings(region, group, base_of, n_boot, seed, confidence)
              for region, group in cells.groupby("region", sort=True)]
    if not frames:
        return pd.DataFrame(columns=RATING_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    out["version"] = out["version_id"].map(names)
    # rounded so versions a tie-only record puts level share a rank despite floating-point noise
    out["rank"] = out.groupby("region")["rating"].transform(
        lambda r: r.round(6).rank(ascending=False, method="min")).astype("int64")
    return _region_sort(out, ["rank", "version_id"])[RATING_COLUMNS]
