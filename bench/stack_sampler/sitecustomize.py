"""A wall-clock stack sampler for every Python process of a benchmark (no py-spy here).

With this folder on ``PYTHONPATH`` and ``CW_STACK_SAMPLES`` naming a folder, every Python
process started with that environment (the benchmark, ``claimwire run``, its CPU
processes) samples the stacks of all its threads every 10 ms and, at exit, writes
``<folder>/<pid>.txt``: its command line, then per function (``file:name``) the number of
samples it was on a thread's stack (inclusive) and on top of it (self). A thread waiting
(for a lock, a socket, SQLite's busy handler) is sampled too: the counts say where the
threads' time goes, not only the CPU's. Used for docs/benchmarks.md:

    PYTHONPATH=bench/stack_sampler CW_STACK_SAMPLES=/tmp/stacks \\
        .venv/bin/python -m bench.frontier_speed --mode embedded --hosts 20 --pages 150 --no-bare
"""

from __future__ import annotations

import atexit
import collections
import os
import sys
import threading
import time


def _start(folder: str) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()

    def loop() -> None:
        me = threading.get_ident()
        while True:
            time.sleep(0.01)
            for tid, frame in sys._current_frames().items():
                if tid == me:
                    continue
                stack: list[str] = []
                f = frame
                while f is not None and len(stack) < 80:
                    stack.append(f"{os.path.basename(f.f_code.co_filename)}:{f.f_code.co_name}")
                    f = f.f_back
                own[stack[0]] += 1
                inclusive.update(set(stack))

    threading.Thread(target=loop, daemon=True, name="stack-sampler").start()

    def dump() -> None:
        with open(os.path.join(folder, f"{os.getpid()}.txt"), "w") as out:
            out.write(" ".join(sys.argv) + "\n== inclusive\n")
            out.writelines(f"{n} {k}\n" for k, n in inclusive.most_common(120))
            out.write("== self\n")
            out.writelines(f"{n} {k}\n" for k, n in own.most_common(60))

    atexit.register(dump)


if os.environ.get("CW_STACK_SAMPLES"):
    os.makedirs(os.environ["CW_STACK_SAMPLES"], exist_ok=True)
    _start(os.environ["CW_STACK_SAMPLES"])
