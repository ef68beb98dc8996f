"""Which version the generation API serves per region (``geoalign deploy set``)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import NotFound, ValidationError
from db.lookups import get_region
from db.models import AuditEvent, Deployment, ModelVersion, VersionStatus


def deploy(session: Session, region_code: str, version_name: str, user_id: int | None = None,
           details: dict | None = None) -> None:
    """Serve ``version_name`` for ``region_code`` from now on (audited, with ``details`` beside the version)."""
    region = get_region(session, region_code)
    version = session.scalar(select(ModelVersion).where(ModelVersion.name == version_name))
    if version is None:
        raise NotFound(f"model version {version_name!r} does not exist")
    if version.status != VersionStatus.ready:
        raise ValidationError(f"model version {version_name!r} is {version.status.value}, not ready")
    current = session.get(Deployment, region.id)
    if current is None:
        session.add(Deployment(region_id=region.id, model_version_id=version.id))
    else:
        current.model_version_id, current.updated_at = version.id, datetime.now(timezone.utc)
    session.add(AuditEvent(user_id=user_id, action="deploy", entity="region", entity_id=region.id,
                           details={"version": version_name} | (details or {})))
    session.flush()
