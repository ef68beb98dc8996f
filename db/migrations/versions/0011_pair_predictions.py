"""the reward model's prediction on each evaluation pair (prediction-powered win-rates)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREDICTED = "predicted_a IS NULL OR (predicted_a >= 0 AND predicted_a <= 1)"
PREDICTED_PAIR = "predicted_a IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("predicted_a", sa.Float(), nullable=True))
        batch_op.create_check_constraint("pairs_predicted_a_ck", PREDICTED)
    op.create_index("ix_pairs_predicted", "pairs", ["region_id", "model_a_id", "model_b_id"],
                    postgresql_where=sa.text(PREDICTED_PAIR), sqlite_where=sa.text(PREDICTED_PAIR))


def downgrade() -> None:
    op.drop_index("ix_pairs_predicted", table_name="pairs")
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.drop_constraint("pairs_predicted_a_ck", type_="check")
        batch_op.drop_column("predicted_a")
