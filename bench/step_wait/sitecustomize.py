"""Where the processes of a benchmark wait: SQLite's write lock, the next message, the CPU.

With this folder on ``PYTHONPATH`` and ``CW_STEP_WAIT`` naming a file, every Python
process that runs claimwire's Celery tasks (``claimwire run``, its CPU processes)
appends one JSON line to that file at exit, summed by ``python -m bench.step_wait_report
FILE``:

* per task name, on the thread that ran each message (between Celery's ``task_prerun``
  and ``task_postrun``): wall seconds, CPU seconds (``time.thread_time``), seconds
  runnable but not running (the thread's run-queue wait, ``/proc/thread-self/schedstat``:
  the machine's other work, or the process's other threads holding the GIL), the rest
  asleep (a lock, a socket, a disk);
* per task name, SQLite's write transactions: the statement that made the transaction a
  write transaction (the first ``INSERT``/``UPDATE``/``DELETE`` while the connection is
  not in a transaction: SQLite takes the write lock there, waiting for another
  connection's in its busy handler, which sleeps), the time asleep in it (**the wait
  for the write lock**), the time from its start to the end of the commit (**the lock
  held**) and the CPU of the thread meanwhile, and the commit's own wall and sleep
  (WAL checkpoints);
* each message's start and end on ``CLOCK_MONOTONIC`` (one clock for every process),
  so the report can tell how long a process waited between two messages (its idle
  time) and how many CPU processes were in a step at each moment;
* the messages each process sent to the ``cpu`` queue, with their times;
* every 0.25 s, the process's CPU seconds and the whole machine's busy seconds
  (``/proc/stat``), for a timeline of the cores used.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from typing import Any

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _schedstat() -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable and waiting for one) of this thread."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            run, wait, _ = f.read().split()
        return int(run) / 1e9, int(wait) / 1e9
    except OSError:
        return 0.0, 0.0


def _install(path: str) -> None:
    while "worker.pipeline.attempts" not in sys.modules:
        time.sleep(0.01)
    from celery import signals
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.engine.default import DefaultDialect

    local = threading.local()
    lock = threading.Lock()
    # name: [messages, wall, cpu, runq, sql wall, sql sleep, write txns, lock wait,
    #        lock held, cpu while held, commit wall, commit sleep]
    tasks: dict[str, list[float]] = {}
    openers: dict[str, dict[str, list[float]]] = {}  # name: {statement: [n, wait, held]}
    spans: list[tuple[float, float, str]] = []
    sends: list[tuple[float, str]] = []
    started = time.monotonic()

    def row_of(name: str) -> list[float]:
        return tasks.setdefault(name, [0.0] * 12)

    def before_execute(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        current = getattr(local, "task", None)
        if current is None:
            return
        opener = False
        if statement.lstrip()[:7].upper().startswith(_WRITES):
            dbapi = conn.connection.dbapi_connection
            opener = getattr(dbapi, "in_transaction", True) is False
        local.stmt = (
            time.monotonic(),
            time.thread_time(),
            _schedstat(),
            " ".join(statement.split())[:60] if opener else None,
        )

    def after_execute(_conn: Any, _cursor: Any, *_: Any) -> None:
        current = getattr(local, "task", None)
        stmt = getattr(local, "stmt", None)
        local.stmt = None
        if current is None or stmt is None:
            return
        t0, c0, (r0, q0), opener = stmt
        wall = time.monotonic() - t0
        cpu = time.thread_time() - c0
        r1, q1 = _schedstat()
        asleep = max(0.0, wall - (r1 - r0) - (q1 - q0))
        current["sql_wall"] += wall
        current["sql_sleep"] += asleep
        if opener is not None:
            # the write lock is ours from here to the commit
            current["hold"] = (t0, c0, opener, asleep)
        del cpu

    event.listen(Engine, "before_cursor_execute", before_execute)
    event.listen(Engine, "after_cursor_execute", after_execute)

    def wrap(method: str) -> None:
        original = getattr(DefaultDialect, method)

        def timed(self: Any, dbapi_connection: Any) -> None:
            current = getattr(local, "task", None)
            if current is None:
                original(self, dbapi_connection)
                return
            t0, (r0, q0) = time.monotonic(), _schedstat()
            try:
                original(self, dbapi_connection)
            finally:
                t1, (r1, q1) = time.monotonic(), _schedstat()
                current["commit_wall"] += t1 - t0
                current["commit_sleep"] += max(0.0, (t1 - t0) - (r1 - r0) - (q1 - q0))
                hold = current.pop("hold", None)
                if hold is not None:
                    h0, hc0, opener, wait = hold
                    held = t1 - h0 - wait
                    current["txns"].append((opener, wait, held, time.thread_time() - hc0))

        setattr(DefaultDialect, method, timed)

    wrap("do_commit")
    wrap("do_rollback")

    def prerun(task: Any = None, **_: Any) -> None:
        local.task = {
            "name": task.name if task is not None else "?",
            "t0": time.monotonic(),
            "c0": time.thread_time(),
            "s0": _schedstat(),
            "sql_wall": 0.0,
            "sql_sleep": 0.0,
            "commit_wall": 0.0,
            "commit_sleep": 0.0,
            "txns": [],
        }

    def postrun(**_: Any) -> None:
        current = getattr(local, "task", None)
        local.task = None
        if current is None:
            return
        t1 = time.monotonic()
        _, q1 = _schedstat()
        name = current["name"]
        with lock:
            row = row_of(name)
            row[0] += 1
            row[1] += t1 - current["t0"]
            row[2] += time.thread_time() - current["c0"]
            row[3] += q1 - current["s0"][1]
            row[4] += current["sql_wall"]
            row[5] += current["sql_sleep"]
            for opener, wait, held, held_cpu in current["txns"]:
                row[6] += 1
                row[7] += wait
                row[8] += held
                row[9] += held_cpu
                o = openers.setdefault(name, {}).setdefault(opener, [0, 0.0, 0.0])
                o[0] += 1
                o[1] += wait
                o[2] += held
            row[10] += current["commit_wall"]
            row[11] += current["commit_sleep"]
            spans.append((current["t0"], t1, name))

    def published(routing_key: Any = None, headers: Any = None, **_: Any) -> None:
        if routing_key == "cpu":
            with lock:
                sends.append((time.monotonic(), (headers or {}).get("task", "?")))

    samples: list[tuple[float, float, float, float]] = []

    def machine() -> tuple[float, float]:
        """(busy, all) seconds of every core of the machine, from /proc/stat."""
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        ticks = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + fields[4]
        return (sum(fields) - idle) / ticks, sum(fields) / ticks

    def sample() -> None:
        while True:
            busy, total = machine()
            samples.append((time.monotonic(), time.process_time(), busy, total))
            time.sleep(0.25)

    threading.Thread(target=sample, daemon=True, name="step-wait-sampler").start()
    signals.task_prerun.connect(prerun, weak=False)
    signals.task_postrun.connect(postrun, weak=False)
    signals.after_task_publish.connect(published, weak=False)

    def write() -> None:
        line = {
            "pid": os.getpid(),
            "argv": sys.argv,
            "started": started,
            "ended": time.monotonic(),
            "cpu": time.process_time(),
            "tasks": tasks,
            "openers": openers,
            "spans": spans,
            "sends": sends,
            "samples": samples,
        }
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")

    atexit.register(write)


if os.environ.get("CW_STEP_WAIT"):
    threading.Thread(target=_install, args=(os.environ["CW_STEP_WAIT"],), daemon=True).start()
