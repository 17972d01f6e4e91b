"""The CPU steps of `claimwire run` in worker processes of their own.

Extraction, deduplication and claims are CPU-bound Python: in the threads of the `run`
process they share one core (the GIL), however many the machine has. So `claimwire run`
starts Celery workers of their own for the ``cpu`` queue of the same broker (each running
one step at a time), and its own worker consumes the other queues. The embedded broker's
consumers take a message by renaming its file (:mod:`worker.embedded.broker`), so no two
processes take one message.

The workers start warm: the `run` process starts one **zygote** (``python -m
worker.embedded.cpu_pool --zygote``), a fresh interpreter that imports and loads what
the CPU steps need (:func:`worker.celery_app.warm_cpu_steps`: trafilatura, htmldate and
dateparser's locales, py3langid's model, datasketch, the claims' spaCy pipeline), and
then forks the worker processes. The loads are paid once instead of once a process, and
the children share those pages copy-on-write. The zygote never opens the database, the
broker or any engine (:func:`assert_no_database`, checked before every fork): a process
forked from one that has the SQLite file open inherits SQLite's in-process lock state,
and its writes then wait for a lock nobody holds. A child that dies is forked again from
the zygote; a zygote that dies is started again by the `run` process. Everything stops
when the `run` process stops it, and on its own when the `run` process is gone (a `kill
-9` of the parent leaves no orphan consuming the queue).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
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


STOP_TIMEOUT = 10.0
"""Seconds the zygote waits for its children's warm stop before killing them."""


class CpuPool:
    """The zygote process that forks the CPU worker processes, started and stopped by
    :func:`worker.embedded.run.run_service`. The workers are forked from it, not from the
    `run` process: that one has the SQLite file open, and a process forked from it would
    inherit SQLite's in-process lock state (its writes then wait for a lock nobody
    holds); the zygote never opens it."""

    def __init__(self, settings: Settings, processes: int) -> None:
        self.settings = settings
        self.processes = processes
        self.zygote: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._signalled: set[int] = set()
        self._watch: threading.Thread | None = None
        self._released = False

    def start(self, *, release: bool = True) -> CpuPool:
        """Start the zygote. With ``release=False`` it warms but forks no worker until
        :meth:`release`: `claimwire run` starts it first, so that its loads overlap the
        run's own start (the model check, the schema's upgrade), and lets the workers
        take steps only once the database is ready."""
        self.zygote = self._spawn()
        if release:
            self.release()
        self._watch = threading.Thread(target=self._supervise, daemon=True, name="claimwire-cpu")
        self._watch.start()
        return self

    def release(self) -> None:
        """Let the zygote fork its workers (once it is warm); once only."""
        self._released = True
        self._go(self.zygote)

    @staticmethod
    def _go(zygote: subprocess.Popen[bytes] | None) -> None:
        if zygote is None or zygote.stdin is None:
            return
        with contextlib.suppress(OSError):  # a zygote that died: started again
            zygote.stdin.write(b"go\n")
            zygote.stdin.flush()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # The same interpreter and module, the environment inherited: the same settings.
        args = [
            sys.executable,
            "-m",
            "worker.embedded.cpu_pool",
            "--zygote",
            str(os.getpid()),
            str(self.processes),
        ]
        # Their stdout is dropped: all Celery writes there is its "worker: Warm
        # shutdown (MainProcess)" line at each child's stop (three such lines after the
        # run's own summary); their log and any error go to stderr, as the run's do.
        # Its stdin: the `run` process's word that it may fork (:meth:`release`), and
        # its end (the `run` process gone) while it waits for it.
        return subprocess.Popen(  # noqa: S603
            args, stdout=subprocess.DEVNULL, stdin=subprocess.PIPE
        )

    def _supervise(self) -> None:
        """Start the zygote again if it dies while the run goes on (it forks its workers
        again; the old ones stop once they see their parent gone)."""
        while not self._stopping.wait(1.0):
            zygote = self.zygote
            if zygote is not None and zygote.poll() is not None and not self._stopping.is_set():
                log.warning("cpu_zygote_restarted", exit_code=zygote.returncode)
                self.zygote = self._spawn()
                if self._released:
                    self._go(self.zygote)

    def ask_to_stop(self) -> None:
        """Tell the zygote to stop its children (warm: the step in hand finishes, no new
        one is taken), without waiting; once only."""
        self._stopping.set()
        zygote = self.zygote
        if zygote is not None and zygote.poll() is None and zygote.pid not in self._signalled:
            self._signalled.add(zygote.pid)
            zygote.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self.ask_to_stop()
        zygote = self.zygote
        if zygote is None:
            return
        try:
            # the zygote kills what is left of its children after STOP_TIMEOUT
            zygote.wait(max(timeout, STOP_TIMEOUT) + 5.0)
        except subprocess.TimeoutExpired:
            zygote.kill()
            zygote.wait(5)


