"""Jobs: backfills and reprocessing as rows the database drives, resumable and throttled.

A :class:`~schemas.models.Job` holds what to do (``params``, including the discovery
cursor) and its state; one :class:`~schemas.models.JobItem` per article says whether
that article is still to be done for the job. Counts are never stored: they are
derived from the items and their articles (:func:`progress`).

Scheduling (see ``docs/backfill.md``):

* ``advance`` runs periodically (``tasks.jobs.advance_jobs``): it starts queued jobs,
  ends finished ones, hands discovery to one task per job, and dispatches pending
  items so that at most ``backfill_concurrency`` are in flight over all jobs and all
  workers. Live polling never waits behind a backfill: the ``backfill`` queue never
  holds more than that many item messages.
* An item is *in flight* while ``updated_at`` is newer than ``stale_after`` seconds
  (its lease); an item never dispatched carries :data:`NOT_DISPATCHED` (the epoch).
  A crashed worker's items are dispatched again when their lease runs out (or at once
  with ``reclaim``, when the embedded worker starts). Items are idempotent: each step
  acts only on the article state it expects, and a finished item is never redone.
* The articles of pending items of active jobs are *held*: the live recovery sweep
  must leave them alone (:func:`worker.pipeline.sweep.held_article_ids`), so a backfill
  never floods the live ``io``/``cpu`` queues.

Domain functions take a Session and never commit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, text, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from schemas.models import (
    FINAL_ARTICLE_STATES,
    Article,
    ArticleState,
    Job,
    JobItem,
    JobItemState,
    JobState,
    Sighting,
)
from schemas.types import utcnow
from worker.core.db import insert_ignore, is_postgres
from worker.core.settings import Settings
from worker.jobs.progress import JobProgress, job_row, list_jobs, progress

KIND_FEED = "backfill_feed"
KIND_SITEMAP = "backfill_sitemap"
KIND_URLS = "backfill_urls"
KIND_REPROCESS = "reprocess"
KINDS = (KIND_FEED, KIND_SITEMAP, KIND_URLS, KIND_REPROCESS)

ACTIVE_STATES = (JobState.queued, JobState.running, JobState.paused)
FINISHED_STATES = (JobState.done, JobState.failed, JobState.cancelled)

NOT_DISPATCHED = datetime(1970, 1, 1, tzinfo=UTC)
_ADVANCE_LOCK = 726_355  # PostgreSQL advisory lock key: one advance at a time
_DISCOVERY_LOCK = 726_356  # with the job id: one discovery step per job at a time


class JobNotFound(LookupError):
    """No job has that id."""


class JobStateError(ValueError):
    """The job cannot make that transition (e.g. resume a finished job)."""


# --------------------------------------------------------------------------- creation


def create_job(session: Session, kind: str, params: dict[str, Any]) -> Job:
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    now = utcnow()
    job = Job(
        kind=kind,
        params={"discovery_done": False, "discovery_lease": 0.0, **params},
        state=JobState.queued,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    session.flush()
    return job


def item_count(session: Session, job_id: int) -> int:
    return int(
        session.exec(
            select(func.count()).select_from(JobItem).where(JobItem.job_id == job_id)
        ).one()
    )


def add_items(session: Session, job_id: int, article_ids: list[int], limit: int) -> int:
    """Give the job these articles (once each, at most ``limit`` items in all); returns
    how many new items were added."""
    room = limit - item_count(session, job_id)
    if room <= 0 or not article_ids:
        return 0
    unique = list(dict.fromkeys(article_ids))[:room]
    rows = [
        dict(job_id=job_id, article_id=a, state=JobItemState.pending, updated_at=NOT_DISPATCHED)
        for a in unique
    ]
    inserted = insert_ignore(
        session, JobItem, rows, ["job_id", "article_id"], returning=[JobItem.id]
    )
    return len(inserted)


def set_params(job: Job, **changes: Any) -> None:
    """Update the JSON params (a new dict, so SQLAlchemy sees the change)."""
    job.params = {**job.params, **changes}
    job.updated_at = utcnow()


def finish_discovery(job: Job, error: str | None = None) -> None:
    set_params(job, discovery_done=True, discovery_lease=0.0)
    if error:
        job.last_error = error[:2000]


# ---------------------------------------------------------------------------- lookup


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFound(f"no job with id {job_id} (see `claimwire jobs list`)")
    return job


# ------------------------------------------------------------------------ transitions


def pause(session: Session, job_id: int) -> Job:
    job = get_job(session, job_id)
    if job.state in (JobState.queued, JobState.running):
        job.state = JobState.paused
        job.updated_at = utcnow()
    elif job.state != JobState.paused:
        raise JobStateError(f"job {job_id} is {job.state}; only a queued or running job pauses")
    return job


def resume(session: Session, job_id: int) -> Job:
    job = get_job(session, job_id)
    if job.state == JobState.paused:
        job.state = JobState.running if job.started_at else JobState.queued
        job.updated_at = utcnow()
        # Items whose message was dropped while paused go out again at once.
        session.execute(
            update(JobItem)
            .where(col(JobItem.job_id) == job_id, col(JobItem.state) == JobItemState.pending)
            .values(updated_at=NOT_DISPATCHED)
        )
        set_params(job, discovery_lease=0.0)
    elif job.state not in (JobState.queued, JobState.running):
        raise JobStateError(f"job {job_id} is {job.state}; only a paused job resumes")
    return job


def cancel(session: Session, job_id: int) -> Job:
    """Stop a job for good. Articles it discovered and never started (still
    ``discovered``, created by this job, wanted by no other active job) are forgotten,
    so a later poll or backfill finds them new; its other unfinished articles go back
    to the live pipeline (the recovery sweep finishes them)."""
    job = get_job(session, job_id)
    if job.state in FINISHED_STATES:
        raise JobStateError(f"job {job_id} is already {job.state}")
    now = utcnow()
    job.state = JobState.cancelled
    job.finished_at = now
    job.updated_at = now
    set_params(job, discovery_lease=0.0)
    others = (
        select(JobItem.article_id)
        .join(Job, col(Job.id) == col(JobItem.job_id))
        .where(
            col(JobItem.state) == JobItemState.pending,
            col(Job.state).in_([s.value for s in ACTIVE_STATES]),
            col(Job.id) != job_id,
        )
    )
    mine = select(JobItem.article_id).where(
        col(JobItem.job_id) == job_id, col(JobItem.state) == JobItemState.pending
    )
    session.execute(
        delete(Article).where(
            col(Article.id).in_(mine),
            col(Article.id).not_in(others),
            col(Article.state) == ArticleState.discovered,
            col(Article.attempts) == 0,
            col(Article.discovered_at) >= job.created_at,
        )
    )
    return job


# --------------------------------------------------------------------------- advance


@dataclass
class AdvancePlan:
    discover: list[int] = field(default_factory=list)
    items: list[tuple[int, int]] = field(default_factory=list)  # (job id, article id)
    finished: list[int] = field(default_factory=list)
    # reprocess jobs that ended: their speakers' claims are clustered again once the
    # round has committed (worker.jobs.work.recluster_ended_job)
    recluster: list[int] = field(default_factory=list)


def _lock_advance(session: Session) -> bool:
    if is_postgres(session):
        return bool(
            session.execute(text(f"SELECT pg_try_advisory_xact_lock({_ADVANCE_LOCK})")).scalar()
        )
    return True


def advance(
    session: Session,
    settings: Settings,
    *,
    reclaim: bool = False,
    job_ids: list[int] | None = None,
    now: datetime | None = None,
) -> AdvancePlan:
    """One scheduling round over active jobs (or only ``job_ids``). Returns what the
    caller must send after committing: discovery tasks and item tasks."""
    plan = AdvancePlan()
    now = now or utcnow()
    if not _lock_advance(session):
        return plan  # another scheduler is advancing right now
    query = select(Job).where(col(Job.state).in_([JobState.queued.value, JobState.running.value]))
    if job_ids is not None:
        query = query.where(col(Job.id).in_(job_ids))
    if is_postgres(session):
        # Read-modify-write of params: wait for a discovery step committing its cursor
        # rather than overwrite it with what was read before.
        query = query.with_for_update()
    jobs = list(session.exec(query.order_by(col(Job.id))).all())
    if not jobs:
        return plan
    cutoff = now - timedelta(seconds=settings.stale_after)
    lease_s = float(settings.stale_after)
    _finish_settled(session, cutoff)
    running: list[Job] = []
    for job in jobs:
        assert job.id is not None
        if job.state == JobState.queued:
            job.state = JobState.running
            job.started_at = job.started_at or now
        job.updated_at = now
        if reclaim:
            session.execute(
                update(JobItem)
                .where(
                    col(JobItem.job_id) == job.id,
                    col(JobItem.state) == JobItemState.pending,
                )
                .values(updated_at=NOT_DISPATCHED)
            )
            set_params(job, discovery_lease=0.0)
        if not job.params.get("discovery_done"):
            if float(job.params.get("discovery_lease", 0.0)) < time.time():
                set_params(job, discovery_lease=time.time() + lease_s)
                plan.discover.append(job.id)
            running.append(job)
            continue
        pending = session.exec(
            select(func.count())
            .select_from(JobItem)
            .where(JobItem.job_id == job.id, JobItem.state == JobItemState.pending)
        ).one()
        if int(pending) == 0:
            empty = item_count(session, job.id) == 0
            # Conditional: two rounds at once (a worker's item task and a `--wait`
            # watcher) both read the job running on SQLite, which takes no row lock;
            # only the one whose UPDATE still finds it active finishes and reports it.
            session.flush()
            ended = session.execute(
                update(Job)
                .where(
                    col(Job.id) == job.id,
                    col(Job.state).in_([JobState.queued.value, JobState.running.value]),
                )
                .values(
                    state=(JobState.failed if job.last_error and empty else JobState.done).value,
                    finished_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            session.refresh(job)
            if ended.rowcount == 1:  # type: ignore[attr-defined]
                plan.finished.append(job.id)
                if job.kind == KIND_REPROCESS:
                    # clusters that do not depend on the order the items ran in, made
                    # after this round commits (one speaker a transaction)
                    plan.recluster.append(job.id)
        else:
            running.append(job)
    session.flush()
    in_flight = int(
        session.exec(
            select(func.count())
            .select_from(JobItem)
            .join(Job, col(Job.id) == col(JobItem.job_id))
            .where(
                col(Job.state).in_([s.value for s in ACTIVE_STATES]),
                JobItem.state == JobItemState.pending,
                col(JobItem.updated_at) > cutoff,
            )
        ).one()
    )
    free = settings.backfill_concurrency - in_flight
    if free <= 0 or not running:
        return plan
    # Fair share: jobs with the fewest items in flight first (then the oldest), round
    # robin, lowest item first; so one job never starves another, even one slot at a time.
    per_job = dict(
        session.execute(
            sa_select(col(JobItem.job_id), func.count())
            .where(
                col(JobItem.job_id).in_([j.id for j in running]),
                col(JobItem.state) == JobItemState.pending,
                col(JobItem.updated_at) > cutoff,
            )
            .group_by(col(JobItem.job_id))
        ).all()
    )
    running.sort(key=lambda j: (int(per_job.get(j.id, 0)), j.id or 0))
    queues: list[list[tuple[int, int, int]]] = []
    for job in running:
        rows = session.exec(
            select(JobItem.id, JobItem.job_id, JobItem.article_id)
            .where(
                JobItem.job_id == job.id,
                JobItem.state == JobItemState.pending,
                col(JobItem.updated_at) <= cutoff,
            )
            .order_by(col(JobItem.id))
            .limit(free)
        ).all()
        if rows:
            queues.append([(int(i or 0), int(j), int(a)) for i, j, a in rows])
    chosen: list[tuple[int, int, int]] = []
    while len(chosen) < free and any(queues):
        for q in queues:
            if q and len(chosen) < free:
                chosen.append(q.pop(0))
    if chosen:
        session.execute(
            update(JobItem)
            .where(col(JobItem.id).in_([c[0] for c in chosen]), col(JobItem.updated_at) <= cutoff)
            .values(updated_at=now)
        )
        plan.items = [(j, a) for _, j, a in chosen]
    return plan


def _finish_settled(session: Session, cutoff: datetime) -> int:
    """Finish the in-flight items whose article reached a final state elsewhere.

    An item's task leaves the article alone while another worker holds it (the live
    pipeline took it from a poll, or another job's item runs it): the item stays
    pending with its lease running. Without this, it would wait for the lease to
    expire (``stale_after``) before a new message noticed the article was done.
    Not for reprocess items: their articles are final before the item starts."""
    rows = session.execute(
        sa_select(col(JobItem.id), col(Article.state))
        .join(Article, col(Article.id) == col(JobItem.article_id))
        .join(Job, col(Job.id) == col(JobItem.job_id))
        .where(
            col(Job.state).in_([s.value for s in ACTIVE_STATES]),
            # A reprocess item starts from a final article: final says nothing there.
            col(Job.kind) != KIND_REPROCESS,
            col(JobItem.state) == JobItemState.pending,
            col(JobItem.updated_at) > cutoff,
            col(Article.state).in_(list(ITEM_STATE_FOR)),
        )
    ).all()
    now = utcnow()
    for item_id, article_state in rows:
        session.execute(
            update(JobItem)
            .where(col(JobItem.id) == item_id, col(JobItem.state) == JobItemState.pending)
            .values(state=ITEM_STATE_FOR[str(article_state)], updated_at=now)
        )
    return len(rows)


# ------------------------------------------------------------------------------ items


def renew_item(session: Session, job_id: int, article_id: int) -> None:
    """Extend a running item's lease (before each step of a long item)."""
    session.execute(
        update(JobItem)
        .where(
            col(JobItem.job_id) == job_id,
            col(JobItem.article_id) == article_id,
            col(JobItem.state) == JobItemState.pending,
        )
        .values(updated_at=utcnow())
    )


