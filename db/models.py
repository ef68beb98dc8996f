"""SQLAlchemy 2.0 models: the data model (README, "Data model and its guarantees"), with the constraints that
protect it.

Constraints and indexes are named explicitly (see ``NAMING``) so Alembic migrations are stable across
SQLite and PostgreSQL.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "%(table_name)s_%(column_0_N_name)s_uq",
    "ck": "%(table_name)s_%(constraint_name)s_ck",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class TaskType(str, enum.Enum):
    ad_copy = "ad_copy"
    meta_description = "meta_description"
    social_post = "social_post"
    email_subject = "email_subject"


class Split(str, enum.Enum):
    train = "train"
    val = "val"
    test = "test"


class Role(str, enum.Enum):
    reviewer = "reviewer"
    engineer = "engineer"
    lead = "lead"
    admin = "admin"


class Choice(str, enum.Enum):
    a = "a"
    b = "b"
    tie = "tie"
    both_bad = "both_bad"


class Strength(str, enum.Enum):
    slight = "slight"
    clear = "clear"


class Side(str, enum.Enum):
    a = "a"
    b = "b"


class VersionStatus(str, enum.Enum):
    ready = "ready"  # published: may be paired, served and used as a parent
    retired = "retired"


class JobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as VARCHAR + CHECK on every backend: adding a value is a plain migration, no ALTER TYPE.
    return Enum(cls, name=name, native_enum=False, create_constraint=True, length=20,
                values_callable=lambda e: [m.value for m in e])


user_regions = Table(
    "user_regions",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("region_id", ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True),
)

example_tags = Table(
    "example_tags",
    Base.metadata,
    Column("example_id", ForeignKey("examples.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="RESTRICT"), primary_key=True),
)

vote_tags = Table(
    "vote_tags",
    Base.metadata,
    Column("vote_id", ForeignKey("votes.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="RESTRICT"), primary_key=True),
)


class Region(Base):
    """A market with its own voice: locale, climate by month, local terms and references to avoid."""

    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    locale: Mapped[str] = mapped_column(String(16))
    country: Mapped[str] = mapped_column(String(2))
    currency: Mapped[str] = mapped_column(String(3))
    hemisphere: Mapped[str] = mapped_column(String(5))
    timezone: Mapped[str] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(Text, default="")
    climate_by_month: Mapped[dict[str, Any]] = mapped_column(default=dict)
    local_terms: Mapped[list[str]] = mapped_column(default=list)
    avoid_terms: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (CheckConstraint("hemisphere IN ('north', 'south')", name="hemisphere"),)


class User(Base):
    """A person who logs in; roles and regions decide what they may see and do."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # a system account (e.g. the one imported preference data is attributed to) can never log in
    is_system: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # bumped by every credential change (password reset, deactivation): sessions carry the epoch they began in,
    # and one from an older epoch is no longer valid
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    roles: Mapped[list[UserRole]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    regions: Mapped[list[Region]] = relationship(secondary=user_regions, lazy="selectin")

    @property
    def role_names(self) -> set[str]:
        return {r.role.value for r in self.roles}


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"), primary_key=True)


class Tag(Base):
    """An annotation tag (vocabulary is editable): on gold examples and on votes as reasons."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)  # slug, e.g. local_idiom
    label: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")


class Prompt(Base):
    """A marketer's brief for one region and task type; its split never changes once assigned."""

    __tablename__ = "prompts"

    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    task_type: Mapped[TaskType] = mapped_column(_enum(TaskType, "task_type"))
    text: Mapped[str] = mapped_column(Text)
    month: Mapped[int | None] = mapped_column(Integer)
    split: Mapped[Split] = mapped_column(_enum(Split, "split"))
    source: Mapped[str] = mapped_column(String(255), default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    region: Mapped[Region] = relationship(lazy="joined")

    __table_args__ = (
        UniqueConstraint("region_id", "content_hash"),
        CheckConstraint("month IS NULL OR (month BETWEEN 1 AND 12)", name="month"),
        Index("ix_prompts_region_split_task", "region_id", "split", "task_type"),
        # a brief's split follows its content across regions: import looks a hash up in every region at once
        Index("ix_prompts_content_hash", "content_hash"),
    )


class Example(Base):
    """A gold output for a prompt: imported, or a reviewer's rewrite (then ``vote_id`` is set)."""

    __tablename__ = "examples"

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(255), default="")
    vote_id: Mapped[int | None] = mapped_column(ForeignKey("votes.id", ondelete="SET NULL"))
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    prompt: Mapped[Prompt] = relationship(lazy="joined")
    tags: Mapped[list[Tag]] = relationship(secondary=example_tags, lazy="selectin")

    __table_args__ = (UniqueConstraint("region_id", "content_hash"),)


class ModelVersion(Base):
    """A policy: a base model (path or hub id) plus an optional LoRA adapter, with lineage and metrics."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    base_model: Mapped[str] = mapped_column(String(512))
    adapter_path: Mapped[str | None] = mapped_column(String(1024))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id", ondelete="SET NULL"))
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    status: Mapped[VersionStatus] = mapped_column(_enum(VersionStatus, "version_status"), default=VersionStatus.ready)
    stage: Mapped[str] = mapped_column(String(16), default="base", server_default="base")  # last stage trained
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    parent: Mapped[ModelVersion | None] = relationship(remote_side=[id])


class Generation(Base):
    """One sampled output of a model version for a prompt, with the decoding parameters and seed used."""

    __tablename__ = "generations"

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"))
    text: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seed: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)  # set for imported texts (dedup)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_generations_version_prompt", "model_version_id", "prompt_id"),)


# Partial-index predicates of the scheduler's hot queries. Each backend only uses a partial index when the query
# spells the condition the way the index does, and SQLAlchemy renders ``~col`` as ``NOT col`` on PostgreSQL but
# ``col = 0`` on SQLite, hence one spelling per backend.
OPEN_PAIR = {"postgresql": "assigned < reviews_wanted AND NOT is_gold",
             "sqlite": "assigned < reviews_wanted AND is_gold = 0"}
GOLD_PAIR = {"postgresql": "is_gold", "sqlite": "is_gold = 1"}
OPEN_ASSIGNMENT = {"postgresql": "NOT voted AND NOT skipped", "sqlite": "voted = 0 AND skipped = 0"}
REGION_ROUND = {"postgresql": "region_id IS NOT NULL", "sqlite": "region_id IS NOT NULL"}
ALL_REGIONS_ROUND = {"postgresql": "region_id IS NULL", "sqlite": "region_id IS NULL"}
# only the votes a ranking implies: a full index on ranking_id, NULL for nearly every vote, led PostgreSQL to scan
# all of it for "ranking_id IS NULL" (the reviewer's own latest vote, votes today) at a million votes
RANKING_VOTE = {"postgresql": "ranking_id IS NOT NULL", "sqlite": "ranking_id IS NOT NULL"}
SHARED_PAIR = {"postgresql": "assigned >= 2", "sqlite": "assigned >= 2"}  # judged by several: agreement
PAIRWISE_PAIR = {"postgresql": "rank_set_id IS NULL", "sqlite": "rank_set_id IS NULL"}
# evaluation pairs with a reward-model prediction: a few thousand among millions, read by the Dashboard and scheduler
PREDICTED_PAIR = {"postgresql": "predicted_a IS NOT NULL", "sqlite": "predicted_a IS NOT NULL"}
OPEN_RANK_SET = {"postgresql": "assigned < reviews_wanted", "sqlite": "assigned < reviews_wanted"}


def partial(where: dict[str, str]) -> dict[str, Any]:
    """``Index`` keyword arguments for a partial index with the per-backend predicates ``where``."""
    return {f"{dialect}_where": sql_text(clause) for dialect, clause in where.items()}


class Pair(Base):
    """Two generations for the same prompt, to be judged blind. Versions and region are denormalised for
    the hot queries (next pair for a reviewer, win-rates by version)."""

    __tablename__ = "pairs"

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    generation_a_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    generation_b_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    model_a_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True)
    model_b_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id", ondelete="SET NULL"))
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_choice: Mapped[Choice | None] = mapped_column(_enum(Choice, "gold_choice"))
    # how many reviewers should judge it (more than one on a share of pairs, to measure agreement), and how many
    # live (not skipped) assignments it has: the scheduler claims a pair with a conditional update on these two
    reviews_wanted: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    assigned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # set on the pairs a rank set implies (reviews_wanted 0, so never offered for pairwise review): the votes a
    # ranking expands to are stored on them, and every vote consumer reads them like any other pair's
    rank_set_id: Mapped[int | None] = mapped_column(ForeignKey("rank_sets.id", ondelete="CASCADE"))
    # the probability that reviewers prefer A, by the reward model of the round that made the pair (evaluation
    # pairs only): every pair has one, voted or not, which is what prediction-powered win-rates need
    predicted_a: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    prompt: Mapped[Prompt] = relationship(lazy="joined")
    generation_a: Mapped[Generation] = relationship(foreign_keys=[generation_a_id], lazy="joined")
    generation_b: Mapped[Generation] = relationship(foreign_keys=[generation_b_id], lazy="joined")

    __table_args__ = (
        # a pair of generations is reviewed pairwise once; a rank set holding the same two has its own pair
        Index("uq_pairs_generations", "generation_a_id", "generation_b_id", unique=True, **partial(PAIRWISE_PAIR)),
        UniqueConstraint("rank_set_id", "generation_a_id", "generation_b_id"),
        CheckConstraint("generation_a_id <> generation_b_id", name="distinct_generations"),
        CheckConstraint("predicted_a IS NULL OR (predicted_a >= 0 AND predicted_a <= 1)", name="predicted_a"),
        Index("ix_pairs_region_created", "region_id", "created_at"),
        # the scheduler's hot path: open pairs of one comparison in one region (a small slice of all pairs)
        Index("ix_pairs_comparison", "region_id", "model_a_id", "model_b_id"),
        Index("ix_pairs_open", "region_id", "model_a_id", "model_b_id", "id", **partial(OPEN_PAIR)),
        Index("ix_pairs_open_oldest", "region_id", "id", **partial(OPEN_PAIR)),
        Index("ix_pairs_gold", "region_id", "id", **partial(GOLD_PAIR)),
        Index("ix_pairs_shared", "id", **partial(SHARED_PAIR)),
        Index("ix_pairs_predicted", "region_id", "model_a_id", "model_b_id", **partial(PREDICTED_PAIR)),
    )


class Assignment(Base):
    """A pair put in front of one reviewer, with the side shown left drawn at random for them; or a rank set, with
    the order its candidates are shown in drawn at random for them (exactly one of the two is set)."""

    __tablename__ = "assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int | None] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    rank_set_id: Mapped[int | None] = mapped_column(ForeignKey("rank_sets.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    shown_left: Mapped[Side | None] = mapped_column(_enum(Side, "side"))
    # a rank set's candidate positions in the order this reviewer sees them, e.g. [2, 0, 3, 1]
    display_order: Mapped[list[int] | None] = mapped_column(JSON)
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    # set with the vote (and cleared by its undo) so a reviewer's open assignment is found without scanning
    # their whole history; the vote itself stays the truth
    voted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        UniqueConstraint("pair_id", "user_id"),
        UniqueConstraint("rank_set_id", "user_id"),
        CheckConstraint("(pair_id IS NOT NULL AND rank_set_id IS NULL AND shown_left IS NOT NULL)"
                        " OR (pair_id IS NULL AND rank_set_id IS NOT NULL AND display_order IS NOT NULL)",
                        name="pair_or_rank_set"),
        Index("ix_assignments_user_created", "user_id", "created_at"),
        Index("ix_assignments_open", "user_id", "created_at", "id", **partial(OPEN_ASSIGNMENT)),
    )


class Vote(Base):
    """One reviewer's judgement of one pair; at most one per (pair, reviewer), enforced by the database."""

    __tablename__ = "votes"

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    choice: Mapped[Choice] = mapped_column(_enum(Choice, "choice"))
    strength: Mapped[Strength | None] = mapped_column(_enum(Strength, "strength"))
    comment: Mapped[str] = mapped_column(Text, default="")
    rewrite: Mapped[str | None] = mapped_column(Text)
    rewrite_of: Mapped[Side | None] = mapped_column(_enum(Side, "rewrite_of"))
    shown_left: Mapped[Side] = mapped_column(_enum(Side, "shown_left"))
    seconds_taken: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16), default="review", server_default="review")  # or "import"
    # evidence the vote carries: 1 for a pairwise vote; 2/k for each pairwise outcome a ranking of k implies
    # (rewards.ranking), so one ranking counts k-1 comparisons' worth
    weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")
    ranking_id: Mapped[int | None] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    tags: Mapped[list[Tag]] = relationship(secondary=vote_tags, lazy="selectin")

    __table_args__ = (
        UniqueConstraint("pair_id", "user_id"),
        CheckConstraint("weight > 0", name="weight"),
        Index("ix_votes_region_created", "region_id", "created_at"),
        Index("ix_votes_user_created", "user_id", "created_at"),
        Index("ix_votes_ranking_id", "ranking_id", **partial(RANKING_VOTE)),
    )