def assert_no_database(settings: Settings) -> None:
    """Raise when this process has a database engine or the SQLite file open: the zygote
    checks it before every fork (a forked child would inherit SQLite's lock state)."""
    from worker.core import db

    if db._engines:  # the engines this process made
        raise RuntimeError(
            f"the CPU workers' zygote has a database engine ({sorted(db._engines)}): "
            "a process forked from it would inherit SQLite's lock state"
        )
    url = settings.effective_database_url
    fds = Path("/proc/self/fd")
    if not url.startswith("sqlite") or not fds.is_dir():
        return
    database = url.split(":///", 1)[-1].split("?", 1)[0]
    if not database or database == ":memory:":
        return
    names = {str(Path(database).resolve()) + end for end in ("", "-wal", "-shm", "-journal")}
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        if target in names:
            raise RuntimeError(
                f"the CPU workers' zygote has {target} open: a process forked from it "
                "would inherit SQLite's lock state"
            )


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _only_thread(wait: float = 5.0) -> None:
    """Wait (a little) for every other thread of the zygote to end before a fork: a
    thread that holds a lock at the fork leaves it held in the child forever. The zygote
    starts none; a ``sitecustomize`` of a bench may."""
    deadline = time.monotonic() + wait
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    if threading.active_count() > 1:
        log.warning(
            "cpu_zygote_threads",
            threads=[t.name for t in threading.enumerate() if t is not threading.current_thread()],
        )


def zygote(parent: int, processes: int) -> int:
    """The zygote: warm once, then fork ``processes`` workers, fork again any that dies,
    and on SIGTERM or SIGINT stop them (warm, then killed after :data:`STOP_TIMEOUT`).
    Stops them too when the `run` process (``parent``) is gone."""
    # While it loads: a SIGTERM (the `run` process stopping) ends it at once, and a
    # Ctrl-C, which the terminal sends to the whole process group, is the `run`
    # process's to handle (it sends the SIGTERM), not a traceback here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import gc

    from worker.celery_app import app, warm_cpu_steps
    from worker.core.logs import configure_logging
    from worker.core.settings import get_settings
    from worker.embedded.quiet import quiet_per_item_events

    settings = get_settings()
    configure_logging(settings)
    quiet_per_item_events(settings)
    app.loader.import_default_modules()  # the task modules, as a worker imports them
    warm_cpu_steps(settings)
    # Warm: fork once the `run` process says so (its database is ready); a SIGTERM
    # meanwhile still ends this process at once, and so does the end of its stdin (the
    # `run` process gone).
    if not sys.stdin.buffer.readline():
        return 0
    stopping: list[int] = []
    children: set[int] = set()
    told: set[int] = set()

    def tell(pids: set[int]) -> None:
        for pid in pids - told:
            told.add(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def on_signal(signum: int, _frame: object) -> None:
        # the workers are told at once, not at the loop's next turn: their warm stops
        # overlap the `run` process's own (the loop below reaps them)
        stopping.append(signum)
        tell(set(children))

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def fork() -> None:
        assert_no_database(settings)
        _only_thread()
        gc.freeze()  # the warm objects stay out of the children's collections (fewer copies)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                code = main([str(os.getppid())])
            finally:
                exit_now(code)
        children.add(pid)

    if os.getppid() != parent:
        return 0  # the `run` process went while this one loaded
    for _ in range(processes):
        fork()
    while not stopping:
        if os.getppid() != parent:
            stopping.append(signal.SIGTERM)
            break
        pid = _reap()
        while pid:
            if pid in children:
                children.discard(pid)
                if not stopping:
                    log.warning("cpu_worker_restarted")
                    fork()
            pid = _reap()
        time.sleep(0.2)
    tell(children)  # (told already by the handler, unless the parent went)
    deadline = time.monotonic() + STOP_TIMEOUT
    while children and time.monotonic() < deadline:
        children.discard(_reap())
        time.sleep(0.05)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    while children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(children.pop(), 0)
    return 0


def _reap() -> int:
    """The pid of a child that has ended (reaped), or 0."""
    try:
        pid, _status = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return 0
    return pid


def main(argv: list[str]) -> int:
    """A CPU worker process: a solo Celery worker on the ``cpu`` queue. ``argv``: the pid
    of the process whose end stops it (a forked worker's zygote)."""
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
    if sys.argv[1:2] == ["--zygote"]:
        exit_now(zygote(int(sys.argv[2]), int(sys.argv[3])))
    exit_now(main(sys.argv[1:]))
