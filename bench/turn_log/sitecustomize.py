"""Log every slot the in-process host limiter hands out, for the politeness check of
``bench/frontier_speed.py`` (issue 16: a gap between two page requests of one host
shorter than the interval, as the feed server saw them arrive).

With this folder on ``PYTHONPATH`` and ``CW_TURN_LOG`` naming a file, each process that
imports ``worker.network.politeness`` appends ``<host> <key> <CLOCK_MONOTONIC>`` to it
for every slot taken (the moment the limiter lets the request start), to be compared
with the server's arrival times (``--request-log``; the same system-wide clock):

    PYTHONPATH=bench/turn_log CW_TURN_LOG=/tmp/turns.log .venv/bin/python \\
        -m bench.frontier_speed --mode embedded --hosts 10 --pages 100 --no-bare \\
        --request-log /tmp/requests.log
"""

from __future__ import annotations

import os
import sys
import threading
import time


def _patch(path: str) -> None:
    while "worker.network.politeness" not in sys.modules:
        time.sleep(0.005)
    module = sys.modules["worker.network.politeness"]
    while not hasattr(module, "LocalHostLimiter"):  # still being imported
        time.sleep(0.005)
    cls = module.LocalHostLimiter
    original = cls._take
    lock = threading.Lock()

    def _take(self, host, key, now, mode="take"):  # type: ignore[no-untyped-def]
        took = original(self, host, key, now, mode)
        if took and mode != "book":
            with lock, open(path, "a") as f:
                f.write(f"{host} {key or '-'} {now - self.offset:.6f}\n")
        return took

    cls._take = _take


if os.environ.get("CW_TURN_LOG"):
    threading.Thread(target=_patch, args=(os.environ["CW_TURN_LOG"],), daemon=True).start()