class RankSet(Base):
    """k outputs of one brief (k = 3 or 4) to be ordered best to worst, blind; the ranking-mode twin of a pair.

    Its k(k-1)/2 implied pairs are stored with it (``Pair.rank_set_id``), so a ranking becomes ordinary votes."""

    __tablename__ = "rank_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    k: Mapped[int] = mapped_column(Integer)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id", ondelete="SET NULL"))
    reviews_wanted: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    assigned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    prompt: Mapped[Prompt] = relationship(lazy="joined")
    candidates: Mapped[list[RankCandidate]] = relationship(order_by="RankCandidate.position", lazy="selectin",
                                                           cascade="all, delete-orphan")

    __table_args__ = (
        CheckConstraint("k BETWEEN 3 AND 4", name="k"),
        Index("ix_rank_sets_open", "region_id", "id", **partial(OPEN_RANK_SET)),
        Index("ix_rank_sets_prompt", "prompt_id"),
    )


class RankCandidate(Base):
    """One output of a rank set at its stored position 0..k-1 (reviewers see their own shuffled order)."""

    __tablename__ = "rank_candidates"

    rank_set_id: Mapped[int] = mapped_column(ForeignKey("rank_sets.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"))

    generation: Mapped[Generation] = relationship(lazy="joined")

    __table_args__ = (UniqueConstraint("rank_set_id", "generation_id"),
                      CheckConstraint("position BETWEEN 0 AND 3", name="position"))


