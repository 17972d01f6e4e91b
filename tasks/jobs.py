"""Job tasks: backfills and reprocessing on the low-priority ``backfill`` queue.

Callable by other systems (arguments documented in docs/discovery.md)::

    celery -A worker.celery_app call tasks.jobs.start_backfill_sitemap \\
        --kwargs '{"url": "https://example.org/sitemap.xml", "since": "2026-01-01"}'

* ``start_backfill_feed(feeds, since, until=None, include_undated=False)``
* ``start_backfill_sitemap(url, since=None, until=None, include_undated=False)``
* ``start_backfill_urls(urls)``
* ``start_reprocess(since=None, until=None, feed=None, outlet=None, states=None,
  older_extractor=False)``
* ``pause_job(job_id)``, ``resume_job(job_id)``, ``cancel_job(job_id)``

Each returns the new (or changed) job's id. ``advance_jobs`` (beat, every
``dispatch_interval``) schedules them; ``discover_job`` walks archive pages and
sitemaps; ``process_item`` runs one article through the pipeline's steps inline, each
step its own unit of work, so backfill work never enters the ``io`` or ``cpu`` queues.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from schemas.models import Article, Job
from tasks.base import (
    ENVIRONMENT_ERRORS,
    backoff,
    capped,
    log,
    run_article_step,
    send,
    short_error,
)
from worker.celery_app import app
from worker.claims.model import require_model
from worker.core import resources
from worker.core.db import unit_of_work
from worker.core.settings import Settings, get_settings
from worker.jobs import lifecycle
from worker.network.politeness import HostBusy

DISCOVERY_PAGES_PER_TASK = 20


# -------------------------------------------------------------------------- scheduler


def advance_once(
    *, reclaim: bool = False, job_ids: list[int] | None = None
) -> lifecycle.AdvancePlan:
    """One scheduling round, committed, then its messages sent."""
    settings = get_settings()
    with unit_of_work() as session:
        plan = lifecycle.advance(session, settings, reclaim=reclaim, job_ids=job_ids)
    for job_id in plan.discover:
        send(discover_job, job_id)
    for job_id, article_id in plan.items:
        send(process_item, job_id, article_id)
    if plan.finished:
        log.info("jobs_finished", jobs=plan.finished)
    return plan


@app.task(name="tasks.jobs.advance_jobs", ignore_result=True)
def advance_jobs(reclaim: bool = False) -> int:
    """Start queued jobs, finish completed ones, and keep at most
    ``backfill_concurrency`` items in flight. ``reclaim``: items and discoveries in
    flight lost their messages (embedded broker restarted); send them again now."""
    try:
        plan = advance_once(reclaim=reclaim)
    except ENVIRONMENT_ERRORS as exc:
        log.warning("advance_jobs_failed", error=short_error(exc))
        return 0
    return len(plan.items)


# -------------------------------------------------------------------------- discovery


@app.task(bind=True, name="tasks.jobs.discover_job")
def discover_job(self: Any, job_id: int) -> int:
    """Read up to ``DISCOVERY_PAGES_PER_TASK`` archive pages or sitemaps of a job, each in
    its own transaction (cursor saved with what the page listed), then hand over to
    the next message."""
    from worker.jobs import discovery

    settings = get_settings()
    added = 0
    for _ in range(DISCOVERY_PAGES_PER_TASK):
        try:
            with unit_of_work() as session:
                step = discovery.discover_step(
                    session, job_id, resources.http_client(), resources.host_limiter(), settings
                )
                _renew_discovery_lease(session, job_id, settings)
        except HostBusy as exc:
            raise self.retry(
                countdown=capped(exc.retry_after + random.uniform(0, 1)), max_retries=None
            ) from exc
        except ENVIRONMENT_ERRORS as exc:
            log.warning("discovery_environment_error", job_id=job_id, error=short_error(exc))
            raise self.retry(countdown=backoff(self.request.retries), max_retries=None) from exc
        except Exception as exc:  # noqa: BLE001 (a crash in discovery ends discovery)
            log.exception("discovery_failed", job_id=job_id)
            with unit_of_work() as session:
                job = session.get(Job, job_id)
                if job is not None:
                    lifecycle.finish_discovery(
                        job, f"discovery failed: {type(exc).__name__}: {exc}"
                    )
            return added
        added += step.added
        if step.retry_after is not None:
            raise self.retry(countdown=capped(step.retry_after), max_retries=None)
        if not step.more:
            return added
    send(discover_job, job_id)
    return added


def _renew_discovery_lease(session: Session, job_id: int, settings: Settings) -> None:
    job = session.get(Job, job_id)
    if job is not None and not job.params.get("discovery_done"):
        lifecycle.set_params(job, discovery_lease=time.time() + settings.stale_after)


# ------------------------------------------------------------------------------ items


def _article_state(article_id: int) -> str | None:
    with unit_of_work() as session:
        article = session.get(Article, article_id)
        return article.state if article is not None else None


def item_steps(
    job_id: int, settings: Settings
) -> tuple[dict[str, Callable[[Session, int], bool]], list[int]]:
    """The live pipeline's steps, keyed by the article state each one expects, and the
    list the dedup step fills with canonical articles whose claims must be redone."""
    from worker.claims import store
    from worker.pages import extract as extract_module
    from worker.pages import fetch as fetch_module

    requeue: list[int] = []

    def fetch(s: Session, aid: int) -> bool:
        return fetch_module.fetch_article(
            s, aid, resources.http_client(), resources.host_limiter(), resources.archive(), settings
        ).advanced

    def extract(s: Session, aid: int) -> bool:
        return bool(extract_module.extract_stored_article(s, aid, resources.archive(), settings))

    def dedup_step(s: Session, aid: int) -> bool:
        from worker.dedup import deduplicate

        outcome = deduplicate.deduplicate_article(s, aid, settings)
        if outcome.canonical_changed_to is not None and outcome.canonical_changed_to != aid:
            requeue.append(int(outcome.canonical_changed_to))
        return bool(outcome.advanced)

    def claims(s: Session, aid: int) -> bool:
        require_model(settings)  # a model that cannot load is the setting's fault: wait
        advanced = bool(store.process_claims(s, aid, settings))
        if advanced:
            lifecycle.finish_item(s, job_id, aid)  # the item ends with the step that ends it
        return advanced

    steps: dict[str, Callable[[Session, int], bool]] = {
        "discovered": fetch,
        "fetched": extract,
        "extracted": dedup_step,
        "deduplicated": claims,
    }
    return steps, requeue


@app.task(bind=True, name="tasks.jobs.process_item")
def process_item(self: Any, job_id: int, article_id: int) -> str | None:
    """One article of a job through fetch -> extract -> dedup -> claims (reprocess:
    restart from the archived page), each step its own transaction with the live
    pipeline's error mapping, then the item marked from the article's final state."""
    settings = get_settings()
    try:
        with unit_of_work() as session:
            kind = lifecycle.begin_item(session, job_id, article_id)
    except ENVIRONMENT_ERRORS as exc:
        raise self.retry(countdown=backoff(self.request.retries), max_retries=None) from exc
    if kind is None:
        return None
    steps, requeue = item_steps(job_id, settings)
    state = _article_state(article_id)
    if kind == lifecycle.KIND_REPROCESS and state is not None and lifecycle.is_final(state):
        from worker.jobs import reprocess

        run_article_step(
            self,
            article_id,
            lambda s, aid: reprocess.restart_article(
                s, aid, resources.archive(), settings, requeue
            ),
            None,
        )
        state = _article_state(article_id)
    if state == "discovered":
        _warm_robots(article_id, settings)
    for _ in range(len(steps)):
        if state is None or state not in steps:
            break
        _renew(job_id, article_id)
        advanced = run_article_step(self, article_id, steps[state], None)
        new_state = _article_state(article_id)
        if not advanced and new_state == state:
            break  # another worker holds this article right now; the lease brings it back
        state = new_state
    for other in requeue:
        _claims_inline(other, settings)
    with unit_of_work() as session:
        outcome = lifecycle.finish_item(session, job_id, article_id)
    if outcome is not None:
        # Self-clocking: a finished item makes room for the next one at once instead
        # of at the next scheduler tick (the throttle still holds: advance counts).
        try:
            advance_once()  # all jobs: the round robin stays fair
        except ENVIRONMENT_ERRORS as exc:
            log.warning("advance_after_item_failed", job_id=job_id, error=short_error(exc))
    return outcome


def _renew(job_id: int, article_id: int) -> None:
    try:
        with unit_of_work() as session:
            lifecycle.renew_item(session, job_id, article_id)
    except ENVIRONMENT_ERRORS:
        pass  # the step itself meets the same trouble and retries


def _warm_robots(article_id: int, settings: Settings) -> None:
    """Cache the host's robots.txt in its own transaction before the fetch step. Many
    items of one new host start at once; the first to commit wins and the others'
    insert conflicts here, harmlessly, instead of failing (and retrying) their fetch."""
    from sqlalchemy.exc import IntegrityError

    from worker.network.politeness import robots_allows

    try:
        with unit_of_work() as session:
            article = session.get(Article, article_id)
            if article is not None:
                robots_allows(session, resources.http_client(), article.url, settings)
    except IntegrityError:
        pass  # another item cached it first
    except HostBusy:
        pass  # robots.txt unreachable: the fetch step meets it too and retries later
    except ENVIRONMENT_ERRORS:
        pass  # the fetch step checks robots again and maps errors as usual


def _claims_inline(article_id: int, settings: Settings) -> None:
    """A group's canonical article changed (dedup placed a new article, or reprocess
    took the old canonical out): its claims again, inline, as the live pipeline does.
    On failure the live recovery sweep takes a pending article over; a processed one
    keeps its old claims and is logged."""
    from tasks.base import lock_article
    from worker.claims import store

    try:
        with unit_of_work() as session:
            if not lock_article(session, article_id):
                return
            article = session.get(Article, article_id)
            if article is None:
                return
            if article.state == "deduplicated":
                store.process_claims(session, article_id, settings)
            elif article.state == "processed":
                store.replace_claims(session, article, settings)
    except Exception as exc:  # noqa: BLE001 (left to the sweep)
        log.warning("claims_inline_failed", article_id=article_id, error=short_error(exc))


# ------------------------------------------------------------- operations for others


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


__all__ = [
    "advance_jobs",
    "advance_once",
    "cancel_job",
    "discover_job",
    "pause_job",
    "process_item",
    "resume_job",
    "start_backfill_feed",
    "start_backfill_sitemap",
    "start_backfill_urls",
    "start_reprocess",
]
