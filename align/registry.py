"""The model registry: model versions (base model + optional LoRA adapter) and their lineage."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import NotFound
from db.models import ModelVersion

BASE_VERSION = "base"


def ensure_base_version(session: Session, base_model: str) -> ModelVersion:
    """The root version ``base`` for ``base_model``, created on first use."""
    version = session.scalar(select(ModelVersion).where(ModelVersion.name == BASE_VERSION))
    if version is None:
        version = ModelVersion(name=BASE_VERSION, base_model=base_model, lineage={"kind": "base"})
        session.add(version)
        session.flush()
    return version


def get_version(session: Session, name: str) -> ModelVersion:
    """A model version by name, or a NotFound naming the versions that exist."""
    version = session.scalar(select(ModelVersion).where(ModelVersion.name == name))
    if version is None:
        known = ", ".join(session.scalars(select(ModelVersion.name).order_by(ModelVersion.id))) or "none"
        raise NotFound(f"unknown model version {name!r}; known: {known}")
    return version


def list_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id)))
