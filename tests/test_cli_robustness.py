"""Database and command-line robustness (audit of 2026-11-25, MEDIUM 3, 8, 9, LOW 13):
a connection pool as large as the threads that use it, a locked SQLite database as one
line and exit 2, `extract` failing loudly on inputs it could not read, and settings
that say what they are (the archive directory in use, a log level that exists)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import claimwire, cli_env


@pytest.fixture(autouse=True)
def _no_worker_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no Celery worker concurrency recorded in this process."""
    import worker.core.db

    monkeypatch.setattr(worker.core.db, "_worker_threads", None)
    yield
    worker.core.db.dispose_engines()


# ------------------------------------------------------------------ MEDIUM 3: pool size


def _hold_sessions_at_once(threads: int) -> tuple[int, int]:
    """``threads`` threads each open a session and run a query, and all hold their
    connection at the same moment (a barrier). Returns (pool size, overflow in use) seen
    while they all held one. A pool smaller than ``threads`` (with its overflow) makes a
    thread wait for a connection (30 s) and the barrier breaks first."""
    from sqlalchemy import text

    from worker.core.db import get_engine, unit_of_work

    engine = get_engine()
    barrier = threading.Barrier(threads + 1, timeout=20)
    release = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with unit_of_work() as s:
                s.execute(text("SELECT 1")).one()
                barrier.wait()
                release.wait(20)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
            barrier.abort()

    pool: Any = engine.pool
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    try:
        barrier.wait()  # every thread holds a connection now
        seen = (pool.size(), pool.overflow())
        assert pool.checkedout() == threads
    finally:
        release.set()
        for t in workers:
            t.join(30)
    assert not errors, errors
    return seen


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_pool_sized_for_n_threads_serves_n_sessions_at_once(
    configure: Any, database: str, request: pytest.FixtureRequest
) -> None:
    from worker.core.db import init_db, set_worker_threads

    if database == "postgresql":
        configure(database_url=request.getfixturevalue("pg_url"))
    else:
        configure()
    init_db()
    threads = 24  # more than the 5 + 10 connections the pool used to allow
    set_worker_threads(threads)
    size, overflow = _hold_sessions_at_once(threads)
    assert size >= threads
    assert overflow <= 0, "every thread's connection is one the pool keeps"


def test_pool_size_follows_a_thread_worker_and_the_setting(configure: Any) -> None:
    from worker.celery_app import _size_db_pool
    from worker.core.db import get_engine, pool_size

    settings = configure(worker_concurrency=3)
    assert pool_size(settings) == 5, "the embedded run's 3 threads: SQLAlchemy's default"
    # `celery worker -P threads -c 32` (the CLI hands the pool class over)
    from celery.concurrency.thread import TaskPool as ThreadPool

    _size_db_pool(sender=SimpleNamespace(pool_cls=ThreadPool, concurrency=32))
    assert pool_size(settings) == 34
    assert get_engine().pool.size() == 34  # type: ignore[attr-defined]
    # a prefork worker runs one task per process: nothing to size
    from celery.concurrency.prefork import TaskPool as PreforkPool

    _size_db_pool(sender=SimpleNamespace(pool_cls=PreforkPool, concurrency=64))
    assert pool_size(settings) == 34
    # the setting wins over everything
    settings = configure(db_pool_size=7)
    assert pool_size(settings) == 7
    assert get_engine().pool.size() == 7  # type: ignore[attr-defined]


# -------------------------------------------------------- MEDIUM 8: locked SQLite file


def _one_line(r: Any, status: int) -> str:
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    return str(lines[0])


