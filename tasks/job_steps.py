"""A job's work on the ``backfill`` queue: its discovery and its items
(``worker.jobs.work``), each message mapped to done or retry."""

from __future__ import annotations

from tasks.base import ClaimwireTask
from worker.celery_app import app
from worker.core.queues import DISCOVER_JOB_TASK, PROCESS_ITEM_TASK
from worker.jobs import work


@app.task(bind=True, base=ClaimwireTask, name=DISCOVER_JOB_TASK)
def discover_job(self: ClaimwireTask, job_id: int) -> int:
    """Read the next archive pages or sitemaps of a job, then hand over to the next
    message (``worker.jobs.work.discover``)."""
    added, outcome = work.discover(job_id, self.request.retries or 0)
    self.settle(outcome)
    return added


@app.task(bind=True, base=ClaimwireTask, name=PROCESS_ITEM_TASK)
def process_item(self: ClaimwireTask, job_id: int, article_id: int) -> str | None:
    """One article of a job through the pipeline's steps, inline; returns the item's
    new state, or None while it is not finished (``worker.jobs.work.run_item``)."""
    finished, outcome = work.run_item(job_id, article_id, self.request.retries or 0)
    self.settle(outcome)
    return finished
