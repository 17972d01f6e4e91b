"""Database engine, units of work and schema migrations.

Domain functions take a :class:`~sqlmodel.Session` and never commit; the caller (a
Celery task or a CLI command) opens one :func:`unit_of_work` per step, so each step
is one transaction: it happens whole or not at all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

from worker.settings import Settings, get_settings, mask_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message is safe to print (password masked)."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()


def make_engine(url: str, *, pool: bool = True) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 60},
            poolclass=NullPool if not pool else None,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if pool:
        kwargs.update(pool_size=5, max_overflow=10, pool_recycle=1800)
    else:
        kwargs["poolclass"] = NullPool
    return create_engine(url, connect_args={"connect_timeout": 10}, **kwargs)


def get_engine(settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    url = settings.effective_database_url
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    """Close pooled connections (after fork, and between tests)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
    _migrated.clear()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def init_db(settings: Settings | None = None) -> None:
    """Create or upgrade the schema to the newest migration (``alembic upgrade head``).

    Safe to call from many processes at once: on PostgreSQL an advisory lock
    serializes the upgrade; on SQLite the file lock does.
    """
    settings = settings or get_settings()
    url = settings.effective_database_url
    with _migrate_lock:
        if url in _migrated:
            return
        engine = get_engine(settings)
        try:
            with engine.connect() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_lock(726354)"))
                try:
                    cfg = alembic_config(url)
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                    conn.commit()
                finally:
                    if engine.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_unlock(726354)"))
                        conn.commit()
        except OperationalError as exc:
            raise DatabaseUnavailable(
                f"cannot connect to the database {mask_url(url)}: {_first_line(exc)}"
            ) from exc
        _migrated.add(url)


def _first_line(exc: BaseException) -> str:
    msg = str(getattr(exc, "orig", None) or exc).strip()
    return msg.splitlines()[0] if msg else type(exc).__name__


@contextmanager
def unit_of_work(settings: Settings | None = None) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = Session(get_engine(settings), expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_postgres(session: Session) -> bool:
    bind = session.get_bind()
    return bind.dialect.name == "postgresql"


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
