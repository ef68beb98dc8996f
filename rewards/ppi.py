"""Prediction-powered win-rates: human votes on a random sample of a comparison's pairs, the reward model on all.

A comparison (new version vs its parent or base, one region) has many pairs (prompt, new output, old output).
Reviewers vote on some of them: a voted pair's outcome ``Y`` is in [0, 1] (win 1, tie ½, loss 0, or the mean of
several votes). The reward model (RM) scores every pair, so each has a prediction ``Yhat = P(new preferred)``.
Prediction-powered inference (Angelopoulos et al., Science 2023; PPI++, arXiv:2311.01453) estimates the mean
outcome as

    rate = mean(λ·Yhat over the N unvoted pairs) + mean(Y − λ·Yhat over the n voted pairs)

The first term is cheap and precise (N is large); the second, the *rectifier*, measures how far the RM's scaled
predictions sit from what reviewers say and removes that bias. Its variance ``Var(Y − λ·Yhat)/n`` is below
``Var(Y)/n`` when the RM tracks the reviewers, so the interval narrows; λ in [0, 1] is tuned on the data
(``ppi_py``'s power tuning) and falls to 0 for a useless or anti-correlated RM, which gives back the classical
interval: PPI never costs votes, asymptotically.

Two conditions make the interval valid, and neither can be checked from the numbers alone:

* **The voted pairs must be a uniformly random sample of the comparison's pairs.** The rectifier estimates the RM's
  bias on the comparison only if the voted pairs are drawn like the unvoted ones. A review scheduler that picked the
  pairs the RM was least sure about, or favoured some prompts, would measure the RM's error on that slice instead;
  the correction would be wrong by an unknown amount and the 95% would no longer mean anything. (Choosing *which
  comparison* gets the next vote is fine; within a comparison, the pair must be random.)
* **The predictions must come from an RM that was not trained on these votes.** An RM fitted to the voted pairs
  agrees with them better than with the unvoted ones, so the rectifier underestimates its bias and
  ``Var(Y − λ·Yhat)`` its error: the interval comes out too narrow. Train on other rounds' votes (or cross-fit).

The caller passes the predictions of the *unvoted* pairs as ``yhat_unlabelled``; a voted pair appears only in
``y``/``yhat``. With no unvoted pair (N == 0) there is nothing to borrow from and the result is the classical
interval (λ = 0). When every voted outcome is the same (say 6 wins of 6) the CLT interval would collapse to a
point, so the human-only Wilson interval is returned instead, as ``rewards.winrate`` does.

Example:
    >>> rng = np.random.default_rng(0)
    >>> p = rng.beta(0.3, 0.2, 2200)                       # each pair's chance that reviewers prefer new
    >>> y, yhat = (rng.random(2200) < p).astype(float), np.clip(p + rng.normal(0, 0.1, 2200), 0, 1)
    >>> r = ppi_win_rate(y[:200], yhat[:200], yhat[200:])  # 200 voted pairs, 2000 scored only
    >>> r.n, r.n_unlabelled, r.effective_votes > 2 * r.n
    (200, 2000, True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from rewards.winrate import WinRate, _z, win_rate_counts

GOAL_HALF_WIDTH = 0.05  # ±5 points: the half-width at which leads read a win-rate as settled


@dataclass(frozen=True)
class PPIWinRate:
    """A comparison's prediction-powered win-rate, its interval, and what the reward model's predictions added."""

    rate: float
    low: float  # interval clipped to [0, 1]
    high: float
    n: int  # voted (labelled) pairs
    n_unlabelled: int  # pairs with a prediction and no vote
    lam: float  # tuned λ: 0 ignores the reward model, 1 trusts its scale fully
    effective_votes: float  # human-only votes whose classical interval would be as narrow as this one
    human: WinRate  # the voted pairs alone (tie-aware Wilson)
    agreement: float | None  # share of non-tie voted pairs where the RM picks the reviewers' side; None if none
    var_rectifier: float  # Var(w·(Y − λ·Yhat)) over voted pairs: the n-term of the variance
    var_predictions: float  # Var(Yhat) over unvoted pairs: times λ², the N-term
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        """Half the interval's width before clipping: ``z·sqrt(var_rectifier/n + λ²·var_predictions/N)``."""
        return _z(self.confidence) * math.sqrt(_variance(self.var_rectifier, self.var_predictions, self.lam,
                                                         self.n, self.n_unlabelled))

    def more_votes(self, goal: float = GOAL_HALF_WIDTH) -> int | None:
        """More votes until the half-width is ``goal`` or less (see ``votes_needed``); None when out of reach."""
        return votes_needed(self.var_rectifier, self.var_predictions, self.lam, self.n, self.n_unlabelled, goal,
                            self.confidence)

    def as_dict(self) -> dict:
        return asdict(self)