class Ranking(Base):
    """One reviewer's order of a rank set, best first, ties allowed: ``ranks[p]`` is the rank (1 = best) of the
    candidate at stored position p. Expanded into weighted votes on the set's pairs (``Vote.ranking_id``); at most
    one per (rank set, reviewer), enforced by the database."""

    __tablename__ = "rankings"

    id: Mapped[int] = mapped_column(primary_key=True)
    rank_set_id: Mapped[int] = mapped_column(ForeignKey("rank_sets.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    assignment_id: Mapped[int | None] = mapped_column(ForeignKey("assignments.id", ondelete="SET NULL"))
    ranks: Mapped[list[int]] = mapped_column(JSON)
    display_order: Mapped[list[int]] = mapped_column(JSON)  # as shown to this reviewer (position bias audits)
    seconds_taken: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16), default="review", server_default="review")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        UniqueConstraint("rank_set_id", "user_id"),
        Index("ix_rankings_user_created", "user_id", "created_at"),
    )


class Round(Base):
    """One pass of the loop (SFT → RM → DPO → RL → eval → publish) for a region or for all regions."""

    __tablename__ = "rounds"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(Integer)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "round_status"), default=JobStatus.queued)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    completed_stages: Mapped[list[str]] = mapped_column(default=list)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")  # per stage, eval
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # a round number is unique per region, and among all-regions rounds (region NULL: NULLs are never equal in a
    # plain unique index, hence two partial ones)
    __table_args__ = (
        Index("uq_rounds_region_number", "region_id", "number", unique=True, **partial(REGION_ROUND)),
        Index("uq_rounds_all_number", "number", unique=True, **partial(ALL_REGIONS_ROUND)),
    )