def discovery_lock(session: Session, job_id: int) -> bool:
    """One discovery step of a job at a time (PostgreSQL advisory lock for this
    transaction; SQLite serializes writers). False: another is running."""
    if not is_postgres(session):
        return True
    return bool(
        session.execute(
            text("SELECT pg_try_advisory_xact_lock(:k, :j)"), {"k": _DISCOVERY_LOCK, "j": job_id}
        ).scalar()
    )


def begin_item(session: Session, job_id: int, article_id: int) -> str | None:
    """Start (or restart) an item: renew its lease and return the job's kind, or None
    when there is nothing to do (item finished, job not running). The item of a paused
    job is released so that resuming dispatches it again at once."""
    job = session.get(Job, job_id)
    item = session.exec(
        select(JobItem).where(JobItem.job_id == job_id, JobItem.article_id == article_id)
    ).first()
    if job is None or item is None or item.state != JobItemState.pending:
        return None
    if job.state != JobState.running:
        if job.state == JobState.paused:
            item.updated_at = NOT_DISPATCHED
        return None
    item.updated_at = utcnow()
    return job.kind


ITEM_STATE_FOR = {
    ArticleState.processed.value: JobItemState.done,
    ArticleState.skipped.value: JobItemState.skipped,
    ArticleState.failed.value: JobItemState.failed,
    ArticleState.quarantined.value: JobItemState.failed,
}


