"""The scheduler's tasks (``schedule`` queue): the feed dispatcher, the recovery sweep
and job scheduling."""

from __future__ import annotations

import structlog

from worker.celery_app import app
from worker.core import outbox
from worker.core.db import unit_of_work
from worker.core.queues import ADVANCE_JOBS_TASK, DISPATCH_TASK, POLL_FEEDS_TASK, SWEEP_TASK
from worker.core.settings import get_settings
from worker.feeds import polling
from worker.jobs.work import advance_once
from worker.pipeline import resources
from worker.pipeline import sweep as sweeping
from worker.pipeline.attempts import ENVIRONMENT_ERRORS, short_error

log = structlog.get_logger("claimwire.tasks")


@app.task(name=DISPATCH_TASK, ignore_result=True)
def dispatch_due_feeds() -> int:
    """Lease due feeds in bounded batches and queue their polls, a few feeds per
    message (``poll_feeds_per_message``), sent together once the leases have
    committed. When the broker refuses them, the feeds are given back at once instead
    of waiting ``poll_lease_seconds`` for their leases to run out. Each poll is sent
    for its feed's turn on its host's timeline (``polling.plan_polls``), so many feeds
    of one host are spaced by the host's politeness without holding a worker."""
    settings = get_settings()
    total = 0
    try:
        for _ in range(20):  # bounded: at most 20 batches per run
            with unit_of_work() as session:
                leases = polling.claim_due_feeds(session, settings)
                hosts = polling.feed_hosts(session, [lease.feed_id for lease in leases])
            # Each feed gets its turn on its host's timeline; its poll is sent for then.
            plan = polling.plan_polls(leases, hosts, resources.host_limiter(), settings)
            if plan.later:
                with unit_of_work() as session:
                    polling.defer_feeds(session, plan.later)
            messages = [
                outbox.Message(POLL_FEEDS_TASK, (args,), countdown)
                for countdown, args in plan.messages
            ]
            if not outbox.deliver(messages):
                with unit_of_work() as session:
                    polling.release_leases(session, leases)
                break  # the broker is failing: the next run tries again
            total += len(leases) - len(plan.later)
            if len(leases) < settings.dispatch_batch_size:
                break
    except ENVIRONMENT_ERRORS as exc:
        log.warning("dispatch_failed", error=str(exc))
    return total


@app.task(name=SWEEP_TASK, ignore_result=True)
def sweep(older_than: float | None = None) -> int:
    """Re-send the step of every article stuck in a pending state."""
    settings = get_settings()
    states = sweeping.sweepable_states(settings)
    try:
        with unit_of_work() as session:
            stale = sweeping.resend_stale(session, settings, older_than=older_than, states=states)
    except ENVIRONMENT_ERRORS as exc:
        log.warning("sweep_failed", error=str(exc))
        return 0
    if stale:
        log.info("sweep_requeued", count=len(stale))
    return len(stale)


@app.task(name=ADVANCE_JOBS_TASK, ignore_result=True)
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
