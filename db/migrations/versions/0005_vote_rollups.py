"""vote rollups: running totals per day for the dashboard

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _int(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table("rollup_state", sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("last_vote_id", sa.Integer(), nullable=False),
                    sa.Column("rebuild", sa.Boolean(), nullable=False),
                    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
                    sa.PrimaryKeyConstraint("id", name="rollup_state_pkey"))
    op.create_table("rollup_comparisons", sa.Column("day", sa.Date(), nullable=False), _int("region_id"),
                    _int("model_a_id"), _int("model_b_id"), sa.Column("choice", sa.String(20), nullable=False),
                    _int("votes"),
                    sa.PrimaryKeyConstraint("day", "region_id", "model_a_id", "model_b_id", "choice",
                                            name="rollup_comparisons_pkey"))
    op.create_table("rollup_reviewers", sa.Column("day", sa.Date(), nullable=False), _int("region_id"),
                    _int("user_id"), sa.Column("source", sa.String(16), nullable=False), _int("votes"),
                    _int("decisive_votes"), _int("left_picks"), _int("gold_votes"), _int("gold_correct"),
                    sa.PrimaryKeyConstraint("day", "region_id", "user_id", "source", name="rollup_reviewers_pkey"))
    op.create_table("rollup_seconds", _int("user_id"), _int("tenths"), _int("votes"),
                    sa.PrimaryKeyConstraint("user_id", "tenths", name="rollup_seconds_pkey"))
    op.create_table("rollup_tags", _int("region_id"), _int("model_id"), _int("tag_id"), _int("votes"),
                    sa.PrimaryKeyConstraint("region_id", "model_id", "tag_id", name="rollup_tags_pkey"))


def downgrade() -> None:
    for table in ("rollup_tags", "rollup_seconds", "rollup_reviewers", "rollup_comparisons", "rollup_state"):
        op.drop_table(table)
