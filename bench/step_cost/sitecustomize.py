"""CPU seconds and SQL statements per pipeline task, in every process of a benchmark.

With this folder on ``PYTHONPATH`` and ``CW_STEP_COST`` naming a file, every Python
process that runs claimwire's Celery tasks (``claimwire run``, its CPU processes, the
workers of the production topology) appends one JSON line to that file at exit: its
command line, its CPU seconds (``time.process_time``) before its worker was ready and in
all, and per task name the messages run, their CPU seconds on the thread that ran them
(``time.thread_time``, between Celery's ``task_prerun`` and ``task_postrun``; the first
message of each task apart too: it loads what the process loads once, such as the
claims model) and the SQL statements they executed (an engine event; with
``CW_STEP_SQL`` set, also counted by their first 70 characters). Used for
docs/benchmarks.md (issue 16):

    PYTHONPATH=bench/step_cost CW_STEP_COST=/tmp/steps.jsonl .venv/bin/python \\
        -m bench.frontier_speed --mode embedded --hosts 15 --pages 150 --no-bare
    .venv/bin/python -m bench.step_cost_report /tmp/steps.jsonl --pages 150
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from typing import Any


def _install(path: str, sql: bool) -> None:
    while "worker.pipeline.attempts" not in sys.modules:
        time.sleep(0.01)
    from celery import signals
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    local = threading.local()
    lock = threading.Lock()
    tasks: dict[str, list[float]] = {}  # name: [messages, cpu seconds, statements]
    first: dict[str, float] = {}  # name: CPU seconds of its first message
    shapes: dict[str, dict[str, int]] = {}  # name: {statement's first 70 characters: n}
    ready: list[float] = []

    def before_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        current = getattr(local, "task", None)
        if current is not None:
            current[2] += 1
            if sql:
                shape = " ".join(statement.split())[:70]
                with lock:
                    seen = shapes.setdefault(current[0], {})
                    seen[shape] = seen.get(shape, 0) + 1

    event.listen(Engine, "before_cursor_execute", before_execute)

    def prerun(task: Any = None, **_: Any) -> None:
        local.task = [task.name if task is not None else "?", time.thread_time(), 0]

    def postrun(**_: Any) -> None:
        current = getattr(local, "task", None)
        local.task = None
        if current is None:
            return
        spent = time.thread_time() - current[1]
        with lock:
            row = tasks.setdefault(current[0], [0, 0.0, 0])
            first.setdefault(current[0], spent)
            row[0] += 1
            row[1] += spent
            row[2] += current[2]

    def on_ready(**_: Any) -> None:
        ready.append(time.process_time())

    signals.task_prerun.connect(prerun, weak=False)
    signals.task_postrun.connect(postrun, weak=False)
    signals.worker_ready.connect(on_ready, weak=False)

    def write() -> None:
        line = {
            "pid": os.getpid(),
            "argv": sys.argv,
            "cpu_ready": ready[0] if ready else None,
            "cpu": time.process_time(),
            "tasks": tasks,
            "first": first,
            "statements": shapes,
        }
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")

    atexit.register(write)
    # A prefork worker's pool processes end with os._exit (no atexit): Celery's signal
    # just before a pool process exits writes theirs (the production cpu worker).
    signals.worker_process_shutdown.connect(lambda **_: write(), weak=False)


if os.environ.get("CW_STEP_COST"):
    _args = (os.environ["CW_STEP_COST"], bool(os.environ.get("CW_STEP_SQL")))
    threading.Thread(target=_install, args=_args, daemon=True).start()
