"""pair scheduling: reviewers wanted per pair, live assignment count, open-pairs index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "assigned < reviews_wanted AND NOT is_gold"
INDEXES = [
    ("ix_pairs_open", ["region_id", "model_a_id", "model_b_id", "id"], OPEN),
    ("ix_pairs_open_oldest", ["region_id", "id"], OPEN),
    ("ix_pairs_gold", ["region_id", "id"], "is_gold"),
]


def upgrade() -> None:
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reviews_wanted", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("assigned", sa.Integer(), server_default="0", nullable=False))
    op.execute("UPDATE pairs SET assigned = (SELECT count(*) FROM assignments "
               "WHERE assignments.pair_id = pairs.id AND NOT assignments.skipped)")
    for name, columns, where in INDEXES:
        op.create_index(name, "pairs", columns, unique=False, postgresql_where=sa.text(where),
                        sqlite_where=sa.text(where))


def downgrade() -> None:
    for name, _, where in INDEXES:
        op.drop_index(name, table_name="pairs", postgresql_where=sa.text(where), sqlite_where=sa.text(where))
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.drop_column("assigned")
        batch_op.drop_column("reviews_wanted")
