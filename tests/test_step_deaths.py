"""Deaths of a worker process during a step are counted by starts that never end
(worker.pipeline.attempts.begin_step / end_step), on SQLite and PostgreSQL. The same with real
worker processes killed by a page: tests/test_faults.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from schemas.models import Article, ArticleState
from schemas.types import utcnow
from tests.support.db import load_article

STEP = "tasks.processing.dedup_article"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, configure: Any) -> Any:
    if request.param == "postgres":
        settings = configure(database_url=request.getfixturevalue("pg_url"))
    else:
        settings = configure()
    from worker.core.db import init_db

    init_db(settings)
    return settings


def _article(state: ArticleState = ArticleState.extracted, tag: str = "a") -> int:
    from worker.core.db import unit_of_work

    old = utcnow() - timedelta(hours=1)
    with unit_of_work() as s:
        a = Article(
            url=f"https://news.example/{tag}",
            url_hash=tag,
            host="news.example",
            state=state,
            state_changed_at=old,
        )
        s.add(a)
        s.flush()
        assert a.id is not None
        return a.id


def _begin(aid: int, max_deaths: int = 3) -> Any:
    from worker.core.db import unit_of_work
    from worker.pipeline.attempts import begin_step

    with unit_of_work() as s:
        return begin_step(s, aid, STEP, max_deaths)


def _end(aid: int, advanced: bool) -> None:
    from worker.core.db import unit_of_work
    from worker.pipeline.attempts import end_step

    with unit_of_work() as s:
        end_step(s, aid, advanced=advanced)


def test_steps_that_end_count_nothing_deaths_accumulate_then_quarantine(db: Any) -> None:
    from worker.core.db import unit_of_work
    from worker.pipeline.attempts import StepStart
    from worker.pipeline.replay import replay
    from worker.pipeline.sweep import stale_articles

    aid = _article()
    # steps that return or raise take their start back: no death, however many
    for _ in range(5):
        assert _begin(aid) == (StepStart.run, 0)
        assert load_article(aid).step_starts == 1 and load_article(aid).step_started_at is not None
        _end(aid, advanced=False)
        assert load_article(aid).step_starts == 0
    # three deliveries whose process died (started, never ended)
    assert _begin(aid) == (StepStart.run, 0)
    assert _begin(aid) == (StepStart.run, 1)
    assert _begin(aid) == (StepStart.run, 2)
    last_start = load_article(aid).step_started_at
    # the fourth is not run: quarantined with the reason
    assert _begin(aid) == (StepStart.quarantined, 3)
    a = load_article(aid)
    assert a.state == ArticleState.quarantined and a.failed_state == ArticleState.extracted
    assert a.failure_reason is not None and a.failure_reason.startswith(
        f"{STEP}: the worker process died 3 times during this step"
    )
    assert last_start is not None and f"{last_start:%Y-%m-%d %H:%M:%S} UTC" in a.failure_reason
    assert a.step_starts == 0 and a.attempts == 0
    # later copies of the message do nothing; the sweep does not re-send it
    assert _begin(aid) == (StepStart.already_quarantined, 0)
    with unit_of_work() as s:
        assert stale_articles(s, db, now=utcnow() + timedelta(days=1)) == []
    # replay puts it back into the step that died, with fresh counts
    with unit_of_work() as s:
        assert replay(s, [aid]) == 1
    a = load_article(aid)
    assert a.state == ArticleState.extracted and a.step_starts == 0
    with unit_of_work() as s:
        assert stale_articles(s, db) == [(aid, "extracted")]
    assert _begin(aid) == (StepStart.run, 0)


def test_a_step_that_moves_the_article_on_clears_its_deaths(db: Any) -> None:
    from worker.pipeline.attempts import StepStart

    aid = _article()
    _begin(aid)
    _begin(aid)  # one death, then a run that
    assert load_article(aid).step_starts == 2
    _end(aid, advanced=True)  # moves the article on: the next step starts from zero
    assert load_article(aid).step_starts == 0
    _begin(aid)
    _begin(aid)
    _end(aid, advanced=False)  # one death stays counted after a run that did nothing
    assert load_article(aid).step_starts == 1
    assert _begin(aid) == (StepStart.run, 1)


def test_finished_article_is_never_quarantined_by_deaths(db: Any) -> None:
    """A step re-run on a processed article (a reprocess restart) that keeps killing
    its worker: the message is dropped, the article keeps its state and data."""
    from worker.pipeline.attempts import StepStart

    aid = _article(ArticleState.processed)
    for i in range(3):
        assert _begin(aid) == (StepStart.run, i)
    assert _begin(aid) == (StepStart.abandoned, 3)
    a = load_article(aid)
    assert a.state == ArticleState.processed and a.step_starts == 0 and a.failed_state is None
    # starts left behind on a finished article (take-backs that failed in an outage) go
    # with the next step that ends on it; on a pending one only its own start goes
    _begin(aid)
    _begin(aid)
    _end(aid, advanced=False)
    assert load_article(aid).step_starts == 0


def test_a_copy_of_a_running_step_neither_counts_nor_runs(configure: Any, pg_url: str) -> None:
    """PostgreSQL: while a step holds its article's row lock, a second copy of its
    message (redelivered, or re-sent by the sweep) is told `busy` and counts nothing."""
    from worker.core.db import init_db, unit_of_work
    from worker.pipeline.attempts import StepStart, lock_article

    init_db(configure(database_url=pg_url))
    aid = _article()
    assert _begin(aid) == (StepStart.run, 0)
    with unit_of_work() as running:
        assert lock_article(running, aid)
        assert _begin(aid) == (StepStart.busy, 0)
    assert load_article(aid).step_starts == 1


def test_a_step_whose_row_is_held_by_a_transaction_that_dies_waits_and_runs(
    configure: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a start is counted (a worker that then died before its step, its
    connection still open: no step lock held) and its transaction takes the row; the
    step's message then runs (its step lock free) and finds the row held. It waits
    for that transaction rather than skip the row (a skipped row used to end the
    message with nothing sent, the article left to the sweep), and when that worker's
    connection goes (a SIGKILL), runs the step: the start left behind is one death,
    read as such, and the step that moved the article on clears it."""
    import threading
    from dataclasses import replace

    import psycopg

    from worker.core.db import init_db
    from worker.pipeline import attempts
    from worker.pipeline.attempts import StepStart, run_step
    from worker.pipeline.steps import StepResult, step_named

    init_db(configure(database_url=pg_url))
    aid = _article()
    assert _begin(aid) == (StepStart.run, 0)  # the other worker: started, not yet locked
    other = psycopg.connect(pg_url)
    dies = threading.Timer(1.0, other.close)
    real_lock = attempts.lock_article
    ran: list[int] = []

    def other_locks_first(session: Any, article_id: int) -> bool:
        # between this step's start and its lock, the other worker takes the row, then dies
        other.execute("SELECT id FROM article WHERE id = %s FOR UPDATE", (article_id,))
        dies.start()
        return real_lock(session, article_id)

    def dedup_ok(session: Any, article_id: int, settings: Any) -> StepResult:
        ran.append(article_id)
        session.get(Article, article_id).state = ArticleState.deduplicated
        return StepResult(advanced=True)

    monkeypatch.setattr(attempts, "lock_article", other_locks_first)
    outcome = run_step(replace(step_named("dedup"), run=dedup_ok), aid, follow_up=False)
    dies.join()
    assert ran == [aid] and outcome.advanced and outcome.state == ArticleState.deduplicated
    a = load_article(aid)
    assert a.state == ArticleState.deduplicated and a.step_starts == 0


