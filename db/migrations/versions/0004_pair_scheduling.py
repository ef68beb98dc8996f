"""scheduling: reviewers wanted and live assignments per pair, voted flag on assignments, the scheduler's indexes

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

# the partial-index predicates, spelled per backend as each spells the scheduler's queries (see db/models.py)
OPEN_PAIR = {"postgresql": "assigned < reviews_wanted AND NOT is_gold",
             "sqlite": "assigned < reviews_wanted AND is_gold = 0"}
GOLD_PAIR = {"postgresql": "is_gold", "sqlite": "is_gold = 1"}
OPEN_ASSIGNMENT = {"postgresql": "NOT voted AND NOT skipped", "sqlite": "voted = 0 AND skipped = 0"}
SHARED_PAIR = {"postgresql": "assigned >= 2", "sqlite": "assigned >= 2"}


def partial(where: dict[str, str]) -> dict:
    return {f"{dialect}_where": sa.text(clause) for dialect, clause in where.items()}


INDEXES = [  # name, table, columns, partial-index predicates per backend (None: a full index)
    ("ix_pairs_comparison", "pairs", ["region_id", "model_a_id", "model_b_id"], None),
    ("ix_pairs_open", "pairs", ["region_id", "model_a_id", "model_b_id", "id"], OPEN_PAIR),
    ("ix_pairs_open_oldest", "pairs", ["region_id", "id"], OPEN_PAIR),
    ("ix_pairs_gold", "pairs", ["region_id", "id"], GOLD_PAIR),
    ("ix_pairs_shared", "pairs", ["id"], SHARED_PAIR),
    ("ix_assignments_open", "assignments", ["user_id", "created_at", "id"], OPEN_ASSIGNMENT),
]


def upgrade() -> None:
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reviews_wanted", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("assigned", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("voted", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute("UPDATE pairs SET assigned = (SELECT count(*) FROM assignments "
               "WHERE assignments.pair_id = pairs.id AND NOT assignments.skipped)")
    op.execute(sa.text("UPDATE assignments SET voted = :yes WHERE EXISTS (SELECT 1 FROM votes "
                       "WHERE votes.pair_id = assignments.pair_id AND votes.user_id = assignments.user_id)")
               .bindparams(yes=True))
    for name, table, columns, where in INDEXES:
        op.create_index(name, table, columns, unique=False, **(partial(where) if where else {}))


def downgrade() -> None:
    for name, table, _, where in reversed(INDEXES):
        op.drop_index(name, table_name=table, **(partial(where) if where else {}))
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_column("voted")
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.drop_column("assigned")
        batch_op.drop_column("reviews_wanted")
