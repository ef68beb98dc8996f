"""Promote a decided winner to serving: the Rounds page's "Promote to serving" and ``geoalign deploy promote``.

A version is promoted for a region only when the stopping rule has decided that it beats its parent there (the 95%
lower bound of its win-rate above 50%: prediction-powered where the round's evaluation pairs allow, else human
votes alone; ``rewards.decisions``). Promotion then runs ``align.deploy.deploy``, the code of ``geoalign deploy set``,
and its audit event records the verdict it rested on. ``deploy set`` itself stays ungated: an engineer's override.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from align.deploy import deploy
from collect.auth import CurrentUser, require
from collect.scheduler import Target, count_votes, target_evidence
from db.errors import NotFound, ValidationError
from db.lookups import get_region
from db.models import ModelVersion
from rewards.stopping import Verdict

PROMOTE_ROLES = ("engineer", "admin")


def promotion_verdict(session: Session, version_name: str, region_code: str) -> Verdict:
    """The stopping rule's verdict on ``version_name`` against its parent in ``region_code``."""
    region = get_region(session, region_code)
    version = session.scalar(select(ModelVersion).where(ModelVersion.name == version_name))
    if version is None:
        raise NotFound(f"model version {version_name!r} does not exist")
    if version.parent is None:
        raise ValidationError(f"{version_name} is a base model: there is no parent for it to beat")
    target = count_votes(session, [Target(region.id, version.id, version.parent.id, "parent")])[0]
    ev = target_evidence(session, target)
    if ev is None:
        return Verdict(decided=False, winner=None, more_votes=None,
                       text=f"no votes yet on {version_name} vs its parent {version.parent.name} in {region_code}")
    return ev.verdict(version_name, version.parent.name, "parent")


def promote(session: Session, actor: CurrentUser | None, version_name: str, region_code: str) -> Verdict:
    """Serve ``version_name`` in ``region_code`` if it has been decided that it beats its parent there; otherwise a
    ``ValidationError`` saying why not (undecided: how many more votes; decided the other way: the loss)."""
    user = require(actor, *PROMOTE_ROLES)
    verdict = promotion_verdict(session, version_name, region_code)
    if not (verdict.decided and verdict.winner == "new"):
        raise ValidationError(f"not promoted: {verdict.text}")
    deploy(session, region_code, version_name, user_id=user.id,
           details={"promoted": True, "verdict": verdict.text})
    return verdict