def test_a_late_message_of_a_step_done_counts_no_start_and_holds_no_lock(db: Any) -> None:
    """A message of a step its article has already passed (the live pipeline's extract
    message, delivered after a job item extracted the article itself) does nothing, and
    neither counts a start (the next step would take it for a death) nor, on
    PostgreSQL, takes the row: the next step, begun meanwhile, runs. It used to be told
    `busy`, and the job item then left the article to its lease (`stale_after`, 600 s),
    so `jobs show --wait` waited that long (a flaky test under load)."""
    from dataclasses import replace

    from worker.core.db import is_postgres, unit_of_work
    from worker.pipeline.attempts import (
        StepStart,
        begin_step,
        end_step,
        lock_article,
        run_step,
    )
    from worker.pipeline.steps import StepResult, step_named

    aid = _article(ArticleState.extracted)
    extract, dedup = step_named("extract"), step_named("dedup")
    with unit_of_work() as late:  # the late extract message, its transaction still open
        started = begin_step(late, aid, extract.task_name, 3, takes=extract.takes.value)
        assert started == (StepStart.not_its_state, 0)
        if is_postgres(late):
            # the job item's next step, meanwhile: its start (no death) and its row lock
            with unit_of_work() as item:
                assert begin_step(item, aid, dedup.task_name, 3, takes=dedup.takes.value) == (
                    StepStart.run,
                    0,
                )
            with unit_of_work() as item:
                assert lock_article(item, aid)
                end_step(item, aid, advanced=False)
    assert load_article(aid).step_starts == 0

    def must_not_run(session: Any, article_id: int, settings: Any) -> StepResult:
        raise AssertionError("a step must not run on an article past its state")

    # The whole step: nothing run, nothing counted, and the article's state told (a job
    # item goes on with the step of that state instead of leaving the article).
    outcome = run_step(replace(extract, run=must_not_run), aid, follow_up=False, settings=db)
    assert outcome.state == ArticleState.extracted and not outcome.advanced
    assert outcome.retry_in is None
    assert load_article(aid).step_starts == 0


