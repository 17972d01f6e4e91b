"""The embedded run's CPU worker processes start warm: one zygote loads what the CPU steps
need, never opens the database, and forks the workers; a worker that dies is forked
again, and everything stops with the pool (worker/embedded/cpu_pool.py). The prefork
``cpu`` worker of docker-compose.yml warms its parent the same way (worker/celery_app.py).
The steps the forked workers run are covered end to end by every ``claimwire run``
test (tests/test_end_to_end.py, tests/test_run_until_idle.py, ...)."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import claimwire
from worker.testing.procs import wait_until


def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _open_files(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found.add(os.readlink(fd))
        except OSError:
            continue
    return found


def test_the_zygote_refuses_to_fork_with_the_database_open(
    configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.core import db
    from worker.embedded.cpu_pool import assert_no_database

    settings = configure()
    db.dispose_engines()
    assert_no_database(settings)  # nothing open: forks
    db.get_engine(settings)
    with pytest.raises(RuntimeError, match="database engine"):
        assert_no_database(settings)
    db.dispose_engines()
    assert_no_database(settings)
    # the file itself open, by any means (here the sqlite3 module, no engine)
    path = settings.effective_database_url.split(":///", 1)[1]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    try:
        with pytest.raises(RuntimeError, match=r"claimwire\.db open"):
            assert_no_database(settings)
    finally:
        conn.close()
    assert_no_database(settings)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
def test_workers_are_forked_from_a_zygote_that_never_opens_the_database(
    configure: Any, tmp_path: Path
) -> None:
    """Two workers forked from one zygote (not started as interpreters of their own);
    the zygote holds no database file; a worker killed with SIGKILL is forked again from
    it, and stopping the pool stops them all."""
    from worker.embedded.cpu_pool import CpuPool

    settings = configure(extract_claims="false")  # the spaCy model: not needed here
    made = claimwire(["init"], dict(os.environ), tmp_path)
    assert made.returncode == 0, made.stderr
    pool = CpuPool(settings, 2).start()
    try:
        assert pool.zygote is not None
        zygote = pool.zygote.pid
        wait_until(lambda: len(_children(zygote)) == 2, 120, 0.2, "two workers forked")
        first = _children(zygote)
        for pid in first:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert b"--zygote" in cmdline, "forked from the zygote, not a new interpreter"
        assert not any(f.endswith(("claimwire.db", "-wal", "-shm")) for f in _open_files(zygote))
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: len(_children(zygote)) == 2 and victim not in _children(zygote),
            60,
            0.2,
            "the killed worker forked again",
        )
        assert first - {victim} <= _children(zygote), "the other worker went on"
        assert pool.zygote.pid == zygote and pool.zygote.poll() is None
        workers = _children(zygote)
    finally:
        pool.stop()
    assert pool.zygote.poll() is not None
    wait_until(lambda: not any(_alive(p) for p in workers), 20, 0.1, "the workers stopped")


def _waits_for_its_word(pid: int) -> bool:
    """The process is blocked reading its stdin (the zygote, warm, before its release)."""
    try:
        syscall = Path(f"/proc/{pid}/syscall").read_text().split()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False
    return syscall[:2] == ["0", "0x0"] or "pipe" in wchan  # read(0, ...) on x86_64


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
def test_a_zygote_not_released_warms_and_forks_no_worker_until_released(
    configure: Any, tmp_path: Path
) -> None:
    """`claimwire run` starts the zygote before its database is ready: it loads what the
    steps need, then forks no worker (none takes a step) until the run releases it; a
    pool stopped before that ends its zygote with no worker ever forked."""
    from worker.embedded.cpu_pool import CpuPool

    settings = configure(extract_claims="false")
    made = claimwire(["init"], dict(os.environ), tmp_path)
    assert made.returncode == 0, made.stderr
    pool = CpuPool(settings, 2).start(release=False)
    try:
        assert pool.zygote is not None
        zygote = pool.zygote.pid
        wait_until(lambda: _waits_for_its_word(zygote), 120, 0.1, "the zygote warm, waiting")
        maps = Path(f"/proc/{zygote}/maps").read_text()
        assert "lxml" in maps, "warm: the extraction's libraries are loaded"
        assert _children(zygote) == set(), "no worker before the release"
        pool.release()
        wait_until(lambda: len(_children(zygote)) == 2, 120, 0.2, "two workers forked")
        workers = _children(zygote)
    finally:
        pool.stop()
    assert pool.zygote.poll() is not None
    wait_until(lambda: not any(_alive(p) for p in workers), 20, 0.1, "the workers stopped")

    never = CpuPool(settings, 2).start(release=False)
    assert never.zygote is not None
    wait_until(lambda: _waits_for_its_word(never.zygote.pid), 120, 0.1, "warm, waiting")  # type: ignore[union-attr]
    never.stop()
    assert never.zygote.returncode is not None


def test_a_prefork_cpu_worker_warms_its_parent_before_forking(configure: Any) -> None:
    from celery.concurrency.prefork import TaskPool as PreforkPool
    from celery.concurrency.thread import TaskPool as ThreadPool

    from worker.celery_app import _warm_before_fork, warm_cpu_steps

    configure()

    def worker(pool: Any, queues: list[str]) -> Any:
        return SimpleNamespace(
            pool_cls=pool,
            app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from=queues))),
        )

    assert _warm_before_fork(sender=worker(ThreadPool, ["cpu"])) is False
    assert _warm_before_fork(sender=worker(PreforkPool, ["io"])) is False
    assert _warm_before_fork(sender=worker(PreforkPool, ["cpu"])) is True
    assert _warm_before_fork(sender=worker("prefork", ["backfill"])) is True
    loads = dict(warm_cpu_steps(configure(extract_claims="false")))
    assert "the claims model" not in loads
    assert {"imports", "dateparser's locales", "py3langid's model", "datasketch"} <= set(loads)
    for module in ("trafilatura", "htmldate", "py3langid", "datasketch", "spacy"):
        assert module in sys.modules
