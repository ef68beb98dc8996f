"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 14:54:29.072829
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "regions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("hemisphere", sa.String(length=5), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column("climate_by_month", sa.JSON(), nullable=False),
        sa.Column("local_terms", sa.JSON(), nullable=False),
        sa.Column("avoid_terms", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("hemisphere IN ('north', 'south')", name=op.f("regions_hemisphere_ck")),
        sa.PrimaryKeyConstraint("id", name=op.f("regions_pkey")),
        sa.UniqueConstraint("code", name=op.f("regions_code_uq")),
    )
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("tags_pkey")),
        sa.UniqueConstraint("name", name=op.f("tags_name_uq")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("users_pkey")),
        sa.UniqueConstraint("username", name=op.f("users_username_uq")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("audit_events_user_id_fkey"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("audit_events_pkey")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_created_at"), ["created_at"], unique=False)

    op.create_table(
        "prompts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column(
            "task_type",
            sa.Enum(
                "ad_copy",
                "meta_description",
                "social_post",
                "email_subject",
                name="task_type",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("month", sa.Integer(), nullable=True),
        sa.Column(
            "split",
            sa.Enum("train", "val", "test", name="split", native_enum=False, create_constraint=True, length=20),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("month IS NULL OR (month BETWEEN 1 AND 12)", name=op.f("prompts_month_ck")),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("prompts_region_id_fkey"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("prompts_pkey")),
        sa.UniqueConstraint("region_id", "content_hash", name=op.f("prompts_region_id_content_hash_uq")),
    )
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.create_index("ix_prompts_region_split_task", ["region_id", "split", "task_type"], unique=False)

    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "running",
                "succeeded",
                "failed",
                "cancelled",
                name="round_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("completed_stages", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("rounds_region_id_fkey"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("rounds_pkey")),
    )
    op.create_table(
        "user_regions",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("user_regions_region_id_fkey"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("user_regions_user_id_fkey"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "region_id", name=op.f("user_regions_pkey")),
    )
    op.create_table(
        "user_roles",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "reviewer",
                "engineer",
                "lead",
                "admin",
                name="role",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("user_roles_user_id_fkey"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "role", name=op.f("user_roles_pkey")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "running",
                "succeeded",
                "failed",
                "cancelled",
                name="job_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"], name=op.f("jobs_round_id_fkey"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("jobs_pkey")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_status_created", ["status", "created_at"], unique=False)

    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("base_model", sa.String(length=512), nullable=False),
        sa.Column("adapter_path", sa.String(length=1024), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("region_id", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum("ready", "retired", name="version_status", native_enum=False, create_constraint=True, length=20),
            nullable=False,
        ),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["model_versions.id"], name=op.f("model_versions_parent_id_fkey"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("model_versions_region_id_fkey"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["round_id"], ["rounds.id"], name=op.f("model_versions_round_id_fkey"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("model_versions_pkey")),
        sa.UniqueConstraint("name", name=op.f("model_versions_name_uq")),
    )
    op.create_table(
        "generations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("generations_model_version_id_fkey"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["prompt_id"], ["prompts.id"], name=op.f("generations_prompt_id_fkey"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("generations_pkey")),
    )
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.create_index("ix_generations_version_prompt", ["model_version_id", "prompt_id"], unique=False)

    op.create_table(
        "pairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column("generation_a_id", sa.Integer(), nullable=False),
        sa.Column("generation_b_id", sa.Integer(), nullable=False),
        sa.Column("model_a_id", sa.Integer(), nullable=False),
        sa.Column("model_b_id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("is_gold", sa.Boolean(), nullable=False),
        sa.Column(
            "gold_choice",
            sa.Enum(
                "a", "b", "tie", "both_bad", name="gold_choice", native_enum=False, create_constraint=True, length=20
            ),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("generation_a_id <> generation_b_id", name=op.f("pairs_distinct_generations_ck")),
        sa.ForeignKeyConstraint(
            ["generation_a_id"], ["generations.id"], name=op.f("pairs_generation_a_id_fkey"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["generation_b_id"], ["generations.id"], name=op.f("pairs_generation_b_id_fkey"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_a_id"], ["model_versions.id"], name=op.f("pairs_model_a_id_fkey"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["model_b_id"], ["model_versions.id"], name=op.f("pairs_model_b_id_fkey"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name=op.f("pairs_prompt_id_fkey"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["region_id"], ["regions.id"], name=op.f("pairs_region_id_fkey"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"], name=op.f("pairs_round_id_fkey"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pairs_pkey")),
        sa.UniqueConstraint(
            "generation_a_id", "generation_b_id", name=op.f("pairs_generation_a_id_generation_b_id_uq")
        ),
    )
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pairs_model_a_id"), ["model_a_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_pairs_model_b_id"), ["model_b_id"], unique=False)
        batch_op.create_index("ix_pairs_region_created", ["region_id", "created_at"], unique=False)

    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "shown_left",
            sa.Enum("a", "b", name="side", native_enum=False, create_constraint=True, length=20),
            nullable=False,
        ),
        sa.Column("skipped", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["pair_id"], ["pairs.id"], name=op.f("assignments_pair_id_fkey"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("assignments_user_id_fkey"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("assignments_pkey")),
        sa.UniqueConstraint("pair_id", "user_id", name=op.f("assignments_pair_id_user_id_uq")),
    )
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index("ix_assignments_user_created", ["user_id", "created_at"], unique=False)

    op.create_table(
        "votes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column(
            "choice",
            sa.Enum("a", "b", "tie", "both_bad", name="choice", native_enum=False, create_constraint=True, length=20),
            nullable=False,
        ),
        sa.Column(
            "strength",
            sa.Enum("slight", "clear", name="strength", native_enum=False, create_constraint=True, length=20),
            nullable=True,
        ),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("rewrite", sa.Text(), nullable=True),
        sa.Column(
            "rewrite_of",
            sa.Enum("a", "b", name="rewrite_of", native_enum=False, create_constraint=True, length=20),
            nullable=True,
        ),
        sa.Column(
            "shown_left",
            sa.Enum("a", "b", name="shown_left", native_enum=False, create_constraint=True, length=20),
            nullable=False,
        ),
        sa.Column("seconds_taken", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["pair_id"], ["pairs.id"], name=op.f("votes_pair_id_fkey"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["region_id"], ["regions.id"], name=op.f("votes_region_id_fkey"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("votes_user_id_fkey"), ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("votes_pkey")),
        sa.UniqueConstraint("pair_id", "user_id", name=op.f("votes_pair_id_user_id_uq")),
    )
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.create_index("ix_votes_region_created", ["region_id", "created_at"], unique=False)
        batch_op.create_index("ix_votes_user_created", ["user_id", "created_at"], unique=False)

    op.create_table(
        "examples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("vote_id", sa.Integer(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["prompt_id"], ["prompts.id"], name=op.f("examples_prompt_id_fkey"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["region_id"], ["regions.id"], name=op.f("examples_region_id_fkey"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(["vote_id"], ["votes.id"], name=op.f("examples_vote_id_fkey"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("examples_pkey")),
        sa.UniqueConstraint("region_id", "content_hash", name=op.f("examples_region_id_content_hash_uq")),
    )
    with op.batch_alter_table("examples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_examples_prompt_id"), ["prompt_id"], unique=False)

    op.create_table(
        "vote_tags",
        sa.Column("vote_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tag_id"], ["tags.id"], name=op.f("vote_tags_tag_id_fkey"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["vote_id"], ["votes.id"], name=op.f("vote_tags_vote_id_fkey"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("vote_id", "tag_id", name=op.f("vote_tags_pkey")),
    )
    op.create_table(
        "example_tags",
        sa.Column("example_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["example_id"], ["examples.id"], name=op.f("example_tags_example_id_fkey"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["tag_id"], ["tags.id"], name=op.f("example_tags_tag_id_fkey"), ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("example_id", "tag_id", name=op.f("example_tags_pkey")),
    )


def downgrade() -> None:
    op.drop_table("example_tags")
    op.drop_table("vote_tags")
    with op.batch_alter_table("examples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_examples_prompt_id"))

    op.drop_table("examples")
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_index("ix_votes_user_created")
        batch_op.drop_index("ix_votes_region_created")

    op.drop_table("votes")
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index("ix_assignments_user_created")

    op.drop_table("assignments")
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.drop_index("ix_pairs_region_created")
        batch_op.drop_index(batch_op.f("ix_pairs_model_b_id"))
        batch_op.drop_index(batch_op.f("ix_pairs_model_a_id"))

    op.drop_table("pairs")
    with op.batch_alter_table("generations", schema=None) as batch_op:
        batch_op.drop_index("ix_generations_version_prompt")

    op.drop_table("generations")
    op.drop_table("model_versions")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_created")

    op.drop_table("jobs")
    op.drop_table("user_roles")
    op.drop_table("user_regions")
    op.drop_table("rounds")
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.drop_index("ix_prompts_region_split_task")

    op.drop_table("prompts")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_created_at"))

    op.drop_table("audit_events")
    op.drop_table("users")
    op.drop_table("tags")
    op.drop_table("regions")
