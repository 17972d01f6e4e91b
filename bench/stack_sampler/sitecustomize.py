"""A stack sampler for every Python process of a benchmark (no py-spy here).

With this folder on ``PYTHONPATH`` and ``CW_STACK_SAMPLES`` naming a folder, every Python
process started with that environment (the benchmark, ``claimwire run``, its CPU
processes) samples the stacks of all its threads every 10 ms and, at exit, writes
``<folder>/<pid>.txt``: its command line, then per function (``file:name``) the number of
samples it was on a thread's stack (inclusive) and on top of it (self). A thread waiting
(for a lock, a socket, SQLite's busy handler) is sampled too: the counts say where the
threads' time goes, not only the CPU's. Used for docs/benchmarks.md:

    PYTHONPATH=bench/stack_sampler CW_STACK_SAMPLES=/tmp/stacks \\
        .venv/bin/python -m bench.frontier_speed --mode embedded --hosts 20 --pages 150 --no-bare

With ``CW_STACK_CPU`` set as well, each sample of a thread weighs the CPU time that
thread used since its previous sample (read from ``/proc/self/task/TID/stat``, in clock
ticks), so a waiting thread weighs nothing and the counts say where the CPU goes
(ticks, 10 ms each on Linux; the sampler's own CPU is left out). A second section,
``== lines``, then gives the self ticks per line (``file:line name``).

A forked child (the embedded run's CPU processes, forked by their zygote) samples itself
and writes its own file. The sampler reads a thread's stack when it gets the GIL, which
a busy thread mostly lets go at a call that releases it (a system call, ``sleep``,
SQLite's ``execute``): the CPU of the Python before such a call is counted on it. Read
the self and line counts with that in mind, and time a suspect with ``thread_time``.
"""

from __future__ import annotations

import _thread
import atexit
import collections
import os
import sys
import threading
import time


def _thread_ticks(native: int) -> int | None:
    try:
        with open(f"/proc/self/task/{native}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def _start(folder: str, cpu: bool) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    lines: collections.Counter[str] = collections.Counter()
    last_ticks: dict[int, int] = {}
    # Around a fork (the embedded run's zygote forks its CPU processes) the sampler
    # pauses, and a forked child starts a sampler of its own with empty counts: a fork
    # copies only the thread that forks, so the child would otherwise sample nothing and
    # write the zygote's counts as its own. The sampler is a raw ``_thread``, which
    # ``threading.active_count()`` does not see: the zygote waits for its other threads
    # to end before each fork (``worker.embedded.cpu_pool._only_thread``).
    paused = _thread.allocate_lock()
    forked: dict[int, int] = {}  # a forked child's thread: its own native id (threading
    # keeps the parent's for it)

    def loop() -> None:
        me = threading.get_ident()
        while True:
            time.sleep(0.01)
            with paused:
                sample(me)

    def sample(me: int) -> None:
        natives = {t.ident: t.native_id for t in threading.enumerate()} if cpu else {}
        natives.update(forked)
        for tid, frame in sys._current_frames().items():
            if tid == me:
                continue
            weight = 1
            if cpu:
                native = natives.get(tid)
                ticks = _thread_ticks(native) if native is not None else None
                if ticks is None:
                    continue
                weight = ticks - last_ticks.get(tid, ticks)
                last_ticks[tid] = ticks
                if weight <= 0:
                    continue
            stack: list[str] = []
            f = frame
            while f is not None and len(stack) < 80:
                stack.append(f"{os.path.basename(f.f_code.co_filename)}:{f.f_code.co_name}")
                f = f.f_back
            own[stack[0]] += weight
            lines[
                f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
                f" {frame.f_code.co_name}"
            ] += weight
            for name in set(stack):
                inclusive[name] += weight

    _thread.start_new_thread(loop, ())

    def in_child() -> None:
        if paused.locked():
            paused.release()
        inclusive.clear()
        own.clear()
        lines.clear()
        last_ticks.clear()
        forked[threading.get_ident()] = threading.get_native_id()
        _thread.start_new_thread(loop, ())

    os.register_at_fork(
        before=paused.acquire,
        after_in_parent=paused.release,
        after_in_child=in_child,
    )

    def dump() -> None:
        with open(os.path.join(folder, f"{os.getpid()}.txt"), "w") as out:
            out.write(" ".join(sys.argv) + "\n")
            if cpu:
                out.write(f"CPU ticks (10 ms) in all {sum(own.values())}\n")
            out.write("== inclusive\n")
            out.writelines(f"{n} {k}\n" for k, n in inclusive.most_common(160))
            out.write("== self\n")
            out.writelines(f"{n} {k}\n" for k, n in own.most_common(80))
            if cpu:
                out.write("== lines\n")
                out.writelines(f"{n} {k}\n" for k, n in lines.most_common(60))

    atexit.register(dump)


if os.environ.get("CW_STACK_SAMPLES"):
    os.makedirs(os.environ["CW_STACK_SAMPLES"], exist_ok=True)
    _start(os.environ["CW_STACK_SAMPLES"], bool(os.environ.get("CW_STACK_CPU")))
