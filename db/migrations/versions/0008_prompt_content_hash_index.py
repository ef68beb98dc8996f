"""prompt content hash index: a brief's split is looked up by its content in every region

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # the (region_id, content_hash) unique index leads with the region, so it cannot serve a lookup by hash alone
    op.create_index("ix_prompts_content_hash", "prompts", ["content_hash"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_prompts_content_hash", table_name="prompts")
