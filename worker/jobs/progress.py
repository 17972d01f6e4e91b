"""What a job has done, for `claimwire jobs list` / `jobs show`, the web view and the
progress bar of ``--wait``: counts derived from the job's items and their articles,
never stored (:mod:`worker.jobs.lifecycle` re-exports these).

The queries are SQLAlchemy Core over :mod:`schemas.tables`: they run on an ORM session
and on a plain connection (:func:`worker.core.db.reading`), so `claimwire jobs list`
imports neither the ORM nor the SQLModel classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from schemas.states import JobItemState
from schemas.tables import article, job, jobitem
from schemas.types import utcnow
from worker.core.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

__all__ = ["JobProgress", "job_row", "list_jobs", "progress"]


def list_jobs(session: Session | Connection, limit: int = 50) -> Sequence[Any]:
    """The newest jobs first, as rows (``id``, ``kind``, ``state``, ``params``...)."""
    return session.execute(select(job).order_by(job.c.id.desc()).limit(limit)).all()


@dataclass
class JobProgress:
    discovered: int = 0  # items the job has
    fetched: int = 0  # items whose article page is in the archive
    pending: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    in_flight: int = 0
    by_article_state: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.done + self.skipped + self.failed


def progress(session: Session | Connection, job_id: int, settings: Settings) -> JobProgress:
    i, a = jobitem.c, article.c
    p = JobProgress()
    for state, n in session.execute(
        select(i.state, func.count()).where(i.job_id == job_id).group_by(i.state)
    ).all():
        if str(state) in JobItemState.__members__:
            setattr(p, str(state), int(n))
    p.discovered = p.pending + p.done + p.skipped + p.failed
    p.fetched = int(
        session.scalar(
            select(func.count())
            .select_from(jobitem)
            .join(article, a.id == i.article_id)
            .where(i.job_id == job_id, a.raw_sha256.is_not(None))
        )
        or 0
    )
    p.by_article_state = {
        str(s): int(n)
        for s, n in session.execute(
            select(a.state, func.count())
            .join(jobitem, a.id == i.article_id)
            .where(i.job_id == job_id)
            .group_by(a.state)
        ).all()
    }
    cutoff = utcnow() - timedelta(seconds=settings.stale_after)
    p.in_flight = int(
        session.scalar(
            select(func.count())
            .select_from(jobitem)
            .where(
                i.job_id == job_id,
                i.state == JobItemState.pending,
                i.updated_at > cutoff,
            )
        )
        or 0
    )
    return p


def job_row(job: Any, p: JobProgress) -> dict[str, Any]:
    """A job (an ORM ``Job`` or a row of :func:`list_jobs`) and its progress as one
    JSON-ready dict."""

    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    params = {k: v for k, v in job.params.items() if k not in ("cursor", "queue", "seen")}
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "params": params,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "last_error": job.last_error,
        "discovery_done": bool(job.params.get("discovery_done")),
        "pages_read": int(job.params.get("pages", 0)),
        "discovered": p.discovered,
        "fetched": p.fetched,
        "pending": p.pending,
        "in_flight": p.in_flight,
        "done": p.done,
        "skipped": p.skipped,
        "failed": p.failed,
        "articles": p.by_article_state,
    }
