"""rank k outputs of one brief: rank sets, their candidates, rankings; weighted votes; rollup totals as floats

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAIRWISE = "rank_set_id IS NULL"
OPEN_RANK_SET = "assigned < reviews_wanted"
RANKING_VOTE = "ranking_id IS NOT NULL"
ASSIGNMENT_KIND = ("(pair_id IS NOT NULL AND rank_set_id IS NULL AND shown_left IS NOT NULL)"
                   " OR (pair_id IS NULL AND rank_set_id IS NOT NULL AND display_order IS NOT NULL)")


def upgrade() -> None:
    op.create_table(
        "rank_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("reviews_wanted", sa.Integer(), server_default="1", nullable=False),
        sa.Column("assigned", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("k BETWEEN 3 AND 4", name=op.f("rank_sets_k_ck")),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], name=op.f("rank_sets_prompt_id_fkey"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["region_id"], ["regions.id"], name=op.f("rank_sets_region_id_fkey"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"], name=op.f("rank_sets_round_id_fkey"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("rank_sets_pkey")),
    )
    op.create_index("ix_rank_sets_open", "rank_sets", ["region_id", "id"], postgresql_where=sa.text(OPEN_RANK_SET),
                    sqlite_where=sa.text(OPEN_RANK_SET))
    op.create_index("ix_rank_sets_prompt", "rank_sets", ["prompt_id"])
    op.create_table(
        "rank_candidates",
        sa.Column("rank_set_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("generation_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("position BETWEEN 0 AND 3", name=op.f("rank_candidates_position_ck")),
        sa.ForeignKeyConstraint(["rank_set_id"], ["rank_sets.id"], name=op.f("rank_candidates_rank_set_id_fkey"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["generation_id"], ["generations.id"],
                                name=op.f("rank_candidates_generation_id_fkey"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"],
                                name=op.f("rank_candidates_model_version_id_fkey"), ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("rank_set_id", "position", name=op.f("rank_candidates_pkey")),
        sa.UniqueConstraint("rank_set_id", "generation_id", name=op.f("rank_candidates_rank_set_id_generation_id_uq")),
    )

    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rank_set_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("pairs_rank_set_id_fkey"), "rank_sets", ["rank_set_id"], ["id"],
                                    ondelete="CASCADE")
        batch_op.drop_constraint("pairs_generation_a_id_generation_b_id_uq", type_="unique")
        batch_op.create_unique_constraint(batch_op.f("pairs_rank_set_id_generation_a_id_generation_b_id_uq"),
                                          ["rank_set_id", "generation_a_id", "generation_b_id"])
    op.create_index("uq_pairs_generations", "pairs", ["generation_a_id", "generation_b_id"], unique=True,
                    postgresql_where=sa.text(PAIRWISE), sqlite_where=sa.text(PAIRWISE))

    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rank_set_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("display_order", sa.JSON(), nullable=True))
        batch_op.alter_column("pair_id", existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column("shown_left", existing_type=sa.Enum("a", "b", name="side", native_enum=False,
                                                                  create_constraint=True, length=20),
                              nullable=True)
        batch_op.create_foreign_key(batch_op.f("assignments_rank_set_id_fkey"), "rank_sets", ["rank_set_id"],
                                    ["id"], ondelete="CASCADE")
        batch_op.create_unique_constraint(batch_op.f("assignments_rank_set_id_user_id_uq"), ["rank_set_id", "user_id"])
        batch_op.create_check_constraint("assignments_pair_or_rank_set_ck", ASSIGNMENT_KIND)

    op.create_table(
        "rankings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rank_set_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=True),
        sa.Column("ranks", sa.JSON(), nullable=False),
        sa.Column("display_order", sa.JSON(), nullable=False),
        sa.Column("seconds_taken", sa.Float(), nullable=True),
        sa.Column("source", sa.String(16), server_default="review", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["rank_set_id"], ["rank_sets.id"], name=op.f("rankings_rank_set_id_fkey"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("rankings_user_id_fkey"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["region_id"], ["regions.id"], name=op.f("rankings_region_id_fkey"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["assignment_id"], ["assignments.id"], name=op.f("rankings_assignment_id_fkey"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("rankings_pkey")),
        sa.UniqueConstraint("rank_set_id", "user_id", name=op.f("rankings_rank_set_id_user_id_uq")),
    )
    op.create_index("ix_rankings_user_created", "rankings", ["user_id", "created_at"])

    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("weight", sa.Float(), server_default="1.0", nullable=False))
        batch_op.add_column(sa.Column("ranking_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("votes_ranking_id_fkey"), "rankings", ["ranking_id"], ["id"],
                                    ondelete="CASCADE")
        batch_op.create_check_constraint("votes_weight_ck", "weight > 0")
        # partial: only ranking votes, so "ranking_id IS NULL" never tempts the planner into this index
        batch_op.create_index("ix_votes_ranking_id", ["ranking_id"], postgresql_where=sa.text(RANKING_VOTE),
                              sqlite_where=sa.text(RANKING_VOTE))

    # summed weights are fractions once rankings count 2/k per implied pair
    with op.batch_alter_table("rollup_comparisons", schema=None) as batch_op:
        batch_op.alter_column("votes", existing_type=sa.Integer(), type_=sa.Float(), existing_nullable=False)


def downgrade() -> None:
    # the rankings' votes have no pairwise meaning without their weights: they go with the rank sets' pairs
    op.execute("DELETE FROM votes WHERE ranking_id IS NOT NULL")
    op.execute("DELETE FROM assignments WHERE rank_set_id IS NOT NULL")
    op.execute("DELETE FROM pairs WHERE rank_set_id IS NOT NULL")
    with op.batch_alter_table("rollup_comparisons", schema=None) as batch_op:
        batch_op.alter_column("votes", existing_type=sa.Float(), type_=sa.Integer(), existing_nullable=False)
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_index("ix_votes_ranking_id")
        batch_op.drop_constraint("votes_weight_ck", type_="check")
        batch_op.drop_constraint("votes_ranking_id_fkey", type_="foreignkey")
        batch_op.drop_column("ranking_id")
        batch_op.drop_column("weight")
    op.drop_index("ix_rankings_user_created", table_name="rankings")
    op.drop_table("rankings")
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_constraint("assignments_pair_or_rank_set_ck", type_="check")
        batch_op.drop_constraint("assignments_rank_set_id_user_id_uq", type_="unique")
        batch_op.drop_constraint("assignments_rank_set_id_fkey", type_="foreignkey")
        batch_op.alter_column("shown_left", existing_type=sa.Enum("a", "b", name="side", native_enum=False,
                                                                  create_constraint=True, length=20),
                              nullable=False)
        batch_op.alter_column("pair_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("display_order")
        batch_op.drop_column("rank_set_id")
    op.drop_index("uq_pairs_generations", table_name="pairs", postgresql_where=sa.text(PAIRWISE),
                  sqlite_where=sa.text(PAIRWISE))
    with op.batch_alter_table("pairs", schema=None) as batch_op:
        batch_op.drop_constraint("pairs_rank_set_id_generation_a_id_generation_b_id_uq", type_="unique")
        batch_op.create_unique_constraint("pairs_generation_a_id_generation_b_id_uq",
                                          ["generation_a_id", "generation_b_id"])
        batch_op.drop_constraint("pairs_rank_set_id_fkey", type_="foreignkey")
        batch_op.drop_column("rank_set_id")
    op.drop_index("ix_rank_sets_prompt", table_name="rank_sets")
    op.drop_index("ix_rank_sets_open", table_name="rank_sets", postgresql_where=sa.text(OPEN_RANK_SET),
                  sqlite_where=sa.text(OPEN_RANK_SET))
    op.drop_table("rank_candidates")
    op.drop_table("rank_sets")
