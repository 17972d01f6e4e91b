"""`claimwire run`: the worker and the scheduler in one process.

The embedded default needs no server: a filesystem broker under the data directory and
a SQLite database. The same code runs against Redis and PostgreSQL when the settings
name them. ``until_idle`` polls every due feed once, processes everything that follows,
and stops once the database says nothing is pending.

``run_service`` says how it ended. ``until_idle`` is a batch job, so it does not wait
forever on a broker it cannot reach: it fails at once when the broker is unreachable at
the start, and gives up when its checks have failed for
``settings.until_idle_give_up`` seconds in a row. Nothing is lost either way: the
database holds the pending work for the next run. The service itself (no
``until_idle``) waits for its broker as long as it takes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

import structlog

from worker.celery_app import app
from worker.core.db import unit_of_work
from worker.core.queues import CPU_QUEUE, QUEUES
from worker.core.settings import Settings, mask_url
from worker.embedded.cpu_pool import CpuPool, cpu_processes
from worker.embedded.quiet import quiet_after_setup, quiet_per_item_events
from worker.reports.status import Progress, pending_work_at_most, progress

log = structlog.get_logger("claimwire.service")


# Seconds between the ``until_idle`` watcher's checks that the broker still answers.
BROKER_PROBE_EVERY = 5.0

# `until_idle`'s checks while this much work or more is pending (its end is not near):
# every BUSY_TICK seconds instead of every half second.
BUSY_PENDING = 50
BUSY_TICK = 2.0

# `until_idle`'s checks while fewer than NEAR_PENDING items are pending (the last
# articles' steps: the end is near), and the checks that confirm a check that found
# nothing pending: QUIET_CHECKS of them in a row, QUIET_TICK seconds apart, each also
# finding no message waiting in the broker's queues. (Before: every 0.5 s, three
# checks of the database alone, 1.0 s from the first to the last.)
NEAR_PENDING = 5
NEAR_TICK = 0.25
QUIET_CHECKS = 3
QUIET_TICK = 0.2

# Seconds between two progress lines of the embedded run at least (a line is printed
# only when a count changed).
PROGRESS_EVERY = 15.0

# Events the Celery workers log at INFO once per feed poll and per finished article
# step; the embedded run prints progress lines instead (they come back at DEBUG).


class ProgressReporter:
    """Calls ``emit`` with a progress line at most every ``every`` seconds, and only when
    the counts changed since the last line."""

    def __init__(
        self,
        emit: Callable[[str], None],
        since: datetime,
        every: float = PROGRESS_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.emit = emit
        self.since = since
        self.every = every
        self.clock = clock
        self.last_check = clock()
        self.previous: Progress | None = None

    def due(self) -> bool:
        return self.clock() - self.last_check >= self.every

    def report(self) -> str | None:
        """Count now (one unit of work) and emit a line if anything changed."""
        self.last_check = self.clock()
        with unit_of_work() as session:
            now = progress(session, self.since)
        if now == self.previous:
            return None
        self.previous = now
        line = now.line()
        self.emit(line)
        return line


def _progress_loop(stop: threading.Event, reporter: ProgressReporter, tick: float = 1.0) -> None:
    while not stop.wait(tick):
        if not reporter.due():
            continue
        try:
            reporter.report()
        except Exception as exc:  # noqa: BLE001 (the database may be down; the run says so)
            log.debug("progress_failed", error=str(exc))


class BrokerUnavailable(RuntimeError):
    """The broker cannot be reached; the message names it (password masked by the CLI)."""


class Ending(StrEnum):
    IDLE = "idle"  # nothing pending: the work is done
    STOPPED = "stopped"  # a signal (Ctrl-C, SIGTERM) stopped the run before that
    GAVE_UP = "gave_up"  # until_idle: broker or database unreachable for too long


def check_broker(settings: Settings, timeout: float = 5.0) -> None:
    """Raise ``BrokerUnavailable`` unless the broker accepts a connection within about
    ``timeout`` seconds (the embedded broker is a folder and always does)."""
    if settings.broker_is_embedded:
        return
    url = settings.effective_broker_url
    try:
        with app.connection_for_write(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
    except Exception as exc:  # kombu raises the transport's own errors
        reason = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
        raise BrokerUnavailable(f"cannot connect to the broker {mask_url(url)}: {reason}") from exc


def _transport_is_empty(settings: Settings) -> bool:
    """True for the embedded broker, and for a broker whose every queue is known empty."""
    if settings.broker_is_embedded:
        return True
    from worker.core.queues import queue_depths

    depths = queue_depths(settings)
    return all(depth == 0 for depth in depths.values())


def _messages_waiting(settings: Settings) -> bool:
    """Whether a message waits in one of claimwire's queues (or the broker cannot say):
    a message sent for an article that no pending state shows (a group's new
    canonical's claims step, sent after its transaction's commit) keeps the run going
    until a worker has taken it. Messages a worker holds (a fetch waiting for its turn)
    are not in the queues; their articles are pending."""
    from worker.core.queues import queue_depths

    return any(depth != 0 for depth in queue_depths(settings).values())


def _stop_worker(on_stop: list[Callable[[], None]]) -> None:
    """Stop this process's worker warmly: what a SIGTERM's handler does, without the
    handler's "worker: Warm shutdown" written straight to stdout (which carries only the
    command's output). ``on_stop`` is called at the same moment (the CPU pool's stop:
    its children have nothing left to take), not once the worker has stopped: the two
    stops (about a second each at load 10) overlap."""
    from celery.worker import state as worker_state

    worker_state.should_stop = 0
    for then in list(on_stop):
        then()


def _idle_watch(
    stop: threading.Event,
    settings: Settings,
    ending: list[Ending],
    on_stop: list[Callable[[], None]],
    tick: float = 0.5,
) -> None:
    """Dispatch due feeds at once (no waiting for the schedule) and stop the worker
    after the database has shown no pending work for a few consecutive checks, or after
    every check has failed for ``settings.until_idle_give_up`` seconds. ``ending`` gets
    the reason; ``on_stop``: see :func:`_stop_worker`."""
    from tasks.schedule import advance_jobs, dispatch_due_feeds, sweep

    if _transport_is_empty(settings):
        # Nothing waits in the broker (the embedded queue has no other consumer; an
        # empty Redis was flushed or restarted): whatever is pending lost its message,
        # or is running on another worker, which holds its row lock and is skipped, so
        # send it again now instead of after ``stale_after``.
        sweep(older_than=0)
        advance_jobs(reclaim=True)
    quiet = 0
    last_sweep = time.monotonic()
    failing_since: float | None = None
    give_up_after = settings.until_idle_give_up
    last_probe = 0.0
    # The first round at once: the due feeds dispatched now, not a tick after the start
    # (the run's first discovery waited for it: issue 16, the run's start).
    wait = 0.0
    while not stop.wait(wait):
        wait = tick
        try:
            if time.monotonic() - last_probe >= BROKER_PROBE_EVERY:
                # The database alone cannot tell that nothing will ever consume the
                # pending work: a broker that went away mid-run must count as failing.
                check_broker(settings, timeout=2.0)
                last_probe = time.monotonic()
            dispatch_due_feeds()
            advance_jobs()
            if time.monotonic() - last_sweep > settings.sweep_interval:
                sweep()
                last_sweep = time.monotonic()
            with unit_of_work() as session:
                # counted up to BUSY_PENDING only: the rule below needs no more (one
                # statement, each count stopping there, where the whole count read every
                # pending row every check)
                pending = pending_work_at_most(session, BUSY_PENDING)
        except Exception as exc:  # noqa: BLE001 (keep watching; the worker reports errors)
            log.warning("idle_watch_error", error=str(exc))
            quiet = 0
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since >= give_up_after:
                log.error(
                    "giving_up",
                    msg=f"checks failing for {give_up_after:.0f} s; pending work stays "
                    "in the database for the next run",
                    error=str(exc),
                )
                ending.append(Ending.GAVE_UP)
                _stop_worker(on_stop)
                return
            continue
        failing_since = None
        if pending >= BUSY_PENDING:
            wait = BUSY_TICK  # the end is not near: fewer checks (they were a sixth of
            # the run process's CPU, counting the pending work every half second)
        elif pending < NEAR_PENDING:
            wait = NEAR_TICK
        try:
            idle_now = pending == 0 and not _messages_waiting(settings)
        except OSError as exc:  # the queue folder cannot be listed: not idle
            log.warning("idle_watch_error", error=str(exc))
            idle_now = False
        quiet = quiet + 1 if idle_now else 0
        if quiet:
            wait = QUIET_TICK
        if quiet >= QUIET_CHECKS:
            # debug: `claimwire run --until-idle` says "claimwire: idle." itself, and a
            # log line with its time and level read as a second, different ending
            log.debug("idle", msg="nothing pending; stopping")
            ending.append(Ending.IDLE)
            _stop_worker(on_stop)
            return


def run_service(
    settings: Settings,
    *,
    until_idle: bool = False,
    emit_progress: Callable[[str], None] | None = None,
    progress_every: float = PROGRESS_EVERY,
    pool: CpuPool | None = None,
) -> Ending:
    """Run the worker (and, unless ``until_idle``, the scheduler) until it stops, and
    say why. ``until_idle`` raises ``BrokerUnavailable`` at once if the broker is down;
    the service logs it and waits for the broker. ``emit_progress`` gets a progress
    line (``worker.reports.status.Progress``) every ``progress_every`` seconds when a count
    changed. ``pool``: the CPU processes' pool, started by the caller before the
    database was ready (``CpuPool.start(release=False)``: its zygote warms meanwhile),
    released and stopped here; without it the pool is started here (when the settings
    ask for CPU processes)."""
    try:
        check_broker(settings)
    except BrokerUnavailable as exc:
        if until_idle:
            raise
        log.warning("broker_unavailable", error=str(exc), msg="waiting for it")
    stop = threading.Event()
    ending: list[Ending] = []
    quiet_per_item_events(settings)
    # The worker sets logging up again when it starts (worker.celery_app's
    # after_setup_logger handler); this receiver, connected later, runs after it.
    from celery.signals import after_setup_logger

    after_setup_logger.connect(quiet_after_setup, weak=False)
    if emit_progress is not None:
        from schemas.types import utcnow

        reporter = ProgressReporter(emit_progress, utcnow(), progress_every)
        threading.Thread(
            target=_progress_loop,
            args=(stop, reporter),
            daemon=True,
            name="claimwire-progress",
        ).start()
    processes = pool.processes if pool is not None else cpu_processes(settings)
    queues = [q for q in QUEUES if q != CPU_QUEUE] if processes else list(QUEUES)
    worker = app.Worker(
        queues=queues,
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
    on_stop: list[Callable[[], None]] = []  # called as the idle watcher stops the worker
    if until_idle:
        watcher = threading.Thread(
            target=_idle_watch,
            args=(stop, settings, ending, on_stop),
            daemon=True,
            name="claimwire-idle-watch",
        )
        watcher.start()
    elif settings.broker_is_embedded:
        from tasks.schedule import advance_jobs, sweep

        sweep(older_than=0)
        advance_jobs(reclaim=True)
    if pool is not None:
        pool.release()  # the database is ready: the warm zygote forks its workers
    elif processes:
        pool = CpuPool(settings, processes).start()
    if pool is not None:
        # The children stop taking steps the moment the run starts to stop (a signal,
        # or idle), not once its io threads have finished: a run stopped by a signal
        # leaves the rest pending, as it says.
        from celery.signals import worker_shutting_down

        def _children_stop(**_kwargs: Any) -> None:
            pool.ask_to_stop()

        worker_shutting_down.connect(_children_stop, weak=False)
        # (until_idle's watcher stops the worker without a signal: the same, at once)
        on_stop.append(pool.ask_to_stop)
    try:
        worker.start()
    finally:
        stop.set()
        from celery.worker import state as worker_state

        worker_state.should_stop = None  # a later worker of this process starts afresh
        if pool is not None:
            from celery.signals import worker_shutting_down

            worker_shutting_down.disconnect(_children_stop)
            pool.stop()
    return ending[0] if ending else Ending.STOPPED
