"""Operations for other systems: backfills, reprocessing and job control.

Called by name on the ``backfill`` queue (arguments documented in docs/backfill.md)::

    celery -A worker.celery_app call tasks.jobs.start_backfill_sitemap \\
        --kwargs '{"url": "https://example.org/sitemap.xml", "since": "2026-01-01"}'

* ``start_backfill_feed(feeds, since, until=None, include_undated=False)``
* ``start_backfill_sitemap(url, since=None, until=None, include_undated=False)``
* ``start_backfill_urls(urls)``
* ``start_reprocess(since=None, until=None, feed=None, outlet=None, states=None,
  older_extractor=False)``
* ``pause_job(job_id)``, ``resume_job(job_id)``, ``cancel_job(job_id)``

Each returns the new (or changed) job's id. The job is then scheduled like one started
from the CLI (``worker.jobs.work``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from sqlmodel import Session

from worker.celery_app import app
from worker.core.db import unit_of_work
from worker.core.settings import Settings, get_settings
from worker.jobs import lifecycle
from worker.jobs.work import advance_once

log = structlog.get_logger("claimwire.tasks")


def _start(create: Callable[[Session, Settings], int]) -> int:
    settings = get_settings()
    with unit_of_work() as session:
        job_id = create(session, settings)
    advance_once(job_ids=[job_id])
    log.info("job_started", job_id=job_id)
    return job_id


@app.task(name="tasks.jobs.start_backfill_feed")
def start_backfill_feed(
    feeds: list[int | str],
    since: str | None,
    until: str | None = None,
    include_undated: bool = False,
) -> int:
    """Backfill feeds (ids or URLs of known feeds) from their archives, back to
    ``since`` (ISO 8601 date)."""
    from worker.feeds.subscriptions import find_feed
    from worker.jobs import discovery

    def create(s: Session, _settings: Settings) -> int:
        ids = [int(find_feed(s, str(ref)).id or 0) for ref in feeds]
        job = discovery.create_feed_job(
            s, ids, _date(since), _date(until), include_undated=include_undated
        )
        return int(job.id or 0)

    return _start(create)


@app.task(name="tasks.jobs.start_backfill_sitemap")
def start_backfill_sitemap(
    url: str, since: str | None = None, until: str | None = None, include_undated: bool = False
) -> int:
    """Backfill from a sitemap (or a site's robots.txt ``Sitemap:`` lines when ``url`` is
    a site root or robots.txt)."""
    from worker.jobs import discovery

    def create(s: Session, _settings: Settings) -> int:
        job = discovery.create_sitemap_job(
            s, url, _date(since), _date(until), include_undated=include_undated
        )
        return int(job.id or 0)

    return _start(create)


@app.task(name="tasks.jobs.start_backfill_urls")
def start_backfill_urls(urls: list[str]) -> int:
    """Backfill a list of article URLs."""
    from worker.jobs import discovery

    def create(s: Session, settings: Settings) -> int:
        return int(discovery.create_urls_job(s, urls, settings).job.id or 0)

    return _start(create)


@app.task(name="tasks.jobs.start_reprocess")
def start_reprocess(
    since: str | None = None,
    until: str | None = None,
    feed: int | str | None = None,
    outlet: str | None = None,
    states: list[str] | None = None,
    older_extractor: bool = False,
) -> int:
    """Reprocess archived articles selected by these filters (all of them combined)."""
    from worker.feeds.subscriptions import find_feed
    from worker.jobs import reprocess

    def create(s: Session, settings: Settings) -> int:
        f = reprocess.ReprocessFilter(
            since=_date(since),
            until=_date(until),
            feed_id=int(find_feed(s, str(feed)).id or 0) if feed is not None else None,
            outlet=outlet,
            older_extractor=older_extractor,
        )
        if states:
            f.states = list(states)
        return int(reprocess.create_reprocess_job(s, f, settings).id or 0)

    return _start(create)


@app.task(name="tasks.jobs.pause_job")
def pause_job(job_id: int) -> int:
    with unit_of_work() as session:
        lifecycle.pause(session, job_id)
    return job_id


@app.task(name="tasks.jobs.resume_job")
def resume_job(job_id: int) -> int:
    with unit_of_work() as session:
        lifecycle.resume(session, job_id)
    advance_once(job_ids=[job_id])
    return job_id


@app.task(name="tasks.jobs.cancel_job")
def cancel_job(job_id: int) -> int:
    with unit_of_work() as session:
        lifecycle.cancel(session, job_id)
    return job_id


def _date(value: str | None) -> Any:
    from datetime import UTC, datetime

    if value is None:
        return None
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
