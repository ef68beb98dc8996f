"""import provenance

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 15:11:43.499125
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_generations_content_hash"), ["content_hash"], unique=False)

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_system", sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=16), server_default="review", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_column("source")

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("is_system")

    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_generations_content_hash"))
        batch_op.drop_column("content_hash")
