"""SQLite's write lock: a claimwire connection waits for another connection's write in
its own loop (``worker.core.db._busy_retry``), not in SQLite's busy handler, and still
gives up with "database is locked" after ``CLAIMWIRE_SQLITE_BUSY_TIMEOUT``."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from worker.core.db import is_locked, make_engine


def _engine(tmp_path: Path, busy_timeout: float) -> tuple[str, Engine]:
    path = str(tmp_path / "waits.db")
    engine = make_engine(f"sqlite:///{path}", busy_timeout=busy_timeout)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    return path, engine


def test_a_write_waits_for_another_connections_write_and_then_runs(tmp_path: Path) -> None:
    path, engine = _engine(tmp_path, busy_timeout=30)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    waiting = threading.Event()
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with engine.begin() as conn:
                waiting.set()
                conn.execute(text("INSERT INTO t VALUES (2)"))
                conn.execute(text("INSERT INTO t VALUES (3)"))
            done.set()
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    assert waiting.wait(10)
    assert not done.wait(0.3), "the write ran while another connection held the lock"
    holder.execute("COMMIT")
    writer.join(20)
    assert not errors, errors
    assert done.is_set()
    rows = holder.execute("SELECT x FROM t ORDER BY x").fetchall()
    assert rows == [(1,), (2,), (3,)], "each statement ran once, after the holder's commit"
    holder.close()


def test_a_write_gives_up_with_database_is_locked_after_the_busy_timeout(
    tmp_path: Path,
) -> None:
    path, engine = _engine(tmp_path, busy_timeout=0.3)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError) as raised, engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
        assert is_locked(raised.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1


def test_a_stale_read_snapshot_is_not_waited_for(tmp_path: Path) -> None:
    """A transaction that read, and then saw another connection commit before its first
    write, can never write (SQLITE_BUSY_SNAPSHOT): it fails at once, as with SQLite's
    own busy handler, instead of retrying until the busy timeout."""
    path, engine = _engine(tmp_path, busy_timeout=600)
    other = sqlite3.connect(path, isolation_level=None)
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        raw.execute("BEGIN")
        raw.execute("SELECT count(*) FROM t").fetchall()  # the snapshot is taken
        other.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(OperationalError) as raised:
            conn.execute(text("INSERT INTO t VALUES (2)"))
        assert getattr(raised.value.orig, "sqlite_errorcode", None) == 517
        conn.rollback()
    other.close()