def test_articles_inserted_without_the_new_columns_start_at_zero(db: Any) -> None:
    """Bulk inserts (feed polls, backfill) name their columns; the database default
    fills the counter."""
    from sqlalchemy import insert

    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        s.execute(
            insert(Article).values(
                url="https://news.example/bulk",
                url_hash="bulk",
                host="news.example",
                state="discovered",
                attempts=0,
                state_changed_at=utcnow(),
                discovered_at=utcnow(),
                categories=[],
                tags=[],
            )
        )
    with unit_of_work() as s:
        a = s.exec(select(Article).where(Article.url_hash == "bulk")).one()
        assert a.step_starts == 0 and a.step_started_at is None


def test_sweep_sends_one_article_whose_worker_died_at_a_time(db: Any) -> None:
    """Steps whose worker died (a poison page's, and those of the articles that ran
    next to it in the same process) go back one at a time, so the innocent ones do not
    run next to the poison page again and again; the others go all at once. While the
    suspect sent last is in flight (sent less than stale_after ago) the sweep sends no
    other; once it has been gone that long (it died again), the next one goes."""
    from sqlalchemy import update
    from sqlmodel import col

    from worker.core.db import unit_of_work
    from worker.pipeline.sweep import stale_articles

    died = [_article(tag=f"died{i}") for i in range(3)]
    fine = [_article(tag=f"fine{i}") for i in range(2)]
    with unit_of_work() as s:
        s.execute(update(Article).where(col(Article.id).in_(died)).values(step_starts=1))
    sent: list[list[int]] = []
    for _ in range(2):
        with unit_of_work() as s:
            sent.append(sorted(i for i, _ in stale_articles(s, db)))
    assert sent == [sorted([*fine, died[0]]), []]
    later = utcnow() + timedelta(seconds=db.stale_after + 1)
    for _ in range(3):
        with unit_of_work() as s:
            sent.append(sorted(i for i, _ in stale_articles(s, db, now=later) if i in died))
        later += timedelta(seconds=db.stale_after + 1)
    # died[0] died again (still counted, mark older than stale_after): the next goes
    assert sent[2:] == [[died[1]], [died[2]], [died[0]]]


