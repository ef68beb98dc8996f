"""The model registry: model versions (base model + optional LoRA adapter), their lineage and the rounds that
make them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import NotFound
from db.lookups import get_region
from db.models import ModelVersion, Region, Round

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


def get_round(session: Session, round_id: int) -> Round:
    """A round by id, or a NotFound."""
    rnd = session.get(Round, round_id)
    if rnd is None:
        raise NotFound(f"round {round_id} does not exist")
    return rnd


def region_profile(region: Region) -> dict:
    """What generating in a region's voice needs of it, as a plain dict (name, locale, terms, climate)."""
    return {"code": region.code, "name": region.name, "locale": region.locale,
            "avoid_terms": list(region.avoid_terms or []), "local_terms": list(region.local_terms or []),
            "climate_by_month": dict(region.climate_by_month or {})}


def generation_target(session: Session, version_name: str, region_code: str | None = None) -> tuple[dict, dict | None]:
    """A version's weights (name, base_model, adapter) and, given a code, its region's ``region_profile``.

    Plain dicts, so that generation can run after the session closes.
    """
    version = session.scalar(select(ModelVersion).where(ModelVersion.name == version_name))
    if version is None:
        known = ", ".join(session.scalars(select(ModelVersion.name).order_by(ModelVersion.id))) or "none"
        raise NotFound(f"model version {version_name!r} does not exist (known: {known})")
    region = region_profile(get_region(session, region_code)) if region_code is not None else None
    return {"name": version.name, "base_model": version.base_model, "adapter": version.adapter_path}, region
