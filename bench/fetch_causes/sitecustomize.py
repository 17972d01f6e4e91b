"""Every fetch the io worker runs, with why it ended, for docs/benchmarks.md (issue 16,
branch ``prodhold``).

With this folder on ``PYTHONPATH`` and ``CW_FETCH_LOG`` naming a file, every process
that runs claimwire's fetch task appends one JSON line to it per run: the article, the
message's ``retries``, its ETA and when it started (``time.time()``; a run of a fetch
held in the process and given to the worker's pool, ``worker.pipeline.reruns.InProcessRuns``,
has no message: ``"in": 1`` and no ETA), its thread CPU, and its cause: ``ran`` (the
step ran), ``look`` (sent back by the ready look: ``wait_for_host``), ``slot`` (sent back
at the slot's take: ``settle`` on ``HostBusy``) or ``err:<type>``, with the seconds to
the turn it was sent back for (``wait``). Then
``python -m bench.fetch_causes_report F --pages N``:

    PYTHONPATH=bench/fetch_causes CW_FETCH_LOG=/tmp/fetches.jsonl .venv/bin/python \\
        -m bench.frontier_speed --mode production --hosts 100
    .venv/bin/python -m bench.fetch_causes_report /tmp/fetches.jsonl --pages 1124

A second ``sitecustomize`` on ``PYTHONPATH`` (``--send-log``'s) is not imported: with
both, name both files in ``CW_SITECUSTOMIZE_ALSO`` (``os.pathsep``-separated), and
this one runs them too.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import datetime
from typing import Any


def _install(path: str) -> None:
    while "tasks.articles" not in sys.modules or not hasattr(
        sys.modules["tasks.articles"], "TASKS"
    ):
        time.sleep(0.01)
    from celery import signals

    import worker.pipeline.attempts as attempts
    from worker.network.politeness import HostBusy

    local = threading.local()
    lock = threading.Lock()
    out = open(path, "a", buffering=1)  # noqa: SIM115 (open for the process's life)
    wait_for_host, settle = attempts.wait_for_host, attempts.settle

    def traced_wait(article_id: int, wait: Any, settings: Any) -> Any:
        local.cause, local.wait = "look", wait.seconds
        return wait_for_host(article_id, wait, settings)

    def traced_settle(label: str, article_id: int, exc: Exception, *rest: Any) -> Any:
        if isinstance(exc, HostBusy):
            local.cause, local.wait = "slot", exc.retry_after
        else:
            local.cause = "err:" + type(exc).__name__
        return settle(label, article_id, exc, *rest)

    attempts.wait_for_host, attempts.settle = traced_wait, traced_settle

    def write(line: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(line) + "\n")

    def begin() -> tuple[float, float]:
        local.cause, local.wait = "ran", 0.0
        return time.time(), time.thread_time()

    def prerun(task: Any = None, **_: Any) -> None:
        if task is not None and task.name.endswith("fetch_article"):
            local.started = begin()

    def postrun(task: Any = None, args: Any = None, **_: Any) -> None:
        if task is None or not task.name.endswith("fetch_article"):
            return
        eta = task.request.eta
        if isinstance(eta, str):
            eta = datetime.fromisoformat(eta)
        t0, c0 = local.started
        write(
            {
                "a": args[0] if args else None,
                "r": task.request.retries or 0,
                "eta": eta.timestamp() if isinstance(eta, datetime) else eta,
                "t": t0,
                "cpu": time.thread_time() - c0,
                "cause": local.cause,
                "wait": local.wait,
            }
        )

    signals.task_prerun.connect(prerun, weak=False)
    signals.task_postrun.connect(postrun, weak=False)
    runs = getattr(sys.modules.get("worker.pipeline.reruns"), "InProcessRuns", None)
    if runs is None:
        return
    run = runs._run

    def traced_run(self: Any, token: int) -> None:
        item = self._queued.get(token)
        t0, c0 = begin()
        run(self, token)
        if item is not None:
            cpu = time.thread_time() - c0
            write(
                {
                    "a": item[1],
                    "r": item[2],
                    "eta": None,
                    "t": t0,
                    "cpu": cpu,
                    "in": 1,
                    "cause": local.cause,
                    "wait": local.wait,
                }
            )

    runs._run = traced_run


for _also in filter(None, os.environ.get("CW_SITECUSTOMIZE_ALSO", "").split(os.pathsep)):
    with open(_also) as _f:
        exec(compile(_f.read(), _also, "exec"), {"__name__": "sitecustomize_also"})
if os.environ.get("CW_FETCH_LOG"):
    threading.Thread(target=_install, args=(os.environ["CW_FETCH_LOG"],), daemon=True).start()
