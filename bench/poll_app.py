"""The Celery app of ``bench/poll_cycle.py``: the production app, measured.

Workers and beat of the poll benchmark run ``celery -A bench.poll_app ...``. This is
``worker.celery_app.app`` itself (same tasks, settings, queues and dispatcher) with two
bench-only additions:

* the fetch step's task (article fetches) is routed to the queue ``bench-fetch``: no
  worker consumes it in the benchmark's first cycle (every feed new: its fetches are
  counted and dropped), the io workers do in the second.
* ``worker.feeds.polling.claim_due_feeds`` and the dispatcher task are timed, and every call
  is appended as a JSON line to the Redis lists ``bench:claims`` and ``bench:dispatch``.
* each poll message and fetch that starts in a thread records how late it starts against
  the time its message was due (its ``eta``; a message of the dispatcher is due
  ``TURN_LEAD`` before its first turn) and how many tasks its process was running then,
  in the Redis list ``bench:late`` (the poll cycle's slip, issue 16).
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime
from typing import Any

import redis
from celery.signals import task_postrun, task_prerun, worker_shutdown
from sqlmodel import Session

from worker.celery_app import app
from worker.core import queues
from worker.core.settings import Settings, get_settings
from worker.feeds import polling
from worker.pipeline.steps import FIRST

FETCH_QUEUE = "bench-fetch"
DISPATCH_TASK = queues.DISPATCH_TASK

app.conf.task_routes = {**app.conf.task_routes, FIRST.task_name: {"queue": FETCH_QUEUE}}

_redis: redis.Redis | None = None


def _push(key: str, item: dict[str, Any]) -> None:
    global _redis
    try:
        if _redis is None:
            _redis = redis.Redis.from_url(get_settings().effective_broker_url)
        _redis.rpush(key, json.dumps(item))
    except Exception:  # (measurement must never break the system measured)
        pass


_claim = polling.claim_due_feeds


def _timed_claim(
    session: Session, settings: Settings, now: datetime | None = None, limit: int | None = None
) -> list[Any]:
    started = time.perf_counter()
    ids = _claim(session, settings, now, limit)
    _push("bench:claims", {"at": time.time(), "s": time.perf_counter() - started, "n": len(ids)})
    return ids


polling.claim_due_feeds = _timed_claim  # tasks.schedule calls polling.claim_due_feeds

_starts: dict[str, tuple[float, float]] = {}
_LATE_TASKS = {queues.POLL_FEEDS_TASK: "poll", FIRST.task_name: "fetch"}
_running = [0]  # tasks of this process between prerun and postrun (threads pool)
_running_lock = threading.Lock()


@task_prerun.connect  # type: ignore[untyped-decorator]
def _late(task_id: str = "", task: Any = None, **_: Any) -> None:
    name = getattr(task, "name", "")
    with _running_lock:
        _running[0] += 1
    if name not in _LATE_TASKS:
        return
    try:
        eta = task.request.eta
        now = time.time()
        due = datetime.fromisoformat(eta).timestamp() if eta else None
        late = None if due is None else round(now - due, 4)
        _push(
            "bench:late",
            {"at": now, "kind": _LATE_TASKS[name], "late": late, "running": _running[0]},
        )
    except Exception:  # (measurement must never break the system measured)
        pass


@task_postrun.connect  # type: ignore[untyped-decorator]
def _ended(**_: Any) -> None:
    with _running_lock:
        _running[0] -= 1


@task_prerun.connect  # type: ignore[untyped-decorator]
def _dispatch_started(task_id: str = "", task: Any = None, **_: Any) -> None:
    if getattr(task, "name", "") == DISPATCH_TASK:
        _starts[task_id] = (time.time(), time.perf_counter())


@task_postrun.connect  # type: ignore[untyped-decorator]
def _dispatch_ended(task_id: str = "", task: Any = None, retval: Any = None, **_: Any) -> None:
    if getattr(task, "name", "") == DISPATCH_TASK and task_id in _starts:
        at, started = _starts.pop(task_id)
        _push(
            "bench:dispatch",
            {"at": at, "s": time.perf_counter() - started, "n": retval if retval else 0},
        )


# --profile of the benchmark: CPU profile of a worker (meaningful with --pool solo,
# where every task and the consumer run in the main thread).
if os.environ.get("BENCH_PROFILE"):
    import cProfile

    _profiler = cProfile.Profile(time.process_time)

    _profiling = False

    @task_prerun.connect  # type: ignore[untyped-decorator]
    def _profile_start(**_: Any) -> None:
        """Start once the benchmark creates ``<BENCH_PROFILE>.on`` (before cycle 2)."""
        global _profiling
        if not _profiling and os.path.exists(os.environ["BENCH_PROFILE"] + ".on"):
            _profiling = True
            _profiler.enable()

    @worker_shutdown.connect  # type: ignore[untyped-decorator]
    def _profile_dump(**_: Any) -> None:
        _profiler.disable()
        _profiler.dump_stats(os.environ["BENCH_PROFILE"])


__all__ = ["app"]