class Job(Base):
    """Work for the background worker, claimed from the database, with heartbeat, progress and log."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"), default=JobStatus.queued)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id", ondelete="SET NULL"))
    worker: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    log: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)


class AuditEvent(Base):
    """Who did what, when: imports, account changes, rounds started, versions published."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64), default="")
    entity_id: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


# --------------------------------------------------------------------------------- running totals (db/rollups.py)
# Votes summed per day once they can no longer be undone, so the dashboard reads thousands of rows instead of
# millions. Ids without foreign keys: a rebuild recomputes every row from the votes.


class RollupState(Base):
    """One row: the highest vote id summed into the rollups, and whether they must be recomputed from scratch."""

    __tablename__ = "rollup_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_vote_id: Mapped[int] = mapped_column(Integer, default=0)
    rebuild: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RollupComparison(Base):
    """Weighted votes per day, region, pair of versions (model_a < model_b as stored in the pair) and choice; no
    gold pairs, no self-pairs."""

    __tablename__ = "rollup_comparisons"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    region_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_a_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_b_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    choice: Mapped[str] = mapped_column(String(20), primary_key=True)
    votes: Mapped[float] = mapped_column(Float, default=0.0)  # summed vote weights: rankings count 2/k per pair


class RollupReviewer(Base):
    """Per day, region, reviewer and source: votes, decisive ones, left-side picks, gold votes and correct ones."""

    __tablename__ = "rollup_reviewers"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    region_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    votes: Mapped[int] = mapped_column(Integer, default=0)
    decisive_votes: Mapped[int] = mapped_column(Integer, default=0)
    left_picks: Mapped[int] = mapped_column(Integer, default=0)
    gold_votes: Mapped[int] = mapped_column(Integer, default=0)
    gold_correct: Mapped[int] = mapped_column(Integer, default=0)


