"""A running step's start is never read as a death (worker.pipeline.attempts.StepLock).

A step commits its start (``begin_step``), then runs under the article's row lock in a
second transaction. A second copy of its message (a Celery re-queue plus a sweep re-send)
that arrived between the two used to read the first copy's start as a death: with
``max_step_deaths - 1`` real deaths behind it, it quarantined the article one death early
(``tests/test_faults.py::test_page_that_kills_the_worker_quarantined_visible_and_replayable``,
2 kills counted as 3). The running copy now holds a lock from its start to its end that
the database (PostgreSQL: a session-level advisory lock) or the kernel (SQLite: a
record lock on the article's byte of a file) releases when its process dies. Real
databases, a real SIGKILL; no mocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

from schemas.models import Article, ArticleState
from schemas.types import utcnow
from tests.support.db import load_article
from worker.testing.procs import wait_until

ROOT = Path(__file__).resolve().parent.parent
MAX_DEATHS = 3


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, configure: Any) -> Any:
    overrides: dict[str, Any] = {"max_step_deaths": MAX_DEATHS}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    settings = configure(**overrides)
    from worker.core.db import init_db

    init_db(settings)
    return settings


def _article(deaths: int = 0) -> int:
    """An extracted article whose dedup step already killed its worker ``deaths`` times."""
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        a = Article(
            url="https://news.example/a",
            url_hash="a",
            host="news.example",
            state=ArticleState.extracted,
            state_changed_at=utcnow() - timedelta(hours=1),
        )
        s.add(a)
        s.flush()
        assert a.id is not None
        aid = a.id
        s.execute(update(Article).where(col(Article.id) == aid).values(step_starts=deaths))
    return aid


def _dedup_ok(session: Any, article_id: int, settings: Any) -> Any:
    from worker.pipeline.steps import StepResult

    article = session.get(Article, article_id)
    article.state = ArticleState.deduplicated
    return StepResult(advanced=True)


def _must_not_run(session: Any, article_id: int, settings: Any) -> Any:
    raise AssertionError("a copy of a step that is running elsewhere must not run it")


def test_a_copy_arriving_between_the_start_and_the_step_counts_no_death(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copy A has committed its start and not yet taken the row; copy B arrives then.
    The article's step killed its worker ``max_step_deaths - 1`` times before: B used to
    count A's start as the last death and quarantine the article. B now sees A running:
    it neither counts nor runs, and A finishes the step."""
    from worker.pipeline import attempts
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import step_named

    aid = _article(deaths=MAX_DEATHS - 1)
    dedup = step_named("dedup")
    copy_b: list[Any] = []
    real_lock = attempts.lock_article

    def copy_b_arrives_first(session: Any, article_id: int) -> bool:
        if not copy_b:  # copy A, between its start's commit and its row lock
            assert load_article(article_id).step_starts == MAX_DEATHS  # A's start is in
            copy_b.append(run_step(replace(dedup, run=_must_not_run), article_id, settings=db))
            assert load_article(article_id).step_starts == MAX_DEATHS  # B counted nothing
        return real_lock(session, article_id)

    monkeypatch.setattr(attempts, "lock_article", copy_b_arrives_first)
    outcome_a = run_step(replace(dedup, run=_dedup_ok), aid, follow_up=False, settings=db)
    (outcome_b,) = copy_b
    assert outcome_b.state != ArticleState.quarantined, "B counted A's start as a death"
    assert not outcome_b.advanced and outcome_b.retry_in is None
    assert outcome_a.advanced and outcome_a.state == ArticleState.deduplicated
    a = load_article(aid)
    assert a.state == ArticleState.deduplicated and a.step_starts == 0 and a.failure_reason is None
    assert _lock_gone(db, aid), "A released its lock (B never held it)"


_KILLED_STEP = textwrap.dedent(
    """
    import os, signal, sys, time
    from dataclasses import replace
    from worker.pipeline import attempts
    from worker.pipeline.steps import step_named

    article_id, ready, where = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    real_lock = attempts.lock_article

    def stop(session, article_id):
        # between the start's commit and the row lock, or inside the step
        if where == "window":
            open(ready, "w").close()
            time.sleep(600)  # killed by the test
        return real_lock(session, article_id)

    def dies(session, article_id, settings):
        os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does

    attempts.lock_article = stop
    attempts.run_step(replace(step_named("dedup"), run=dies), article_id, follow_up=False)
    """
)


