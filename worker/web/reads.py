"""Database sessions of the web view's reads, with a time limit: a search or page that
runs longer than ``CLAIMWIRE_WEB_QUERY_TIMEOUT`` seconds is stopped by the database and
answered with 503 and a message, instead of holding a connection (and the user) for as
long as it takes.

PostgreSQL: ``SET LOCAL statement_timeout`` in the read's transaction (it ends with the
transaction, so the pooled connection goes back without it). SQLite: a progress handler
on the connection, called every few thousand virtual-machine instructions, interrupts
the statement once the deadline passed, and is removed when the read ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlmodel import Session, text

from worker.core.db import unit_of_work
from worker.core.settings import Settings

PROGRESS_STEPS = 4000  # SQLite VM instructions between two looks at the clock


class QueryTimeout(RuntimeError):
    """A read ran out of its time; the message says what to do."""


def _timed_out(exc: OperationalError) -> bool:
    orig: Any = exc.orig
    if orig is None:
        return False
    if type(orig).__name__ == "QueryCanceled":  # psycopg: statement_timeout
        return True
    return str(orig).strip().lower() == "interrupted"  # sqlite3: the progress handler


@contextmanager
def read_session(settings: Settings, timeout: float | None = None) -> Iterator[Session]:
    """A unit of work whose statements each stop after ``timeout`` seconds (default
    ``settings.web_query_timeout``), raising :class:`QueryTimeout`. On SQLite the limit
    is for the whole read, which is what a user waits for."""
    seconds = settings.web_query_timeout if timeout is None else timeout
    raw: Any = None
    try:
        with unit_of_work(settings) as session:
            if session.get_bind().dialect.name == "postgresql":
                ms = max(1, int(seconds * 1000))
                session.execute(text(f"SET LOCAL statement_timeout = {ms}"))
            else:
                raw = session.connection().connection.driver_connection
                deadline = time.monotonic() + seconds

                def over() -> int:
                    return 1 if time.monotonic() > deadline else 0

                raw.set_progress_handler(over, PROGRESS_STEPS)
            try:
                yield session
            finally:
                if raw is not None:
                    raw.set_progress_handler(None, 0)
    except OperationalError as exc:
        if _timed_out(exc):
            raise QueryTimeout(
                f"this took longer than {seconds:g} s and was stopped: narrow it (rarer or "
                "more words, an outlet, a date range) or try again later"
            ) from None
        raise