class RollupSeconds(Base):
    """A histogram of seconds per vote for each reviewer, in tenths of a second (medians without the votes)."""

    __tablename__ = "rollup_seconds"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenths: Mapped[int] = mapped_column(Integer, primary_key=True)
    votes: Mapped[int] = mapped_column(Integer, default=0)


class RollupTag(Base):
    """Reason tags per region and the version they were given for (the winner; both sides on a tie or both bad)."""

    __tablename__ = "rollup_tags"

    region_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tag_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    votes: Mapped[int] = mapped_column(Integer, default=0)


class ApiKey(Base):
    """A key for the generation API: a SHA-256 hash (the secret is shown once), scoped to regions or all."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings so a leaked key can be recognised
    regions: Mapped[list[str]] = mapped_column(default=list)
    all_regions: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Deployment(Base):
    """Which model version the generation API serves for a region; changing it switches without a restart."""

    __tablename__ = "deployments"

    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AbTest(Base):
    """An A/B test handed to a campaign tool: per brief, a generic variant (base) and a tuned one (a version)."""

    __tablename__ = "ab_tests"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id", ondelete="RESTRICT"))
    generic_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"))
    tuned_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)  # decoding parameters, seed, constraints
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    region: Mapped[Region] = relationship(lazy="joined")


class AbVariant(Base):
    """One variant of one brief of an A/B test, with the campaign's results to date once imported."""

    __tablename__ = "ab_variants"

    id: Mapped[int] = mapped_column(primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("ab_tests.id", ondelete="CASCADE"))
    variant_key: Mapped[str] = mapped_column(String(255), unique=True)  # the id the campaign tool reports back
    row_key: Mapped[str] = mapped_column(String(128))  # the brief's id in the input file
    arm: Mapped[str] = mapped_column(String(8))  # generic | tuned
    task_type: Mapped[TaskType] = mapped_column(_enum(TaskType, "task_type"))
    brief: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    impressions: Mapped[int | None] = mapped_column(Integer)
    clicks: Mapped[int | None] = mapped_column(Integer)
    conversions: Mapped[int | None] = mapped_column(Integer)
    results_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("test_id", "row_key", "arm"),
        CheckConstraint("arm IN ('generic', 'tuned')", name="arm"),
        CheckConstraint("impressions >= 0 AND clicks >= 0 AND conversions >= 0", name="counts"),
        CheckConstraint("clicks <= impressions", name="clicks"),
    )
