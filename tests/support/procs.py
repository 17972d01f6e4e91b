"""Process helpers only the tests use, on top of :mod:`worker.testing.procs` (the
processes themselves, shared with the benchmarks)."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator

from worker.testing.procs import Proc


def in_flight(log: str, task_prefix: str = "") -> list[str]:
    """Task ids a worker log shows as received but not yet finished."""
    received: dict[str, str] = {}
    for m in re.finditer(r"Task (\S+)\[([0-9a-f-]{36})\] received", log):
        received[m.group(2)] = m.group(1)
    for m in re.finditer(r"Task \S+\[([0-9a-f-]{36})\] (succeeded|retry|raised)", log):
        received.pop(m.group(1), None)
    return [tid for tid, name in received.items() if name.startswith(task_prefix)]


@contextlib.contextmanager
def processes(*procs: Proc) -> Iterator[tuple[Proc, ...]]:
    """Start processes and always stop them (and dump the tail of their logs on error)."""
    try:
        for p in procs:
            p.start()
        yield procs
    except BaseException:
        for p in procs:
            sys.stderr.write(f"\n----- {p.name} log tail -----\n{p.log()[-4000:]}\n")
        raise
    finally:
        for p in procs:
            p.stop(timeout=10)
