"""How reviews are spread: reviewers per pair, the share reviewed several times for agreement, gold pairs.

Read from the environment so an admin tunes them per deployment without a code change:

| variable | default | meaning |
|---|---|---|
| ``GEOALIGN_REVIEWS_PER_PAIR`` | 1 | reviewers who judge an ordinary pair |
| ``GEOALIGN_AGREEMENT_SHARE`` | 0.1 | share of new pairs judged by several reviewers, to measure agreement |
| ``GEOALIGN_AGREEMENT_REVIEWS`` | 3 | reviewers who judge one of those pairs |
| ``GEOALIGN_GOLD_RATE`` | 0.05 | chance that the next pair is a gold pair (known answer) the reviewer has not seen |
| ``GEOALIGN_TARGET_HALF_WIDTH`` | 0.05 | half-width leads need on a win-rate CI (±5 points) |
| ``GEOALIGN_SCHEDULER_TTL`` | 120 | seconds the scheduler reuses a region's vote counts (re-read in the background) |
| ``GEOALIGN_RANK_K`` | 2 | outputs per judgement: 2 is pairwise review, 3 or 4 ranks that many outputs of one brief |
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, fields

from db.errors import ConfigError
from db.settings import env_var

ENV = {
    "reviews_per_pair": "GEOALIGN_REVIEWS_PER_PAIR",
    "agreement_share": "GEOALIGN_AGREEMENT_SHARE",
    "agreement_reviews": "GEOALIGN_AGREEMENT_REVIEWS",
    "gold_rate": "GEOALIGN_GOLD_RATE",
    "target_half_width": "GEOALIGN_TARGET_HALF_WIDTH",
    "stats_ttl": "GEOALIGN_SCHEDULER_TTL",
    "rank_k": "GEOALIGN_RANK_K",
}
REVIEW_MODES = (2, 3, 4)  # pairwise, or rank 3 or 4 outputs (collect.ranking)


@dataclass(frozen=True)
class ReviewPolicy:
    reviews_per_pair: int = 1
    agreement_share: float = 0.1
    agreement_reviews: int = 3
    gold_rate: float = 0.05
    target_half_width: float = 0.05
    stats_ttl: float = 120.0
    rank_k: int = 2  # pairwise by default: rankings are a choice per deployment, not a silent change

    def __post_init__(self) -> None:
        if self.rank_k not in REVIEW_MODES:
            raise ConfigError(f"{ENV['rank_k']}={self.rank_k!r}: choose 2 (pairwise review), 3 or 4 (rank that many "
                              "outputs of one brief)")
        checks = {
            "reviews_per_pair": self.reviews_per_pair >= 1,
            "agreement_reviews": self.agreement_reviews >= 1,
            "agreement_share": 0.0 <= self.agreement_share <= 1.0,
            "gold_rate": 0.0 <= self.gold_rate <= 1.0,
            "target_half_width": 0.0 < self.target_half_width < 0.5,
            "stats_ttl": self.stats_ttl >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"{ENV[name]}={getattr(self, name)!r} is out of range")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReviewPolicy:
        values = {}
        for f in fields(cls):
            raw = env_var(ENV[f.name], environ)
            if raw in (None, ""):
                continue
            try:
                values[f.name] = int(raw) if f.type == "int" else float(raw)
            except ValueError as exc:
                raise ConfigError(f"{ENV[f.name]}={raw!r} is not a number") from exc
        return cls(**values)

    @property
    def ranks(self) -> bool:
        """Whether reviewers rank ``rank_k`` outputs at once instead of judging pairs."""
        return self.rank_k > 2

    def reviews_for_new_pair(self, rng: random.Random) -> int:
        """Reviewers wanted on a pair (or rank set) being created: most get ``reviews_per_pair``, a share more for
        agreement."""
        if self.agreement_share and rng.random() < self.agreement_share:
            return max(self.agreement_reviews, self.reviews_per_pair)
        return self.reviews_per_pair