@pytest.mark.parametrize("log_level", ["INFO", "DEBUG"])
def test_a_locked_database_is_one_line_and_exit_2(tmp_path: Path, log_level: str) -> None:
    env = cli_env(tmp_path, SQLITE_BUSY_TIMEOUT="0.3", LOG_LEVEL=log_level)
    assert claimwire(["init"], env, tmp_path, timeout=60).returncode == 0
    db = tmp_path / "data" / "claimwire.db"
    holder = sqlite3.connect(db, isolation_level=None)  # another process's write
    try:
        holder.execute("BEGIN IMMEDIATE")
        r = claimwire(["feeds", "add", "https://a.example/feed"], env, tmp_path, timeout=60)
        line = _one_line(r, 2)
        assert line.startswith("claimwire: error: the database "), line
        assert str(db) in line and "is locked" in line
        assert "another claimwire process" in line and "wait for it" in line
        assert "INSERT" not in line, "no SQL statement in the message"
        # reading still works while the writer holds its lock (WAL)
        listed = claimwire(["feeds", "list", "--json"], env, tmp_path, timeout=60)
        assert listed.returncode == 0, listed.stderr
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # the lock gone, the same command works and nothing was half-done before
    r = claimwire(["feeds", "add", "https://a.example/feed"], env, tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    listed = claimwire(["feeds", "list", "--json"], env, tmp_path, timeout=60)
    assert listed.stdout.count("https://a.example/feed") == 1


# ------------------------------------------------------------- MEDIUM 9: extract status

FAKE_PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
PAGE = (
    "<html><head><title>A test page</title></head><body><article>"
    + "<p>This paragraph was written for the test and says nothing in particular.</p>" * 6
    + "</article></body></html>"
)


def _records(stdout: str) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return {str(r.get("file") or r.get("url")): r for r in rows}


def test_extract_exits_1_when_an_input_failed_and_writes_every_record(tmp_path: Path) -> None:
    (tmp_path / "ok.html").write_text(PAGE, encoding="utf-8")
    (tmp_path / "paper.pdf").write_bytes(FAKE_PDF)
    env = cli_env(tmp_path)
    r = claimwire(
        ["extract", "--jsonl", "ok.html", "paper.pdf", "missing.html"], env, tmp_path, timeout=60
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    records = _records(r.stdout)
    assert list(records) == ["ok.html", "paper.pdf", "missing.html"]
    assert "error" not in records["ok.html"] and "test page" in str(records["ok.html"]["title"])
    assert records["paper.pdf"]["error"] == "not HTML: application/pdf"
    assert records["paper.pdf"]["text"] == "" and "encoding" not in records["paper.pdf"]
    assert records["missing.html"]["error"] == "no such file or directory"
    assert "2 of 3 page(s) failed" in r.stderr

    ok = claimwire(["extract", "--jsonl", "ok.html"], env, tmp_path, timeout=60)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(
    ("name", "body", "kind"),
    [
        ("scan.html", FAKE_PDF, "application/pdf"),  # the name does not decide
        ("image.htm", b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(32), "image/png"),
        ("bundle.html", b"PK\x03\x04" + bytes(40), "application/zip"),
        ("blob.html", bytes(range(256)) * 4, "application/octet-stream"),
    ],
)
def test_extract_a_binary_file_is_an_error_naming_its_type(
    tmp_path: Path, name: str, body: bytes, kind: str
) -> None:
    from worker.pages.inputs import extract_file

    path = tmp_path / name
    path.write_bytes(body)
    out = extract_file(path)
    assert out["error"] == f"not HTML: {kind}"
    assert out["text"] == ""


def test_extract_text_files_are_not_mistaken_for_binary(tmp_path: Path) -> None:
    from worker.pages.inputs import extract_file

    utf16 = tmp_path / "utf16.html"
    utf16.write_bytes(PAGE.encode("utf-16"))  # NUL bytes, after a byte-order mark
    latin = tmp_path / "latin1.html"
    latin.write_bytes(PAGE.replace("nothing", "\u00e9t\u00e9").encode("latin-1"))
    for path in (utf16, latin):
        out = extract_file(path)
        assert "error" not in out, out
        assert "This paragraph was written for the test" in out["text"]


# ------------------------------------------------------------------- LOW 13: settings


def test_config_shows_the_archive_directory_in_use(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    env["COLUMNS"] = "300"  # piped output is 80 columns wide unless COLUMNS says more
    r = claimwire(["config"], env, tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if "CLAIMWIRE_ARCHIVE_DIR" in line)
    assert str(tmp_path / "data" / "archive") in row and "None" not in row
    env["CLAIMWIRE_ARCHIVE_DIR"] = str(tmp_path / "elsewhere")
    r = claimwire(["config"], env, tmp_path, timeout=60)
    row = next(line for line in r.stdout.splitlines() if "CLAIMWIRE_ARCHIVE_DIR" in line)
    assert str(tmp_path / "elsewhere") in row


def test_archive_dir_empty_or_unset_is_under_the_data_dir(tmp_path: Path) -> None:
    from worker.core.settings import Settings

    for given in ({}, {"archive_dir": ""}):
        s = Settings(data_dir=tmp_path / "d", **given)  # type: ignore[arg-type]
        assert s.archive_dir == tmp_path / "d" / "archive"
        assert s.effective_archive_dir == (tmp_path / "d" / "archive").resolve()


@pytest.mark.parametrize("command", [["status"], ["extract", "x.html"], ["config"]])
def test_an_unknown_log_level_is_a_settings_error(tmp_path: Path, command: list[str]) -> None:
    env = cli_env(tmp_path, LOG_LEVEL="verbose")
    line = _one_line(claimwire(command, env, tmp_path, timeout=60), 2)
    assert "CLAIMWIRE_LOG_LEVEL='verbose'" in line and "not a log level" in line


def test_log_levels_are_accepted_in_any_case() -> None:
    from worker.core.settings import Settings

    assert Settings(log_level="debug").log_level == "DEBUG"
    assert Settings(log_level=" Warning ").log_level == "WARNING"


def test_a_database_lost_mid_command_is_one_line_and_exit_2(
    configure: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any OperationalError (here: PostgreSQL closing the connection) after the database
    was reached: one line naming the database, without the SQL statement, exit 2."""
    from sqlalchemy.exc import OperationalError

    import worker.core.db
    from worker.cli import main

    configure()
    lost = Exception("server closed the connection unexpectedly\n\tThis probably means...")

    def broken(*_a: Any, **_k: Any) -> Any:
        raise OperationalError("SELECT feed.id FROM feed", {}, lost)

    monkeypatch.setattr(worker.core.db, "unit_of_work", broken)
    monkeypatch.setattr(worker.core.db, "reading", broken)  # `feeds list` only reads
    with pytest.raises(SystemExit) as exit_:
        main(["feeds", "list"])
    assert exit_.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("claimwire: error: database sqlite:///")
    assert "server closed the connection unexpectedly" in lines[0]
    assert "SELECT" not in lines[0] and "probably" not in lines[0]
