"""Recovery: the database says what is pending, the broker is only transport.

An article left in a pending state longer than ``stale_after`` (its message lost in a
broker flush, a worker killed before acknowledging, an enqueue that failed while the
broker was down) is handed back to the step for its state
(:data:`worker.pipeline.steps.PIPELINE`). Redelivered steps are harmless: each one acts
only on the state it expects, under the article's row lock
(:func:`worker.pipeline.attempts.lock_article`), and the sweep skips rows locked by a
running step.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Select, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from schemas.models import PENDING_ARTICLE_STATES, Article, Job, JobItem, JobItemState, JobState
from schemas.types import utcnow
from worker.core import outbox
from worker.core.db import is_postgres
from worker.core.settings import Settings
from worker.pipeline.steps import step_for

log = structlog.get_logger("claimwire.pipeline")


def held_article_ids() -> Select[Any]:
    """Articles that pending items of active (queued, running or paused) jobs will take
    care of: the job runs their steps, throttled on the ``backfill`` queue. The sweep
    leaves them alone (re-sending them to the ``io`` queue would un-throttle the job),
    and ``worker.reports.status.pending_work`` counts them once, as the job's."""
    active = [JobState.queued.value, JobState.running.value, JobState.paused.value]
    return (
        sa_select(col(JobItem.article_id))
        .join(Job, col(Job.id) == col(JobItem.job_id))
        .where(col(JobItem.state) == JobItemState.pending, col(Job.state).in_(active))
    )


def stale_articles(
    session: Session,
    settings: Settings,
    now: datetime | None = None,
    limit: int = 1000,
    older_than: float | None = None,
    states: Collection[str] | None = None,
    suspects_only: bool = False,
) -> list[tuple[int, str]]:
    """Claim pending articles untouched for ``stale_after`` seconds: their
    ``state_changed_at`` is moved to now so the next sweep leaves them alone for as long.
    ``states``: only articles in these pending states (default: all of them).

    At most one of them is a *suspect*, an article whose worker died during its step
    (``step_starts > 0``), and none while another suspect is in flight (claimed less
    than ``stale_after`` ago: :func:`suspect_in_flight`). The next suspect is sent as
    soon as the one in flight has settled (:func:`send_next_suspect`, from the step's
    runner), or by a later sweep once the one in flight has been gone ``stale_after``
    (it died again, or its message was lost). ``suspects_only``: claim just the next
    suspect, in flight or not.
    """
    now = now or utcnow()
    age = settings.stale_after if older_than is None else older_than
    cutoff = now - timedelta(seconds=age)
    if age <= 0:
        # Everything pending, also the articles whose step waits for a scheduled retry
        # (their mark is in the future: ``worker.pipeline.attempts.hold_sweep``).
        cutoff = now + timedelta(days=3650)
    wanted = [s.value for s in PENDING_ARTICLE_STATES]
    if states is not None:
        wanted = [s for s in wanted if s in states]
    if not wanted:
        return []

    def claim(*where: Any, n: int) -> list[tuple[int | None, str]]:
        query = (
            select(Article.id, Article.state)
            .where(
                col(Article.state).in_(wanted),
                col(Article.state_changed_at) <= cutoff,
                # articles of pending job items are their job's (throttled on `backfill`)
                col(Article.id).not_in(held_article_ids()),
                *where,
            )
            .order_by(col(Article.state_changed_at))
            .limit(n)
        )
        if is_postgres(session):
            # A locked row is an article whose step is running right now (the step
            # holds its row lock until it commits): it is not stuck, however long the
            # step takes, and two sweeps at once (two schedulers) never claim the same
            # article.
            query = query.with_for_update(skip_locked=True)
        return list(session.exec(query).all())

    # Articles whose worker died during their step (a start never taken back) go one
    # at a time: a thread-pool worker killed by one poison page took the steps running
    # next to it down too, and re-sent together they would run together again, each
    # innocent one counting a death every time the poison page kills the process.
    if suspects_only:
        rows = claim(col(Article.step_starts) > 0, n=1)
    else:
        rows = claim(col(Article.step_starts) == 0, n=limit)
        if not suspect_in_flight(session, cutoff, now):
            rows += claim(col(Article.step_starts) > 0, n=1)
    found = [(i, s) for i, s in rows if i is not None]
    if found:
        session.execute(
            update(Article)
            .where(
                col(Article.id).in_([i for i, _ in found]),
                col(Article.state_changed_at) <= cutoff,
            )
            .values(state_changed_at=now)
        )
    return found


def suspect_in_flight(session: Session, cutoff: datetime, now: datetime) -> bool:
    """Whether a suspect (a pending article with a death, ``step_starts > 0``) was sent
    less than ``stale_after`` ago: its mark is after the sweep's cutoff and not in the
    future (a future mark is a step waiting for its host, not one in flight)."""
    pending = [s.value for s in PENDING_ARTICLE_STATES]
    query = (
        select(Article.id)
        .where(
            col(Article.state).in_(pending),
            col(Article.step_starts) > 0,
            col(Article.state_changed_at) > cutoff,
            col(Article.state_changed_at) <= now,
            col(Article.id).not_in(held_article_ids()),
        )
        .limit(1)
    )
    return session.exec(query).first() is not None


def send_next_suspect(settings: Settings) -> int | None:
    """A suspect's step has settled and its process lives (it returned, or raised and
    was settled): send the next suspect now, not a sweep interval later. One at a time
    still: a poison page that kills its worker again ends the chain there, and the
    sweep sends the next one ``stale_after`` later. Returns the article sent, if any.
    Best effort: a failure here leaves the next suspect to the sweep."""
    from worker.core.db import unit_of_work

    try:
        with unit_of_work() as session:
            found = resend_stale(session, settings, suspects_only=True)
    except Exception as exc:  # noqa: BLE001 (the sweep sends it later)
        log.warning("next_suspect_not_sent", error=str(exc).splitlines()[0][:200])
        return None
    if not found:
        return None
    log.info("next_suspect_sent", article_id=found[0][0], state=found[0][1])
    return found[0][0]


def sweepable_states(settings: Settings) -> set[str]:
    """Pending states whose step's queue is not backlogged. While more than
    ``sweep_backlog_limit`` messages wait in a queue, the articles of its steps are
    most likely among them: re-sending would only pile duplicates onto the backlog (a
    large first import would grow without end). Once the queue drains below the limit,
    anything truly lost is re-sent. A broker that cannot be asked counts as empty."""
    from worker.core.queues import queue_depths

    pending = {s.value for s in PENDING_ARTICLE_STATES}
    limit = settings.sweep_backlog_limit
    if not limit:
        return pending
    depths = queue_depths(settings)
    busy = {q for q, depth in depths.items() if depth is not None and depth > limit}
    if busy:
        log.info("sweep_deferred", backlogged=sorted(busy), limit=limit)
    return {state for state in pending if (step := step_for(state)) and step.queue not in busy}


def resend_stale(
    session: Session,
    settings: Settings,
    *,
    older_than: float | None = None,
    states: Collection[str] | None = None,
    suspects_only: bool = False,
) -> list[tuple[int, str]]:
    """Claim the stale articles (:func:`stale_articles`) and send each to the step of
    its state once the claim has committed."""
    stale = stale_articles(
        session, settings, older_than=older_than, states=states, suspects_only=suspects_only
    )
    for article_id, state in stale:
        step = step_for(state)
        if step is not None:
            outbox.send_after_commit(session, step.task_name, article_id)
    return stale
