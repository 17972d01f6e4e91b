"""A running step's hold on its article, from its start to its end, that dies with it.

A step commits its start (:func:`worker.pipeline.attempts.begin_step`) and then runs in a
second transaction; a start that is never taken back is a worker death. A second copy
of the step's message (a Celery re-queue and a sweep re-send of the same step) that
arrived between the two transactions used to read the first copy's start as a death:
with ``max_step_deaths - 1`` real deaths behind it, it quarantined the article one
death early. So a step holds a lock on its article for as long as its start may stand
while its process lives, from its start until the start is taken back (or the article
moved on) and committed; a copy that finds the lock held does nothing. The lock is
released by whatever notices a process's death without its help:

* **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock(class,
  article)``, taken inside the start's own statement) on one connection kept for both
  of the step's transactions. The server releases it when the connection goes (a killed
  worker's socket closes with it); the step releases it with one statement in
  autocommit once its start is settled. Workers on many machines see it.
* **SQLite**: a POSIX record lock (``lockf``) on the article's byte (its id as the
  offset) of one empty file next to the database (``claimwire.db-steplock``), taken while
  the start's transaction holds SQLite's write lock. The kernel releases it when the
  process dies and other processes see it; the threads of one process, which POSIX locks
  do not tell apart, see the bytes it holds in a set. No file is made or deleted per
  step: a lock and an unlock are one system call each.

:class:`StepLock` is the connection and the lock of one step; it never commits.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType

import structlog
from sqlalchemy.engine import Connection

log = structlog.get_logger("claimwire.pipeline")

STEP_LOCK_CLASS = 726_357
"""The first key of a step's advisory lock on PostgreSQL (the article id is the second;
the two-key space, next to the jobs' 726_355 and 726_356)."""

_UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"


class StepLock:
    """One step of one article: the connection its transactions run on and, once
    :func:`worker.pipeline.attempts.begin_step` took it, the lock that tells another copy
    of the step that this one runs. Use as a context manager: leaving it releases the
    lock (if still held) and hands the connection back to the pool."""

    def __init__(self, conn: Connection, article_id: int) -> None:
        self.conn = conn
        self.article_id = article_id
        self.postgres = conn.dialect.name == "postgresql"
        self.held = False
        """PostgreSQL: the lock may be held (a statement that took it may have failed
        after); SQLite: its byte of the lock file is held."""
        self._path: Path | None = None

    def __enter__(self) -> StepLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.release()
        finally:
            self.conn.close()

    def take_file(self) -> bool:
        """SQLite: take the article's byte of the lock file without waiting. False:
        another step of the article holds it (a copy running now, in this process or
        another). A database in memory (one process, no file to lock next to) is
        always taken."""
        path = lock_path(self.conn)
        if path is None:
            self.held = True
            return True
        key = (path, self.article_id)
        with _guard:
            if key in _held:
                return False  # a thread of this process (POSIX locks are per process)
            fd = _files.get(path)
            if fd is None:
                fd = _files[path] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.article_id)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    return False  # another process
                raise
            _held.add(key)
        self._path, self.held = path, True
        return True

    def release(self) -> None:
        """Release the lock (nothing when not held). The step's start is settled: taken
        back, or the article moved on, and committed. Never raises: a PostgreSQL
        connection that cannot release it is closed, which releases it."""
        if not self.held:
            return
        self.held = False
        if not self.postgres:
            path, self._path = self._path, None
            if path is not None:
                with _guard:
                    _held.discard((path, self.article_id))
                    fd = _files[path]
                    fcntl.lockf(fd, fcntl.LOCK_UN, 1, self.article_id)
                    if not any(held == path for held, _ in _held):
                        # none of this process's steps holds a byte of it: closing it
                        # releases nothing (a process that used many databases, such
                        # as a test run, keeps no descriptor for each)
                        del _files[path]
                        os.close(fd)
            return
        if self.conn.invalidated or self.conn.closed:
            return  # its server session is gone, and the lock with it
        try:
            if self.conn.in_transaction():
                self.conn.rollback()
            raw = self.conn.connection.dbapi_connection
            assert raw is not None
            # One round trip: no BEGIN and COMMIT around it (psycopg's autocommit is a
            # flag of the client); the pool gets the connection back as it lent it.
            raw.autocommit = True
            try:
                cursor = raw.cursor()
                cursor.execute(_UNLOCK, (STEP_LOCK_CLASS, self.article_id))
                cursor.close()
            finally:
                raw.autocommit = False
        except Exception as exc:  # noqa: BLE001 (closing the connection releases it)
            log.warning("step_lock_not_released", article_id=self.article_id, error=str(exc))
            self.conn.invalidate()


def lock_path(conn: Connection) -> Path | None:
    """SQLite: the file whose bytes lock the articles' steps, next to the database file
    (None for a database in memory)."""
    database = conn.engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    db = Path(database)
    return db.with_name(db.name + "-steplock")


# SQLite's step locks: POSIX record locks (``lockf``) on one byte a step's article of
# one file, which the kernel releases when the process ends. They belong to the process,
# not to a descriptor or a thread: so one descriptor a file, open and never closed
# while a step of the process holds a byte of it (closing any descriptor of the file
# releases all of the process's locks on it), and the bytes its threads hold in ``_held``.
_files: dict[Path, int] = {}
_held: set[tuple[Path, int]] = set()
_guard = threading.Lock()


def _forget_held() -> None:
    """A forked child holds none of its parent's locks (POSIX locks are not inherited)."""
    _held.clear()


os.register_at_fork(after_in_child=_forget_held)
