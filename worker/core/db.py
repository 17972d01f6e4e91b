"""Database engine, units of work and schema migrations.

Domain functions take a :class:`~sqlmodel.Session` and never commit; the caller (a
Celery task or a CLI command) opens one :func:`unit_of_work` per step, so each step
is one transaction: it happens whole or not at all, and the messages it records for
later are sent only once it has committed (:mod:`worker.core.outbox`).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, ExceptionContext
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool, QueuePool

from worker.core.settings import Settings, get_settings, mask_url

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlmodel import Session

MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_migrated: set[str] = set()
_migrate_lock = threading.Lock()

POOL_MARGIN = 2
"""Connections kept beyond the threads of a process (the embedded run's idle watcher,
its main thread's sweep): a thread never waits for a connection another one holds."""
POOL_OVERFLOW = 10
"""Extra connections opened for a burst and closed again when handed back."""
POOL_TIMEOUT = 30.0
"""Seconds a session waits for a connection when the pool and its overflow are in use."""

_worker_threads: int | None = None


def set_worker_threads(threads: int) -> None:
    """Size the pools of this process for ``threads`` threads using the database at once
    (a Celery worker's ``--concurrency`` with a thread pool; called at ``worker_init``).
    An engine made before with another pool size is closed: the next session gets a
    pool of the new size."""
    global _worker_threads
    if threads < 1 or threads == _worker_threads:
        return
    _worker_threads = threads
    size = pool_size(get_settings())
    with _engines_lock:
        for url, engine in list(_engines.items()):
            if isinstance(engine.pool, QueuePool) and engine.pool.size() != size:
                del _engines[url]
                engine.dispose()


def pool_size(settings: Settings) -> int:
    """Connections one engine keeps: ``CLAIMWIRE_DB_POOL_SIZE`` when set, else the threads
    of this process (the Celery worker's concurrency, or ``CLAIMWIRE_WORKER_CONCURRENCY``
    for the embedded run and the CLI) plus :data:`POOL_MARGIN`, and never below 5
    (SQLAlchemy's default). The pool opens connections only as they are used."""
    if settings.db_pool_size:
        return int(settings.db_pool_size)
    threads = _worker_threads or settings.worker_concurrency
    return max(5, threads + POOL_MARGIN)


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message is safe to print (password masked)."""


SQLITE_BUSY = 5
"""SQLite's result code for a lock another connection holds (its extended codes share
the low byte: ``SQLITE_BUSY_SNAPSHOT``, 517, is a stale read snapshot that no wait cures,
and is not waited for)."""
SQLITE_BUSY_SNAPSHOT = 517
BUSY_FIRST_PAUSE = 0.0002
"""Seconds of the first pause before a statement that found SQLite's write lock taken
is tried again; each pause doubles, up to :data:`BUSY_MAX_PAUSE`."""
BUSY_MAX_PAUSE = 0.002
"""The longest pause between two tries for SQLite's write lock: a waiter gets the lock
at most this late after its holder commits."""


def _busy_retry(connection: Any, call: Callable[[], Any]) -> Any:
    """``call()`` (a statement, a commit) tried again while SQLite answers that another
    connection holds the lock, for up to the connection's ``busy_wait`` seconds, then
    its "database is locked" error. SQLite's own busy handler (``busy_timeout``) sleeps
    1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and then 100 ms between its tries, so a
    waiter got the lock up to 100 ms after it was free (a 5 ms hold cost a waiter 10 ms,
    a 250 ms hold 330 ms), and a process waiting for it left its core idle meanwhile
    (issue 16). Here the pauses are 0.2 ms doubling to 2 ms. A statement that failed to
    get the lock did nothing (SQLite takes it before the statement's first row), so it
    is run again as it was."""
    deadline: float | None = None
    pause = BUSY_FIRST_PAUSE
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if code is None or code & 0xFF != SQLITE_BUSY or code == SQLITE_BUSY_SNAPSHOT:
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + connection.busy_wait
            if now >= deadline:
                raise
            time.sleep(min(pause, deadline - now))
            pause = min(2 * pause, BUSY_MAX_PAUSE)


class _SQLiteCursor(sqlite3.Cursor):
    """A cursor whose statements wait for SQLite's lock in :func:`_busy_retry`."""

    def execute(self, sql: str, parameters: Any = (), /) -> _SQLiteCursor:
        run = super().execute
        result: _SQLiteCursor = _busy_retry(self.connection, lambda: run(sql, parameters))
        return result

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _SQLiteCursor:
        rows = (
            seq_of_parameters
            if isinstance(seq_of_parameters, list | tuple)
            else list(seq_of_parameters)
        )
        run = super().executemany
        result: _SQLiteCursor = _busy_retry(self.connection, lambda: run(sql, rows))
        return result


class _SQLiteConnection(sqlite3.Connection):
    """The connections of a SQLite engine: SQLite's busy handler off (``timeout=0``),
    its waits done by :func:`_busy_retry` for ``busy_wait`` seconds (the
    ``CLAIMWIRE_SQLITE_BUSY_TIMEOUT`` of the engine)."""

    busy_wait: float = 60.0

    def cursor(self, factory: Any = _SQLiteCursor) -> Any:
        return super().cursor(factory)

    def commit(self) -> None:
        _busy_retry(self, super().commit)


def _sqlite_pragmas(busy_timeout: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        if isinstance(dbapi_conn, _SQLiteConnection):
            dbapi_conn.busy_wait = busy_timeout
        cur = dbapi_conn.cursor()
        # 0: the waits for another connection's lock are _busy_retry's (a statement of
        # a connection made otherwise waits in SQLite's own busy handler)
        wait = 0 if isinstance(dbapi_conn, _SQLiteConnection) else busy_timeout
        cur.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return on_connect


# Statements a driver or the database refuses outright, the same way on every try, that
# psycopg and sqlite3 report as OperationalError (the class of a lost connection).
_REFUSALS = (
    "number of parameters must be between",  # psycopg: more than 65,535 bind parameters
    "too many sql variables",  # SQLite: more than SQLITE_MAX_VARIABLE_NUMBER
    "string or blob too big",
    "too many terms in compound select",
    "expression tree is too large",
)


def refused_statement(orig: BaseException | None) -> bool:
    """Whether a driver's OperationalError is a refusal of the statement itself, not of
    the environment: PostgreSQL's class 54 (program limit exceeded: a statement too
    complex, an index row too large) or a driver's own refusal before sending it."""
    if orig is None:
        return False
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate.startswith("54")
    message = str(orig).lower()
    return any(refusal in message for refusal in _REFUSALS)


def _refusals_are_programming_errors(ctx: ExceptionContext) -> BaseException | None:
    """Raise a refused statement as the ``ProgrammingError`` PEP 249 names for it ("wrong
    number of parameters specified"), not as an ``OperationalError``: everything that
    classes errors (``worker.pipeline.attempts.is_environment_error``) then counts it as
    the item's error instead of retrying it, uncounted, as an outage, for ever."""
    exc = ctx.sqlalchemy_exception
    if ctx.is_disconnect or not isinstance(exc, OperationalError):
        return None
    if not refused_statement(ctx.original_exception):
        return None
    return ProgrammingError(
        ctx.statement, ctx.parameters, ctx.original_exception, hide_parameters=True
    )


def make_engine(
    url: str, *, pool: bool = True, size: int = 5, busy_timeout: float = 60.0
) -> Engine:
    """An engine whose pool keeps ``size`` connections (plus :data:`POOL_OVERFLOW` for a
    burst); ``pool=False`` opens one connection per session. ``busy_timeout``: seconds a
    SQLite statement waits for another process's write lock before "database is locked"."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        memory = not path or path == ":memory:"
        if not memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {}
        if not pool:
            kwargs["poolclass"] = NullPool
        elif not memory:  # a file: the same queue pool as PostgreSQL, sized alike
            kwargs.update(pool_size=size, max_overflow=POOL_OVERFLOW, pool_timeout=POOL_TIMEOUT)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 0, "factory": _SQLiteConnection},
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
        event.listen(engine, "handle_error", _refusals_are_programming_errors)
        return engine
    kwargs = {"pool_pre_ping": True}
    if pool:
        kwargs.update(
            pool_size=size,
            max_overflow=POOL_OVERFLOW,
            pool_timeout=POOL_TIMEOUT,
            pool_recycle=1800,
        )
    else:
        kwargs["poolclass"] = NullPool
    engine = create_engine(url, connect_args={"connect_timeout": 10}, **kwargs)
    event.listen(engine, "handle_error", _refusals_are_programming_errors)
    return engine


def get_engine(settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    url = settings.effective_database_url
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(
                url, size=pool_size(settings), busy_timeout=settings.sqlite_busy_timeout
            )
        return engine


def dispose_engines() -> None:
    """Close pooled connections (after fork, and between tests)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
    _migrated.clear()


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


_REVISION = re.compile(r"^revision(?:\s*:[^=]+)?\s*=\s*['\"]([^'\"]+)['\"]\s*$", re.MULTILINE)
_DOWN_REVISION = re.compile(
    r"^down_revision(?:\s*:[^=]+)?\s*=\s*(?:None|['\"]([^'\"]+)['\"])\s*$", re.MULTILINE
)


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration, read from the files of ``migrations/versions`` without
    importing Alembic (about a third of a second that every command paid); None when a
    file does not say its revisions in the plain form (``revision = "..."``, one
    ``down_revision``) or the history does not end in one head: then Alembic decides."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        rev, down = _REVISION.findall(source), _DOWN_REVISION.findall(source)
        if len(rev) != 1 or len(down) != 1:
            return None
        revisions.add(rev[0])
        if down[0]:
            downs.add(down[0])
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    """Whether the database's schema is already at :func:`head_revision`."""
    head = head_revision()
    if head is None:
        return False
    with engine.connect() as conn:  # an unreachable database raises here, as before
        if not inspect(conn).has_table("alembic_version"):
            return False  # a new database: Alembic creates the schema
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    return [r[0] for r in rows] == [head]


def init_db(settings: Settings | None = None) -> None:
    """Create or upgrade the schema to the newest migration (``alembic upgrade head``).

    Safe to call from many processes at once: on PostgreSQL an advisory lock
    serializes the upgrade; on SQLite the file lock does. A database already at the
    newest migration is only read (one query, no Alembic).
    """
    settings = settings or get_settings()
    url = settings.effective_database_url
    with _migrate_lock:
        if url in _migrated:
            return
        engine = get_engine(settings)
        try:
            if _at_head(engine):
                _migrated.add(url)
                return
            from alembic import command

            with engine.connect() as conn:
                sqlite = engine.dialect.name == "sqlite"
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_lock(726354)"))
                if sqlite:
                    # Off around migrations (SQLite ignores it inside a transaction, so
                    # before any): a migration that rebuilds a table drops the old one,
                    # which with foreign keys on would delete its children's rows too.
                    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                try:
                    cfg = alembic_config(url)
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                    conn.commit()
                finally:
                    if engine.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_unlock(726354)"))
                        conn.commit()
                    if sqlite:
                        conn.rollback()
                        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        except OperationalError as exc:
            raise DatabaseUnavailable(
                database_error(exc, settings)
                if is_locked(exc)
                else f"cannot connect to the database {mask_url(url)}: {_first_line(exc)}"
            ) from exc
        _migrated.add(url)


def _first_line(exc: BaseException) -> str:
    msg = str(getattr(exc, "orig", None) or exc).strip()
    return msg.splitlines()[0] if msg else type(exc).__name__


def is_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked": another process held the write lock longer than
    ``CLAIMWIRE_SQLITE_BUSY_TIMEOUT``."""
    return isinstance(exc, OperationalError) and "is locked" in _first_line(exc)


def database_error(exc: BaseException, settings: Settings | None = None) -> str:
    """One line for a database error met in the middle of a command (the statement and
    its parameters left out, the password masked), saying what to do when it is known."""
    settings = settings or get_settings()
    url = settings.effective_database_url
    if is_locked(exc):
        where = url.split("///", 1)[-1] if url.startswith("sqlite") else mask_url(url)
        return (
            f"the database {where} is locked: another claimwire process (a `run`, an "
            f"import, a worker) is writing to it and did not finish within "
            f"{settings.sqlite_busy_timeout:g}s; wait for it to finish or stop it, then "
            "try again (CLAIMWIRE_SQLITE_BUSY_TIMEOUT sets the wait)"
        )
    return f"database {mask_url(url)} failed: {_first_line(exc)}"


@contextmanager
def unit_of_work(
    settings: Settings | None = None,
    *,
    bind: Connection | None = None,
    then: Callable[[], object] | None = None,
) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error. The messages
    recorded on the session (:func:`worker.core.outbox.send_after_commit`) are sent
    once the commit succeeded, never after a rollback.

    ``bind``: run on this connection (kept by the caller across several transactions,
    as a step keeps one for its start and its run) instead of one from the pool;
    ``then``: called after the commit, before the messages are sent."""
    from sqlmodel import Session

    from worker.core import outbox

    session = Session(bind if bind is not None else get_engine(settings), expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        outbox.discard(session)
        raise
    finally:
        session.close()
    if then is not None:
        then()
    outbox.deliver(outbox.take(session))


@contextmanager
def reading(settings: Settings | None = None) -> Iterator[Connection]:
    """A connection for the commands that only read (``status``, ``export``, ``jobs
    list``): SQLAlchemy Core over :mod:`schemas.tables`, without the ORM and the SQLModel
    classes (a seventh of a second of every such command). Nothing is written; its
    transaction is rolled back when it closes."""
    with get_engine(settings).connect() as conn:
        yield conn


def is_postgres(session: Session | Connection) -> bool:
    """Whether ``session`` (an ORM session or a Core connection) talks to PostgreSQL."""
    if isinstance(session, Connection):
        return session.dialect.name == "postgresql"
    return session.get_bind().dialect.name == "postgresql"


def _insert(session: Session, model: type[Any]) -> Any:
    if is_postgres(session):
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model.__table__)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(model.__table__)


def upsert(
    session: Session, model: type[Any], row: dict[str, Any], conflict_cols: list[str]
) -> None:
    """``INSERT ... ON CONFLICT DO UPDATE`` of one row: concurrent writers of the same
    key both succeed and the last one's values stay."""
    stmt = _insert(session, model).values(row)
    updates = {k: getattr(stmt.excluded, k) for k in row if k not in conflict_cols}
    session.execute(stmt.on_conflict_do_update(index_elements=conflict_cols, set_=updates))


def insert_ignore(
    session: Session,
    model: type[Any],
    rows: list[dict[str, Any]],
    conflict_cols: list[str],
    returning: list[Any] | None = None,
) -> list[Any]:
    """``INSERT ... ON CONFLICT DO NOTHING`` on PostgreSQL and SQLite alike.

    Returns the ``returning`` columns of the rows actually inserted: under concurrent
    writers the unique constraint decides who wins, and each loser sees nothing.
    Large lists go in chunks, under PostgreSQL's 65,535 bind parameters per statement
    (and SQLite's 32,766).
    """
    if not rows:
        return []
    # columns with Python-side defaults are bound too: count every column of the table
    chunk = max(1, 30_000 // len(model.__table__.columns))
    out: list[Any] = []
    for i in range(0, len(rows), chunk):
        stmt = (
            _insert(session, model)
            .values(rows[i : i + chunk])
            .on_conflict_do_nothing(index_elements=conflict_cols)
        )
        if returning:
            out.extend(session.execute(stmt.returning(*returning)).all())
        else:
            session.execute(stmt)
    return out