def ppi_win_rate(y, yhat, yhat_unlabelled, confidence: float = 0.95, weights=None) -> PPIWinRate:
    """Prediction-powered win-rate of voted outcomes ``y`` (shape (n,)) with the RM's ``yhat`` (n,) on the same pairs
    and ``yhat_unlabelled`` (N,) on the unvoted pairs only; ``weights`` (n,) are relative, rescaled to mean 1.

    Raises ValueError naming the problem: lengths differ, a value is NaN or outside [0, 1], fewer than 2 voted pairs.
    """
    y = _unit_interval("y", y)
    yhat = _unit_interval("yhat", yhat)
    yhat_u = _unit_interval("yhat_unlabelled", yhat_unlabelled)
    if len(y) != len(yhat):
        raise ValueError(f"y and yhat differ in length ({len(y)} vs {len(yhat)}): one prediction per voted pair")
    if len(y) < 2:
        raise ValueError(f"ppi_win_rate needs at least 2 voted pairs, got {len(y)}")
    w = _relative_weights(weights, len(y))
    z = _z(confidence)
    human = human_win_rate(y, w, confidence)
    agree = agreement(y, yhat)
    n, big_n = len(y), len(yhat_u)
    if np.ptp(y) == 0 or np.ptp(w * y) == 0:
        # the CLT interval of a constant sample is a point; Wilson's is not, and its width implies a variance
        var_wilson = n * ((human.high - human.low) / 2 / z) ** 2
        return PPIWinRate(human.rate, human.low, human.high, n, big_n, 0.0, float(n), human, agree,
                          var_wilson, _var(yhat_u), confidence)
    lam = _tuned_lambda(y, yhat, yhat_u, w) if big_n else 0.0
    var_rectifier = float(np.var(w * (y - lam * yhat)))
    var_predictions = _var(yhat_u)
    rate, low, high = _estimate(y, yhat, yhat_u, w, lam, confidence)
    effective_votes = float(np.var(w * y)) / _variance(var_rectifier, var_predictions, lam, n, big_n)
    return PPIWinRate(rate, max(0.0, low), min(1.0, high), n, big_n, lam, effective_votes, human, agree,
                      var_rectifier, var_predictions, confidence)


def votes_needed(var_rectifier: float, var_predictions: float, lam: float, n: int, n_unlabelled: int,
                 goal: float = GOAL_HALF_WIDTH, confidence: float = 0.95) -> int | None:
    """More voted pairs until the half-width ``z·sqrt(V_r/n' + λ²·V_p/N)`` reaches ``goal``; None when unreachable.

    Solves ``V_r/n' = (goal/z)² − λ²·V_p/N`` for n' with today's λ, variances and N. When the N-term alone is already
    ``goal`` or wider, no number of votes gets there with these predictions: None (more *scored* pairs would help,
    or human-only votes, whose count ``stopping.more_votes_human`` gives). Two approximations, of opposite sign and
    small while the added votes are few next to N: each voted pair leaves the unvoted pool, so the true N-term grows
    by N/(N − added); and the tuned λ shrinks a little as n/N grows, which lowers the variance.
    """
    if not 0 < goal < 0.5:
        raise ValueError(f"goal must be a half-width in (0, 0.5), got {goal}")
    budget = (goal / _z(confidence)) ** 2 - (lam**2 * var_predictions / n_unlabelled if n_unlabelled else 0.0)
    if budget <= 0:
        return None
    return max(0, math.ceil(var_rectifier / budget) - n)


