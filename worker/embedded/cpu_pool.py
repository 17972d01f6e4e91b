"""The CPU steps of `claimwire run` in worker processes of their own.

Extraction, deduplication and claims are CPU-bound Python: in the threads of the `run`
process they share one core (the GIL), however many the machine has. So `claimwire run`
starts Celery workers of their own for the ``cpu`` queue of the same broker, one process
per core (``python -m worker.embedded.cpu_pool``, each running one step at a time), and
its own worker consumes the other queues. The children stop when the `run` process
stops them, and on their own when the `run` process is gone (a `kill -9` of the parent
leaves no orphan consuming the queue). The embedded broker's consumers take a message by
renaming its file (:mod:`worker.embedded.broker`), so no two processes take one message.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import NoReturn

import structlog

from worker.core.settings import Settings

log = structlog.get_logger("claimwire.service")

MAX_AUTO_PROCESSES = 4
"""The automatic count's ceiling: each process holds its own spaCy pipeline and
extractor (a few hundred MB), and a laptop shares its cores with its user."""


def cpu_processes(settings: Settings) -> int:
    """Processes for the CPU steps: the setting, or with -1 one more than the cores (at
    most :data:`MAX_AUTO_PROCESSES`). 0: none, the steps run in the `run` process's
    threads.

    One more than the cores: between two steps a CPU process waits (for SQLite's write
    lock, held by another process's step, and for its next message), and with one
    process a core those waits left the cores idle a third of the run; a third process
    on two cores took 1,124 pages over 100 hosts from 87.6-87.9 s to 79.1-79.7 s (two
    pairs run one after the other, docs/benchmarks.md)."""
    if settings.embedded_cpu_processes >= 0:
        return settings.embedded_cpu_processes
    return max(1, min(MAX_AUTO_PROCESSES, (os.cpu_count() or 1) + 1))


class CpuPool:
    """The child worker processes, started and stopped by :func:`run_service`: each a
    fresh interpreter running one step at a time (``--pool solo``). Not a prefork pool:
    a process forked from one that has the SQLite file open inherits SQLite's
    in-process lock state, and its writes then wait for a lock nobody holds."""

    def __init__(self, settings: Settings, processes: int) -> None:
        self.settings = settings
        self.processes = processes
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()
        self._signalled: set[int] = set()
        self._watch: threading.Thread | None = None

    def start(self) -> CpuPool:
        self.procs = [self._spawn() for _ in range(self.processes)]
        self._watch = threading.Thread(target=self._supervise, daemon=True, name="claimwire-cpu")
        self._watch.start()
        return self

    def _spawn(self) -> subprocess.Popen[bytes]:
        # The same interpreter and module, the environment inherited: the same settings.
        args = [sys.executable, "-m", "worker.embedded.cpu_pool", str(os.getpid())]
        # Their stdout goes to stderr: the run's stdout carries only its own output
        # (Celery's "worker: Warm shutdown" line at a child's stop included).
        return subprocess.Popen(args, stdout=2)  # noqa: S603 (our own module)

    def _supervise(self) -> None:
        """Start a child again if it dies while the run goes on."""
        while not self._stopping.wait(1.0):
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None and not self._stopping.is_set():
                    log.warning("cpu_worker_restarted", exit_code=proc.returncode)
                    self.procs[i] = self._spawn()

    def ask_to_stop(self) -> None:
        """Tell every child to stop (warm: the step in hand finishes, no new one is
        taken), without waiting; once only, since a second signal could make Celery's
        shutdown cold."""
        self._stopping.set()
        for proc in self.procs:
            if proc.poll() is None and proc.pid not in self._signalled:
                self._signalled.add(proc.pid)
                proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        running = [p for p in self.procs if p.poll() is None]
        self.ask_to_stop()
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def main(argv: list[str]) -> int:
    from worker.celery_app import app
    from worker.core.queues import CPU_QUEUE
    from worker.core.settings import get_settings
    from worker.embedded.quiet import quiet_after_setup, quiet_per_item_events

    settings = get_settings()
    parent = int(argv[0]) if argv else 0
    if parent:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    quiet_per_item_events(settings)
    from celery.signals import after_setup_logger

    after_setup_logger.connect(quiet_after_setup, weak=False)
    worker = app.Worker(
        queues=[CPU_QUEUE],
        pool="solo",
        concurrency=1,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        loglevel="WARNING" if settings.log_level.upper() == "INFO" else settings.log_level.upper(),
        quiet=True,
        hostname=f"claimwire-cpu@{os.uname().nodename}-{os.getpid()}",
    )
    worker.start()
    return int(worker.exitcode or 0)


def exit_now(code: int) -> NoReturn:
    """End the process once its worker has stopped, without the interpreter's
    finalization: tearing down the loaded claims model and its libraries took 4-5 s (at
    load 8-19), which the run waited for in :meth:`CpuPool.stop`. Nothing is left to do
    by then: every step has committed, the messages are taken, the exit handlers run
    here and the output is flushed."""
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