def finish_item(session: Session, job_id: int, article_id: int) -> str | None:
    """Mark an item finished from its article's final state; returns the item's new
    state, or None while the article is still on its way (or the item is gone)."""
    item = session.exec(
        select(JobItem).where(JobItem.job_id == job_id, JobItem.article_id == article_id)
    ).first()
    article = session.get(Article, article_id)
    if item is None:
        return None
    if item.state != JobItemState.pending:
        return item.state
    if article is None:
        item.state = JobItemState.failed
    elif article.state in ITEM_STATE_FOR:
        item.state = ITEM_STATE_FOR[article.state]
    else:
        return None
    item.updated_at = utcnow()
    return item.state


# ------------------------------------------------------------ live service integration


def jobs_pending_work(session: Session) -> int:
    """Work jobs still have to do: one per queued or running job (discovery, final
    bookkeeping) plus their pending items. Paused jobs wait for a person: not counted,
    so ``run --until-idle`` does not wait for them."""
    active = [JobState.queued.value, JobState.running.value]
    jobs = session.exec(
        select(func.count()).select_from(Job).where(col(Job.state).in_(active))
    ).one()
    items = session.exec(
        select(func.count())
        .select_from(JobItem)
        .join(Job, col(Job.id) == col(JobItem.job_id))
        .where(col(Job.state).in_(active), col(JobItem.state) == JobItemState.pending)
    ).one()
    return int(jobs) + int(items)


def articles_of_feed(feed_id: int) -> Select[Any]:
    return sa_select(col(Sighting.article_id)).where(col(Sighting.feed_id) == feed_id)


def is_final(state: str) -> bool:
    return state in {s.value for s in FINAL_ARTICLE_STATES}


__all__ = [
    "KINDS",
    "NOT_DISPATCHED",
    "AdvancePlan",
    "JobNotFound",
    "JobProgress",
    "JobStateError",
    "add_items",
    "advance",
    "begin_item",
    "cancel",
    "create_job",
    "finish_item",
    "get_job",
    "job_row",
    "jobs_pending_work",
    "list_jobs",
    "pause",
    "progress",
    "resume",
]
