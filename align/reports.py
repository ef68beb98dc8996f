"""Rounds and their results as plain rows and text, for the CLI (``geoalign round list|show``) and the Rounds page.

Read-only and light: no training library, no Streamlit, no Altair. ``align.rounds`` uses ``reward_model_text`` to
log a finished reward stage; the page's own frames and charts live in ``ui/views.py``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Job, Region, Round

# Evaluation keys in the order to show them: the independent judge first, then what training optimised.
WIN_RATE_LABELS = {
    "judge_vs_parent": "judge vs parent (independent)",
    "judge_vs_base": "judge vs base (independent)",
    "vs_parent": "reward model vs parent (trained on it)",
    "vs_base": "reward model vs base (trained on it)",
    "rules_vs_parent": "rules vs parent (RL optimised them)",
    "rules_vs_base": "rules vs base (RL optimised them)",
}


def round_summary(rnd: Round, job: Job | None = None) -> dict[str, Any]:
    """A plain dict of a round for the CLI and the Rounds page."""
    return {"id": rnd.id, "number": rnd.number, "region": rnd.region_id, "status": rnd.status.value,
            "completed_stages": list(rnd.completed_stages), "stages": rnd.config.get("round", {}).get("stages"),
            "metrics": rnd.metrics, "error": rnd.error, "created_at": rnd.created_at,
            "job": asdict_job(job) if job else None}


def asdict_job(job: Job) -> dict[str, Any]:
    """A job's id, status, progress and worker heartbeat as a plain dict."""
    return {"id": job.id, "status": job.status.value, "progress": job.progress, "worker": job.worker,
            "heartbeat_at": job.heartbeat_at}


def jobs_for(session: Session, round_ids: list[int]) -> dict[int, Job]:
    """The newest job of each round."""
    out: dict[int, Job] = {}
    for job in session.scalars(select(Job).where(Job.round_id.in_(round_ids)).order_by(Job.id)):
        out[job.round_id] = job
    return out


def region_names(session: Session) -> dict[int, str]:
    """Region code by region id."""
    return {rid: code for rid, code in session.execute(select(Region.id, Region.code))}


def reward_model_text(metrics: dict[str, Any]) -> str:
    """A reward stage's accuracies in one line, e.g. ``validation 0.80 (10 pairs) · newest votes 0.75 (6 pairs) ·
    train sample 0.92 (40 of 40 pairs)``; ``""`` when the stage measured none."""
    def rate(value: Any) -> str:
        return f"{value:.2f}" if isinstance(value, int | float) else "-"

    parts = []
    if "val_accuracy" in metrics:
        parts.append(f"validation {rate(metrics['val_accuracy'])} ({metrics.get('val_pairs', '?')} pairs)")
    if "newest_accuracy" in metrics:
        previous = metrics.get("newest_accuracy_previous_model")
        parts.append(f"newest votes {rate(metrics['newest_accuracy'])} ({metrics.get('newest_pairs', '?')} pairs"
                     + (f"; previous model {rate(previous)})" if previous is not None else ")"))
    if "train_sample_accuracy" in metrics:
        parts.append(f"train sample {rate(metrics['train_sample_accuracy'])} "
                     f"({metrics.get('train_sample_pairs', '?')} of {metrics.get('train_pairs', '?')} pairs)")
    return " · ".join(parts)


def win_rate_rows(evaluation: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """An evaluation's win-rates as (label, rate) in display order: the independent judge leads."""
    known = [(label, evaluation[key]) for key, label in WIN_RATE_LABELS.items()
             if isinstance(evaluation.get(key), dict)]
    other = [(key.replace("_", " "), value) for key, value in evaluation.items()
             if key not in WIN_RATE_LABELS and isinstance(value, dict) and "rate" in value]
    return known + other


def win_rate_text(value: Any) -> str:
    """``{"rate": 0.62, "low": 0.41, "high": 0.8, ...}`` → ``"0.62 [0.41, 0.80]"``; ``""`` when there is none."""
    if not isinstance(value, dict) or value.get("rate") is None:
        return ""
    if value.get("low") is None or value.get("high") is None:
        return f"{value['rate']:.2f}"
    return f"{value['rate']:.2f} [{value['low']:.2f}, {value['high']:.2f}]"
