"""Reviewer reliability from the database: the votes training reads, estimated per region by
``rewards.reliability`` and keyed by (region code, user id), as ``collect.datasets.preference_rows`` looks it up.

The votes are the pairwise votes on train- and val-split prompts (the splits training and validation read; test
prompts stay out of everything training sees). Votes a ranking implies are left out, since a ranking is one
judgement, not k(k-1)/2 independent votes; so are imported votes, attributed to the import account, which
reviewed nothing (``rewards.quality`` leaves them out too). Both keep weight 1: a ranking row is weighted by its
author's reliability from their pairwise votes, an imported row counts as it does without weighting.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Pair, Prompt, Region, Split, Vote
from rewards.reliability import MIN_VOTES, VOTE_COLUMNS, Reliability, estimate_reliability

TRAINING_SPLITS = (Split.train, Split.val)


def vote_frame(session: Session, regions: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The votes ``rewards.reliability`` estimates from: region, task (pair id), user (user id), label, gold.

    One row per pairwise reviewer vote on a train- or val-split prompt of ``regions`` (None: every region).
    """
    stmt = (select(Region.code, Vote.pair_id, Vote.user_id, Vote.choice, Pair.is_gold, Pair.gold_choice)
            .join(Pair, Vote.pair_id == Pair.id).join(Prompt, Pair.prompt_id == Prompt.id)
            .join(Region, Prompt.region_id == Region.id)
            .where(Vote.ranking_id.is_(None), Vote.source != "import", Prompt.split.in_(TRAINING_SPLITS))
            .order_by(Vote.id))
    if regions is not None:
        stmt = stmt.where(Region.code.in_(regions))
    rows = [(code, pair_id, user_id, choice.value, gold.value if is_gold and gold is not None else None)
            for code, pair_id, user_id, choice, is_gold, gold in session.execute(stmt)]
    return pd.DataFrame(rows, columns=VOTE_COLUMNS)


def reviewer_reliability(session: Session, regions: tuple[str, ...] | None = None,
                         min_votes: int = MIN_VOTES) -> Reliability:
    """Each reviewer's reliability per region (``rewards.reliability.estimate_reliability``) from ``vote_frame``."""
    return estimate_reliability(vote_frame(session, regions), min_votes=min_votes)