def human_win_rate(y, weights=None, confidence: float = 0.95) -> WinRate:
    """Tie-aware Wilson win-rate of outcomes ``y`` in [0, 1] (vote means allowed), weighted by relative ``weights``.

    A pair's outcome is split into win, tie and loss mass with the same mean: y ≥ ½ gives 2y − 1 win and 2 − 2y tie,
    y < ½ gives 2y tie and 1 − 2y loss. For single votes (0, ½, 1) these are the plain counts; for a mean of several
    votes the variance comes out a little above the sample's, a conservative interval.
    """
    y = _unit_interval("y", y)
    w = _relative_weights(weights, len(y))
    lean = 2 * y - 1
    wins, ties, losses = (float(np.sum(w * m)) for m in (np.maximum(lean, 0), 1 - np.abs(lean), np.maximum(-lean, 0)))
    return win_rate_counts(wins, ties, losses, confidence)


def agreement(y, yhat) -> float | None:
    """Share of non-tie outcomes (y ≠ ½) whose side of ½ the prediction picks; a prediction of exactly ½ picks none.
    None when every outcome is a tie."""
    y, yhat = np.asarray(y, dtype=float), np.asarray(yhat, dtype=float)
    decisive = y != 0.5
    if not decisive.any():
        return None
    return float(np.mean(np.sign(yhat[decisive] - 0.5) == np.sign(y[decisive] - 0.5)))


def _unit_interval(name: str, values) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError(f"{name} has {int(np.isnan(x).sum())} NaN value(s)")
    outside = (x < 0) | (x > 1)
    if outside.any():
        raise ValueError(f"{name} has {int(outside.sum())} value(s) outside [0, 1], e.g. {x[outside][0]:g}")
    return x


def _relative_weights(weights, n: int) -> np.ndarray:
    """Weights rescaled to mean 1 (as ``ppi_py`` does), so ``n`` stays the number of voted pairs."""
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,):
        raise ValueError(f"weights has shape {w.shape}, expected ({n},): one weight per voted pair")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return w * n / w.sum()


def _var(x: np.ndarray) -> float:
    return float(np.var(x)) if len(x) else 0.0


def _variance(var_rectifier: float, var_predictions: float, lam: float, n: int, n_unlabelled: int) -> float:
    """The estimate's variance: rectifier term over n voted pairs plus imputed term over N unvoted pairs."""
    return var_rectifier / n + (lam**2 * var_predictions / n_unlabelled if n_unlabelled else 0.0)


def _tuned_lambda(y: np.ndarray, yhat: np.ndarray, yhat_u: np.ndarray, w: np.ndarray) -> float:
    """PPI++'s variance-minimising λ, clipped to [0, 1]: the formula of ``ppi_py.ppi_mean_ci(lam=None)``, which does
    not return the λ it picks; computed here so the result can report it."""
    n, big_n = len(y), len(yhat_u)
    theta = yhat_u.mean() + np.mean(w * (y - yhat))  # the λ = 1 estimate the gradients are taken at
    grads, grads_hat = w * (y - theta), w * (yhat - theta)
    var_hat = np.var(np.concatenate([grads_hat, yhat_u - theta]), ddof=1)
    if var_hat == 0:  # constant predictions carry no information
        return 0.0
    cov = np.mean((grads - grads.mean()) * (grads_hat - grads_hat.mean()))
    return float(np.clip(cov / ((1 + n / big_n) * var_hat), 0.0, 1.0))


def _estimate(y: np.ndarray, yhat: np.ndarray, yhat_u: np.ndarray, w: np.ndarray, lam: float,
              confidence: float) -> tuple[float, float, float]:
    """``(rate, low, high)`` from ``ppi_py`` at the given λ; without unvoted pairs, the classical CLT interval."""
    if not len(yhat_u):
        rate, half = float(np.mean(w * y)), _z(confidence) * float(np.std(w * y)) / math.sqrt(len(y))
        return rate, rate - half, rate + half
    import ppi_py  # 2.5 s to import: only when a prediction-powered estimate is computed

    rate = ppi_py.ppi_mean_pointestimate(y, yhat, yhat_u, lam=lam, w=w)
    low, high = ppi_py.ppi_mean_ci(y, yhat, yhat_u, alpha=1 - confidence, lam=lam, w=w)
    return float(np.squeeze(rate)), float(np.squeeze(low)), float(np.squeeze(high))
