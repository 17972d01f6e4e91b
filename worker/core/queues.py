"""The broker's queues, by the kind of work they carry, and how long a message may wait.

* ``io``: feed polls and page fetches (thread pools, many connections);
* ``cpu``: extraction, deduplication and claims (process pools);
* ``backfill``: job items and discovery, throttled per job, never ahead of live work;
* ``schedule``: the scheduler's own short tasks (dispatcher, sweep, job scheduling),
  consumed by every worker consuming ``io`` so they never wait behind fetches.

Which article step goes to which queue is declared in :mod:`worker.pipeline.steps`.
"""

from __future__ import annotations

from worker.core.settings import Settings

IO_QUEUE = "io"
CPU_QUEUE = "cpu"
BACKFILL_QUEUE = "backfill"
SCHEDULE_QUEUE = "schedule"
QUEUES = (IO_QUEUE, CPU_QUEUE, BACKFILL_QUEUE, SCHEDULE_QUEUE)


def queue_depths(settings: Settings) -> dict[str, int | None]:
    """Messages waiting per queue; None when the broker cannot be asked."""
    url = settings.effective_broker_url
    if settings.broker_is_embedded:
        folder = settings.broker_dir / "queue"
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        return {q: sum(1 for n in names if n.endswith(f".{q}.msg")) for q in QUEUES}
    if url.startswith(("redis://", "rediss://")):
        import redis  # only here: the embedded broker's commands need no Redis client

        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
            return {q: int(client.llen(q)) for q in QUEUES}
        except redis.RedisError:
            return dict.fromkeys(QUEUES)
    return dict.fromkeys(QUEUES)


# Redis hands a message that is still unacknowledged this long after its delivery to
# another worker. A retry with a countdown is delivered at once and held by the worker
# until its time: the countdown plus the task's own run must stay below this, or the
# task runs twice (Celery documents it for eta/countdown on Redis).
REDIS_VISIBILITY_TIMEOUT = 3600
COUNTDOWN_MARGIN = 300  # seconds kept free below the visibility timeout


def max_countdown(settings: Settings) -> float:
    """The longest countdown a task may schedule: the visibility timeout less the task's
    hard time limit and a margin (3,000 s with the defaults). A longer wait is held by
    the database instead (the article's sweep mark,
    :func:`worker.pipeline.attempts.hold_sweep`):
    the capped retry finds the wait not over and waits again, and if that chain is lost
    the sweep sends the step when it is due."""
    return float(max(60, REDIS_VISIBILITY_TIMEOUT - settings.task_time_limit - COUNTDOWN_MARGIN))


# The names on the wire of the tasks that are not article steps (those are declared with
# their steps in worker.pipeline.steps). Code that sends one by name uses these.
DISPATCH_TASK = "tasks.maintenance.dispatch_due_feeds"
SWEEP_TASK = "tasks.maintenance.sweep"
POLL_FEEDS_TASK = "tasks.polling.poll_feeds"
ADVANCE_JOBS_TASK = "tasks.jobs.advance_jobs"
DISCOVER_JOB_TASK = "tasks.jobs.discover_job"
PROCESS_ITEM_TASK = "tasks.jobs.process_item"
