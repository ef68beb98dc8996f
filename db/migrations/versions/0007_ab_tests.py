"""A/B tests: generic vs tuned variants per brief, and the campaign results imported back

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ab_tests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column("generic_version_id", sa.Integer(), nullable=False),
        sa.Column("tuned_version_id", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["region_id"], ["regions.id"], name="ab_tests_region_id_fkey", ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["generic_version_id"], ["model_versions.id"],
                                name="ab_tests_generic_version_id_fkey", ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["tuned_version_id"], ["model_versions.id"],
                                name="ab_tests_tuned_version_id_fkey", ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name="ab_tests_pkey"),
        sa.UniqueConstraint("name", name="ab_tests_name_uq"),
    )
    op.create_table(
        "ab_variants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("test_id", sa.Integer(), nullable=False),
        sa.Column("variant_key", sa.String(length=255), nullable=False),
        sa.Column("row_key", sa.String(length=128), nullable=False),
        sa.Column("arm", sa.String(length=8), nullable=False),
        sa.Column("task_type", sa.Enum("ad_copy", "meta_description", "social_post", "email_subject",
                                       name="task_type", native_enum=False, create_constraint=True, length=20),
                  nullable=False),
        sa.Column("brief", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("impressions", sa.Integer(), nullable=True),
        sa.Column("clicks", sa.Integer(), nullable=True),
        sa.Column("conversions", sa.Integer(), nullable=True),
        sa.Column("results_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("arm IN ('generic', 'tuned')", name="ab_variants_arm_ck"),
        sa.CheckConstraint("impressions >= 0 AND clicks >= 0 AND conversions >= 0", name="ab_variants_counts_ck"),
        sa.CheckConstraint("clicks <= impressions", name="ab_variants_clicks_ck"),
        sa.ForeignKeyConstraint(["test_id"], ["ab_tests.id"], name="ab_variants_test_id_fkey", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="ab_variants_pkey"),
        sa.UniqueConstraint("variant_key", name="ab_variants_variant_key_uq"),
        sa.UniqueConstraint("test_id", "row_key", "arm", name="ab_variants_test_id_row_key_arm_uq"),
    )


def downgrade() -> None:
    op.drop_table("ab_variants")
    op.drop_table("ab_tests")
