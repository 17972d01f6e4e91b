"""Periodic tasks run by the scheduler: the feed dispatcher and the recovery sweep."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlmodel import col

from schemas.models import PENDING_ARTICLE_STATES, Feed
from tasks.base import ENVIRONMENT_ERRORS, log, send
from worker.celery_app import app
from worker.core.db import unit_of_work
from worker.core.settings import Settings, get_settings
from worker.feeds import polling
from worker.pipeline import sweep as sweeping


@app.task(name="tasks.maintenance.dispatch_due_feeds", ignore_result=True)
def dispatch_due_feeds() -> int:
    """Lease due feeds in bounded batches and queue their polls, a few feeds per
    message (``poll_feeds_per_message``)."""
    from tasks.polling import poll_feeds

    settings = get_settings()
    total = 0
    try:
        for _ in range(20):  # bounded: at most 20 batches per run
            with unit_of_work() as session:
                ids = polling.claim_due_feeds(session, settings)
            if not _send_polls(poll_feeds, ids, settings.poll_feeds_per_message):
                break  # the broker is failing: the next run tries again
            total += len(ids)
            if len(ids) < settings.dispatch_batch_size:
                break
    except ENVIRONMENT_ERRORS as exc:
        log.warning("dispatch_failed", error=str(exc))
    return total


def dispatch_now() -> None:
    """Run the dispatcher as soon as a worker is free instead of at its next tick
    (``claimwire feeds poll``). It only claims what is due in the database, so an
    extra run next to the scheduled ones is harmless; if the broker is down the
    scheduled run does the same later."""
    send(dispatch_due_feeds)


def poll_messages(leases: list[polling.Lease], per_message: int) -> list[list[list[Any]]]:
    """Split claimed feeds into messages of at most ``per_message`` feeds. Message ``j``
    of ``n`` takes feeds ``j, j + n, j + 2n, ...``: feeds next to each other in the claim
    order (often of one host, or added together) go to different messages, so one
    host's politeness interval does not make a single worker thread wait for it over
    and over."""
    per_message = max(1, per_message)
    n = -(-len(leases) // per_message)
    return [[[feed_id, token] for feed_id, token in leases[j::n]] for j in range(n)]


def _send_polls(poll_feeds: Any, leases: list[polling.Lease], per_message: int) -> bool:
    """Queue the polls of the claimed feeds through one producer in a publish batch (on
    Redis a pipeline: one round trip per batch instead of one per message, which is
    what kept a 10,000-feed cycle waiting for the dispatcher). If the broker fails,
    the feeds are given back at once and False is returned."""
    if not leases:
        return True
    try:
        with app.producer_or_acquire() as producer, producer.batch(max_size=500):
            for message in poll_messages(leases, per_message):
                poll_feeds.apply_async(args=(message,), producer=producer)
    except Exception as exc:  # noqa: BLE001 (any broker failure)
        log.warning("enqueue_failed", task=poll_feeds.name, count=len(leases), error=str(exc))
        _release(leases)
        return False
    return True


def _release(leases: list[polling.Lease]) -> None:
    """Give back claimed feeds whose poll messages may not have been queued, so that the
    next dispatcher run claims them again instead of waiting ``poll_lease_seconds`` for
    the leases to run out. A message of the batch that did reach the broker carries the
    old lease token and does nothing; a poll already running loses its lease and rolls
    back (or, if it committed first, the feed is no longer due)."""
    try:
        with unit_of_work() as session:
            session.execute(
                update(Feed)
                .where(col(Feed.id).in_([feed_id for feed_id, _ in leases]))
                .values(lease_until=None)
            )
    except ENVIRONMENT_ERRORS as exc:
        log.warning("release_failed", count=len(leases), error=str(exc))


def step_task_for(state: str) -> Any:
    from tasks.fetching import fetch_article
    from tasks.processing import claims_article, dedup_article, extract_article

    return {
        "discovered": fetch_article,
        "fetched": extract_article,
        "extracted": dedup_article,
        "deduplicated": claims_article,
    }[state]


def step_queue(state: str) -> str:
    """The queue the step of ``state`` is routed to (the app's own ``task_routes``)."""
    route = app.amqp.router.route({}, step_task_for(state).name, (), {})
    return str(route["queue"].name)


def sweepable_states(settings: Settings) -> set[str]:
    """Pending states whose step queue is not backlogged. While more than
    ``sweep_backlog_limit`` messages wait in a queue, the articles of its steps are
    most likely among them: re-sending would only pile duplicates onto the backlog (a
    large first import would grow without end). Once the queue drains below the limit,
    anything truly lost is re-sent. A broker that cannot be asked counts as empty."""
    from worker.pipeline.status import queue_depths

    pending = {s.value for s in PENDING_ARTICLE_STATES}
    limit = settings.sweep_backlog_limit
    if not limit:
        return pending
    depths = queue_depths(settings)
    busy = {q for q, depth in depths.items() if depth is not None and depth > limit}
    if busy:
        log.info("sweep_deferred", backlogged=sorted(busy), limit=limit)
    return {state for state in pending if step_queue(state) not in busy}


@app.task(name="tasks.maintenance.sweep", ignore_result=True)
def sweep(older_than: float | None = None) -> int:
    """Re-send the step of every article stuck in a pending state."""
    settings = get_settings()
    states = sweepable_states(settings)
    try:
        with unit_of_work() as session:
            stale = sweeping.stale_articles(session, settings, older_than=older_than, states=states)
    except ENVIRONMENT_ERRORS as exc:
        log.warning("sweep_failed", error=str(exc))
        return 0
    for article_id, state in stale:
        send(step_task_for(state), article_id)
    if stale:
        log.info("sweep_requeued", count=len(stale))
    return len(stale)
