"""`claimwire run`: the worker and the scheduler in one process.

The embedded default needs no server: a filesystem broker under the data directory and
a SQLite database. The same code runs against Redis and PostgreSQL when the settings
name them. ``until_idle`` polls every due feed once, processes everything that follows,
and stops once the database says nothing is pending.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import structlog

from worker.celery_app import QUEUES, app
from worker.db import unit_of_work
from worker.settings import Settings
from worker.status import pending_work

log = structlog.get_logger("claimwire.service")


def _idle_watch(stop: threading.Event, settings: Settings, tick: float = 0.5) -> None:
    """Dispatch due feeds at once (no waiting for the schedule) and stop the worker
    after the database has shown no pending work for a few consecutive checks."""
    from tasks.jobs import advance_jobs
    from tasks.maintenance import dispatch_due_feeds, sweep

    if settings.broker_is_embedded:
        # Nothing else consumes the embedded queue: whatever is pending lost its
        # message with the previous process, so send it again now.
        sweep(older_than=0)
        advance_jobs(reclaim=True)
    quiet = 0
    last_sweep = time.monotonic()
    while not stop.wait(tick):
        try:
            dispatch_due_feeds()
            advance_jobs()
            if time.monotonic() - last_sweep > settings.sweep_interval:
                sweep()
                last_sweep = time.monotonic()
            with unit_of_work() as session:
                pending = pending_work(session)
        except Exception as exc:  # noqa: BLE001 (keep watching; the worker reports errors)
            log.warning("idle_watch_error", error=str(exc))
            quiet = 0
            continue
        quiet = quiet + 1 if pending == 0 else 0
        if quiet >= 3:
            log.info("idle", msg="nothing pending; stopping")
            os.kill(os.getpid(), signal.SIGTERM)
            return


def run_service(settings: Settings, *, until_idle: bool = False) -> None:
    stop = threading.Event()
    worker = app.Worker(
        queues=list(QUEUES),
        pool="threads",
        concurrency=settings.worker_concurrency,
        beat=not until_idle,
        schedule_filename=str((settings.data_dir / "beat-schedule").resolve()),
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        # Celery's per-task lines only at DEBUG; claimwire's own log says what matters.
        loglevel="WARNING" if settings.log_level.upper() == "INFO" else settings.log_level.upper(),
        quiet=True,
        hostname=f"claimwire@{os.uname().nodename}-{os.getpid()}",
    )
    watcher = None
    if until_idle:
        watcher = threading.Thread(
            target=_idle_watch, args=(stop, settings), daemon=True, name="claimwire-idle-watch"
        )
        watcher.start()
    elif settings.broker_is_embedded:
        from tasks.jobs import advance_jobs
        from tasks.maintenance import sweep

        sweep(older_than=0)
        advance_jobs(reclaim=True)
    try:
        worker.start()
    finally:
        stop.set()
