"""session epoch per user; round numbers unique per region

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROUND_INDEXES = [  # name, columns, partial-index predicate (the same on both backends)
    ("uq_rounds_region_number", ["region_id", "number"], "region_id IS NOT NULL"),
    ("uq_rounds_all_number", ["number"], "region_id IS NULL"),
]


def _renumber_duplicate_rounds() -> None:
    """Rounds that raced to the same number before this migration keep the first; later ones move past the max."""
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, region_id, number FROM rounds ORDER BY id")).all()
    seen: set[tuple[int | None, int]] = set()
    top: dict[int | None, int] = {}
    for _, region_id, number in rows:
        top[region_id] = max(top.get(region_id, 0), number)
    for round_id, region_id, number in rows:
        if (region_id, number) in seen:
            top[region_id] += 1
            number = top[region_id]
            bind.execute(sa.text("UPDATE rounds SET number = :n WHERE id = :id"), {"n": number, "id": round_id})
        seen.add((region_id, number))


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False))
    _renumber_duplicate_rounds()
    for name, columns, where in ROUND_INDEXES:
        op.create_index(name, "rounds", columns, unique=True,
                        postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def downgrade() -> None:
    for name, _, where in reversed(ROUND_INDEXES):
        op.drop_index(name, table_name="rounds", postgresql_where=sa.text(where), sqlite_where=sa.text(where))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("session_epoch")