def test_suspects_are_sent_one_after_the_other_as_each_settles(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a worker death with N suspects, the next suspect goes as soon as the one
    before has settled, not a sweep later: N suspects finish after one sweep. A poison
    page that kills its worker again ends the chain; the next sweep after stale_after
    sends the next suspect, and the poison page is quarantined after max_step_deaths."""
    from dataclasses import replace

    from sqlalchemy import update
    from sqlmodel import col

    from worker.core import outbox
    from worker.core.db import unit_of_work
    from worker.pipeline.attempts import begin_step, run_step
    from worker.pipeline.steps import StepResult, step_named
    from worker.pipeline.sweep import resend_stale

    sent: list[outbox.Message] = []
    # this test's own sender, put back afterwards (a sender left behind sent the later
    # tests' messages of this process nowhere)
    monkeypatch.setattr(outbox, "_sender", sent.extend)
    poison_tag = "died2"
    suspects = [_article(tag=f"died{i}") for i in range(6)]
    poison = suspects[2]
    with unit_of_work() as s:
        s.execute(update(Article).where(col(Article.id).in_(suspects)).values(step_starts=1))

    def dedup_ok(session: Any, article_id: int, settings: Any) -> StepResult:
        article = session.get(Article, article_id)
        article.state = ArticleState.deduplicated
        return StepResult(advanced=True)

    dedup = replace(step_named("dedup"), run=dedup_ok)
    ran: list[int] = []

    def work() -> None:
        """A worker: takes each message; the poison page's step kills the process (its
        start is recorded, nothing after it runs)."""
        while sent:
            message = sent.pop(0)
            if message.task != dedup.task_name:
                continue  # the next step's message: not this test's business
            (aid,) = message.args
            if aid == poison and load_article(aid).step_starts < db.max_step_deaths:
                with unit_of_work() as s:
                    begin_step(s, aid, dedup.task_name, db.max_step_deaths)
                continue  # (at the limit, run_step quarantines it instead of running it)
            ran.append(aid)
            run_step(dedup, aid, follow_up=True, settings=db)

    def sweep(_: Any) -> None:
        with unit_of_work() as s:
            resend_stale(s, db)

    sweeps = 1
    sweep(None)
    work()
    # the first two went one after the other; the poison page killed its worker
    assert ran == suspects[:2], (ran, poison_tag)
    # The next sweep, once the poison page's message has been gone stale_after: the
    # chain goes on with the innocent ones (oldest mark first), all in that one sweep.
    gone = utcnow() - timedelta(seconds=db.stale_after + 1)
    with unit_of_work() as s:
        s.execute(update(Article).where(col(Article.id) == poison).values(state_changed_at=gone))
    sweeps += 1
    sweep(None)
    work()
    assert ran == [*suspects[:2], *suspects[3:]]
    assert sweeps == 2, "N suspects, far fewer than N sweeps"
    done = [load_article(a) for a in suspects if a != poison]
    assert all(a.state == ArticleState.deduplicated and a.step_starts == 0 for a in done)
    # The poison page keeps its count: sent alone each time, quarantined at the limit.
    # A suspect left behind goes as soon as the poison page is quarantined.
    late = _article(tag="late")
    with unit_of_work() as s:
        s.execute(
            update(Article)
            .where(col(Article.id) == late)
            .values(step_starts=1, state_changed_at=gone)
        )
    while load_article(poison).state != ArticleState.quarantined and sweeps < 20:
        with unit_of_work() as s:
            s.execute(
                update(Article)
                .where(col(Article.id) == poison)
                .values(state_changed_at=utcnow() - timedelta(hours=1))
            )
        sweeps += 1
        sweep(None)
        work()
    a = load_article(poison)
    assert a.state == ArticleState.quarantined, a
    assert a.failure_reason and f"died {db.max_step_deaths} times" in a.failure_reason
    assert load_article(late).state == ArticleState.deduplicated, "sent when it was quarantined"
    assert ran[-1] == late


def test_an_extract_that_sends_its_article_back_to_be_fetched_sends_the_fetch(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step's message ends when the step returns, so a step that leaves its article
    pending must send that state's step after its commit, or the article waits for the
    sweep (``stale_after``). An extract step whose archived page is missing sends its
    article back to ``discovered`` ("archived page missing; refetching") and used to send
    nothing; it now sends the fetch step. The messages are caught where the unit of work
    hands them to Celery."""
    from worker.core import outbox
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import FIRST, step_named

    sent: list[outbox.Message] = []
    monkeypatch.setattr(outbox, "_sender", sent.extend)
    aid = _article(ArticleState.fetched)  # fetched, its page in no archive
    outcome = run_step(step_named("extract"), aid, settings=db)
    assert outcome.retry_in is None and outcome.state == ArticleState.discovered
    assert load_article(aid).state == ArticleState.discovered
    assert [(m.task, m.args) for m in sent] == [(FIRST.task_name, (aid,))], sent