def _step_in_a_process(aid: int, tmp_path: Path, where: str) -> subprocess.Popen[bytes]:
    ready = tmp_path / f"ready-{where}"
    return subprocess.Popen(
        [sys.executable, "-c", _KILLED_STEP, str(aid), str(ready), where],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


_TRY_BYTE = (
    "import fcntl, os, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDWR)\n"
    "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, int(sys.argv[2]))\n"
)


def _lock_gone(db: Any, aid: int) -> bool:
    """Whether no process holds the article's step lock (PostgreSQL ends a dead client's
    session a moment after its socket closes; the kernel drops a dead process's file
    locks with it). SQLite: another process takes the article's byte of the lock file."""
    if not db.effective_database_url.startswith("postgresql"):
        path = str(db.effective_database_url).split("///", 1)[1] + "-steplock"
        taken = subprocess.run([sys.executable, "-c", _TRY_BYTE, path, str(aid)], check=False)
        return taken.returncode == 0
    from sqlalchemy import text

    from worker.core.db import unit_of_work
    from worker.pipeline.steplock import STEP_LOCK_CLASS

    with unit_of_work() as s:
        held = s.execute(
            text(
                "SELECT count(*) FROM pg_locks JOIN pg_database d ON d.oid = database "
                "WHERE d.datname = current_database() AND locktype = 'advisory' "
                "AND classid = :class AND objid = :id AND objsubid = 2"
            ),
            {"class": STEP_LOCK_CLASS, "id": aid},
        ).scalar()
    return held == 0


def test_a_process_killed_during_its_step_counts_exactly_one_death(db: Any, tmp_path: Path) -> None:
    """A real death, with real processes: a step SIGKILLed between its start and its
    step transaction, while a second copy looks (not a death yet: the process lives),
    then one SIGKILLed inside its step. Each counts one death once its process is gone,
    and the deaths quarantine the article at ``max_step_deaths``."""
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import step_named

    aid = _article(deaths=0)
    dedup = step_named("dedup")
    # 1. A process holds the step between its start and its row lock
    proc = _step_in_a_process(aid, tmp_path, "window")
    wait_until(lambda: (tmp_path / "ready-window").exists() or proc.poll() is not None, 60, 0.05)
    assert proc.poll() is None, "the step process ended early"
    assert load_article(aid).step_starts == 1
    assert not _lock_gone(db, aid), "the step's process holds its lock"
    copy = run_step(replace(dedup, run=_must_not_run), aid, follow_up=False, settings=db)
    assert copy.state != ArticleState.quarantined and load_article(aid).step_starts == 1
    # ... and is killed there: its start is now a death, counted once
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    wait_until(lambda: _lock_gone(db, aid), 60, 0.05, "the dead process's lock released")
    # 2. A process killed inside its step (row lock and all)
    proc = _step_in_a_process(aid, tmp_path, "step")
    assert proc.wait(timeout=120) == -signal.SIGKILL
    assert load_article(aid).step_starts == 2, "two starts never ended: two deaths"
    wait_until(lambda: _lock_gone(db, aid), 60, 0.05, "the dead process's lock released")
    # 3. The next delivery sees the two deaths; a third death quarantines
    proc = _step_in_a_process(aid, tmp_path, "step")
    assert proc.wait(timeout=120) == -signal.SIGKILL
    wait_until(lambda: _lock_gone(db, aid), 60, 0.05, "the dead process's lock released")
    outcome = run_step(replace(dedup, run=_must_not_run), aid, follow_up=False, settings=db)
    assert outcome.state == ArticleState.quarantined
    a = load_article(aid)
    assert a.state == ArticleState.quarantined and a.failure_reason is not None
    assert f"died {MAX_DEATHS} times" in a.failure_reason, a.failure_reason


def test_a_step_waits_for_another_steps_transaction_holding_the_row(
    configure: Any, pg_url: str
) -> None:
    """PostgreSQL: the step's lock is free (no copy of the step runs) but another
    transaction holds the article's row, as another step writing the article does (a
    group's new canonical taking its claims from a copy). The step waits for it and runs;
    it used to be told ``busy`` and its message dropped, the article left to the sweep
    ``stale_after`` later."""
    import threading
    import time

    import psycopg

    from worker.core.db import init_db
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import step_named

    settings = configure(max_step_deaths=MAX_DEATHS, database_url=pg_url)
    init_db(settings)
    aid = _article()
    holding = threading.Event()

    def other_step() -> None:
        with psycopg.connect(pg_url) as conn, conn.transaction():
            conn.execute("SELECT id FROM article WHERE id = %s FOR UPDATE", (aid,))
            holding.set()
            time.sleep(1.0)

    holder = threading.Thread(target=other_step)
    holder.start()
    try:
        assert holding.wait(30)
        outcome = run_step(
            replace(step_named("dedup"), run=_dedup_ok), aid, follow_up=False, settings=settings
        )
    finally:
        holder.join(30)
    assert outcome.advanced and outcome.state == ArticleState.deduplicated
    a = load_article(aid)
    assert a.state == ArticleState.deduplicated and a.step_starts == 0


# What another step's transaction does to the article's row after the step's start has
# committed and before its step takes the row: a copy of the article joining its group
# (its ``duplicate_of_id`` names it: the foreign key's check holds the row ``FOR KEY
# SHARE`` to the copy's commit), or a group's new canonical demoting it (an UPDATE of it).
_OTHER_STEP_TAKES_THE_ROW = {
    "a_copy_joins_its_group": "UPDATE article SET duplicate_of_id = %(aid)s WHERE id = %(copy)s",
    "a_new_canonical_demotes_it": "UPDATE article SET duplicate_of_id = %(copy)s"
    " WHERE id = %(aid)s",
}


@pytest.mark.parametrize("other", sorted(_OTHER_STEP_TAKES_THE_ROW))
def test_a_step_waits_for_a_row_taken_between_its_start_and_its_step(
    configure: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch, other: str
) -> None:
    """PostgreSQL: the step's start is committed (its step lock held: no copy of it
    runs), then another step's transaction takes the article's row before the step does,
    as a copy's dedup joining the article's group does (the production topology's stall
    of 2026-12-07: a canonical's claims step, its row held by the dedup of the article
    that demoted it). The step waits for that transaction and runs. It used to find the
    row locked (``SKIP LOCKED``), log ``step_skipped_in_flight``, take its start back
    and end its message: the article stayed in its state, no message left, until the
    sweep re-sent it ``stale_after`` later."""
    import threading

    import psycopg

    from worker.core.db import init_db, unit_of_work
    from worker.pipeline import attempts
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import step_named

    settings = configure(max_step_deaths=MAX_DEATHS, database_url=pg_url)
    init_db(settings)
    aid = _article()
    with unit_of_work() as s:
        copy = Article(url="https://wire.example/a", url_hash="b", host="wire.example")
        s.add(copy)
        s.flush()
        copy_id = copy.id
    holding, done = threading.Event(), threading.Event()

    def other_step() -> None:
        with psycopg.connect(pg_url) as conn, conn.transaction():
            conn.execute(_OTHER_STEP_TAKES_THE_ROW[other], {"aid": aid, "copy": copy_id})
            holding.set()
            done.wait(1.0)  # its work, then its commit

    holder = threading.Thread(target=other_step)
    real_lock = attempts.lock_article

    def row_taken_first(session: Any, article_id: int) -> bool:
        if not holder.is_alive() and not holding.is_set():  # once: this step's own
            assert load_article(article_id).step_starts == 1  # the start is committed
            holder.start()
            assert holding.wait(30)
        return real_lock(session, article_id)

    monkeypatch.setattr(attempts, "lock_article", row_taken_first)
    try:
        outcome = run_step(
            replace(step_named("dedup"), run=_dedup_ok), aid, follow_up=False, settings=settings
        )
    finally:
        done.set()
        holder.join(30)
    assert outcome.advanced and outcome.state == ArticleState.deduplicated, outcome
    a = load_article(aid)
    assert a.state == ArticleState.deduplicated and a.step_starts == 0
