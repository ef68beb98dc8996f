"""Lift of a tuned variant over the generic one in a live campaign, with a confidence interval.

Each A/B test's results are summed per arm (every brief's generic variant against every brief's tuned variant),
and for each rate (click-through = clicks / impressions, conversion = conversions / impressions, and conversions
per click where no arm reports more conversions than clicks) the lift is ``tuned rate / generic rate − 1``. Its
95% interval is the Katz log interval of the rate ratio (``scipy.stats.contingency.relative_risk``); the p-value
is Fisher's exact test on the 2×2 table. Each arm's rate carries a Wilson interval. A lift needs at least one
event in each arm; otherwise the row says so and the interval is left empty.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy.stats import binomtest, fisher_exact
from scipy.stats.contingency import relative_risk

METRICS = (("click-through", "clicks", "impressions"), ("conversion", "conversions", "impressions"),
           ("conversion per click", "conversions", "clicks"))
KEYS = ["test", "region", "generic_version", "tuned_version"]
COLUMNS = [*KEYS, "metric", "briefs", "generic_events", "generic_n", "generic_rate", "tuned_events", "tuned_n",
           "tuned_rate", "lift", "low", "high", "p_value", "significant", "note"]


def _wilson(events: int, n: int, confidence: float) -> tuple[float, float]:
    ci = binomtest(events, n).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


def lift(generic_events: int, generic_n: int, tuned_events: int, tuned_n: int,
         confidence: float = 0.95) -> dict[str, float | str | bool]:
    """The relative lift of the tuned rate over the generic one, its interval and Fisher's exact p-value."""
    g_rate, t_rate = generic_events / generic_n, tuned_events / tuned_n
    out: dict = {"generic_rate": g_rate, "tuned_rate": t_rate, "lift": math.nan, "low": math.nan, "high": math.nan,
                 "p_value": float(fisher_exact([[tuned_events, tuned_n - tuned_events],
                                                [generic_events, generic_n - generic_events]]).pvalue),
                 "significant": False, "note": ""}
    out["generic_low"], out["generic_high"] = _wilson(generic_events, generic_n, confidence)
    out["tuned_low"], out["tuned_high"] = _wilson(tuned_events, tuned_n, confidence)
    if generic_events == 0 or tuned_events == 0:
        out["note"] = f"no {'generic' if generic_events == 0 else 'tuned'} events yet: lift undefined"
        return out
    ratio = relative_risk(tuned_events, tuned_n, generic_events, generic_n)
    ci = ratio.confidence_interval(confidence)
    out |= {"lift": float(ratio.relative_risk) - 1, "low": float(ci.low) - 1, "high": float(ci.high) - 1}
    out["significant"] = bool(out["low"] > 0 or out["high"] < 0)
    return out


def lift_table(variants: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per test and metric, the two arms' totals, rates and the lift with its interval.

    ``variants`` has one row per variant with results: ``KEYS``, ``row_key`` (the brief), ``arm`` (generic |
    tuned), ``impressions``, ``clicks`` and ``conversions``.
    """
    if variants.empty:
        return pd.DataFrame(columns=COLUMNS)
    sums = variants.groupby([*KEYS, "arm"], as_index=False)[["impressions", "clicks", "conversions"]].sum()
    briefs = variants.groupby(KEYS)["row_key"].nunique()
    rows = []
    for key, test in sums.groupby(KEYS, sort=False):
        arms = test.set_index("arm")
        if not {"generic", "tuned"} <= set(arms.index):
            continue  # results for one arm only: nothing to compare yet
        g, t = arms.loc["generic"], arms.loc["tuned"]
        for metric, events, base in METRICS:
            if min(g[base], t[base]) == 0 or g[events] > g[base] or t[events] > t[base]:
                continue  # no exposure yet, or (conversions per click) view-through conversions exceed clicks
            stats = lift(int(g[events]), int(g[base]), int(t[events]), int(t[base]), confidence)
            rows.append(dict(zip(KEYS, key, strict=True)) | {
                "metric": metric, "briefs": int(briefs.loc[key]), "generic_events": int(g[events]),
                "generic_n": int(g[base]), "tuned_events": int(t[events]), "tuned_n": int(t[base])} | stats)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=COLUMNS)
    return frame[[*COLUMNS, "generic_low", "generic_high", "tuned_low", "tuned_high"]]
