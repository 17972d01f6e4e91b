"""One attempt at a pipeline step: its start, its run, and what a failure costs.

:func:`run_step` is all a step's task does (``tasks.articles``), and what a job item does
for each of its article's steps (``worker.jobs.work``). It needs no Celery: it returns an
:class:`Outcome`, which the caller maps to done or to a retry of its message. The next
step's message is recorded in the step's own transaction and sent once it has committed
(:mod:`worker.core.outbox`). A step with a ``ready`` look (the fetch: is its host free
for it?) asks it first, reading only; a step whose host is not free is sent back for its
turn then (:func:`wait_for_host`), its sweep mark held, and nothing else written.
Otherwise a step runs in three transactions:

1. :func:`begin_step` commits the step's *start* on the article. A start that is never
   taken back is a *death*: the worker process died during the step (out of memory, a
   crash in a C library, SIGKILL), which no exception reports. After
   ``max_step_deaths`` of them the article is quarantined instead of run again.
2. The step itself, under the article's row lock (:func:`lock_article`), ends with
   :func:`end_step`, which takes the start back.
3. If the step raised, :func:`settle` decides what the failure costs, in a short
   transaction of its own, and what the task does next (an :class:`Outcome`):

   * errors of the environment (database, broker, archive, a claims model that cannot
     load) retry later without counting against the article (:data:`ENVIRONMENT_ERRORS`);
   * a host that asks to wait (:class:`~worker.network.politeness.HostBusy`) retries when
     it is free, uncounted, and *holds the sweep* until then: the article's sweep mark
     (``state_changed_at``) moves to the end of the wait (:func:`hold_sweep`);
   * transient fetch errors, and a robots.txt that cannot be read, count an *attempt*
     and retry with backoff;
   * a host name that does not exist (:class:`~worker.network.http.UnknownHost`)
     quarantines the article at once;
   * anything else counts an attempt too; after ``max_attempts`` the article is
     *quarantined* with its error (visible in ``claimwire status``,
     ``claimwire replay`` sends it back: :mod:`worker.pipeline.replay`).

The functions that take a session never commit; :func:`settle` and
:func:`take_back_start` open their own short transactions, because what they record
must outlive the step's rolled-back one.
"""

from __future__ import annotations

import heapq
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import redis.exceptions
import structlog
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import bindparam, case, or_, text, update
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session, col, select

from schemas.models import PENDING_ARTICLE_STATES, Article, ArticleState
from schemas.tables import article as article_table
from schemas.types import UTCDateTime, utcnow
from worker.claims.model import ModelUnavailable
from worker.core import outbox
from worker.core.db import get_engine, is_postgres, unit_of_work
from worker.core.queues import max_countdown
from worker.core.settings import Settings, get_settings
from worker.network.http import FetchError, UnknownHost
from worker.network.politeness import HostBusy, turn_countdown
from worker.network.robots import RobotsUnavailable
from worker.pages.archive import ArchiveError
from worker.pipeline.steplock import STEP_LOCK_CLASS, StepLock
from worker.pipeline.steps import (
    CLAIMS,
    PIPELINE,
    HostWait,
    Step,
    StepResult,
    next_step,
    step_for,
)
from worker.pipeline.sweep import send_next_suspect

log = structlog.get_logger("claimwire.pipeline")

# Errors of the environment, not of the item: retried without counting an attempt, so
# that a database restart, a Redis restart (the host limiter lives there) or a full disk
# never quarantines good articles.
ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,  # includes deadlocks and serialization failures (SQLSTATE 40xxx)
    InterfaceError,  # "connection already closed" after a server restart
    DisconnectionError,
    PoolTimeout,
    ArchiveError,
    BrokerError,
    ConnectionError,
    TimeoutError,
    redis.exceptions.ConnectionError,  # includes BusyLoadingError, AuthenticationError
    redis.exceptions.TimeoutError,
    ModelUnavailable,
)

ENV_MAX_RETRIES = 8
"""Retries of one message after environment errors. Past this the message is dropped
(acknowledged) and the article waits in its pending state for the sweep, which sends at
most one fresh message per article per ``stale_after``: a long outage never piles up
retry chains."""


_ROW_TASKS = frozenset(step.task_name for step in PIPELINE)
"""The tasks of the pipeline's rows: each acts only on an article in its ``takes`` state
(a reprocess restart, not a row, takes any final state)."""

NO_RETRY_LIMIT = sys.maxsize
"""The retry limit of the retries that must go on: a host that asks to wait, and
transient or item errors (bounded by ``max_attempts`` through quarantine instead).
Celery's ``max_retries=None`` would mean its default limit, 3, not "no limit"."""


@dataclass(frozen=True)
class Outcome:
    """What a step's task does next: it is done, or it runs again in ``retry_in``
    seconds (at most ``max_retries`` times in all; ``cause`` is the error that asked
    for it)."""

    advanced: bool = False  # the step moved its article on
    retry_in: float | None = None
    max_retries: int = NO_RETRY_LIMIT
    cause: BaseException | None = None
    state: str | None = None  # the article's state after the step, when known
    new_canonicals: tuple[int, ...] = ()  # articles whose claims step must run now


# ---------------------------------------------------------------- running a step


def run_step(
    step: Step,
    article_id: int,
    *,
    retries: int = 0,
    label: str | None = None,
    follow_up: bool = True,
    on_begin: Callable[[Session], object] | None = None,
    on_end: Callable[[Session], object] | None = None,
    settings: Settings | None = None,
) -> Outcome:
    """Run ``step`` for ``article_id``.

    0. A step with a ``ready`` look (not for a job's item, ``on_begin``) asks it, in a
       transaction that only reads: a host that is not free sends the step back for its
       turn before anything else is written (:func:`wait_for_host`).
    1. Its start is committed on the article (:func:`begin_step`);
       an article that died too often during this step is quarantined instead, and a
       copy of a step that is running elsewhere does nothing. ``on_begin`` runs in that
       same transaction (a job renews its item's lease there).
    2. The step runs in one transaction under the article's row lock; its start is taken
       back in it. With ``follow_up``, an article it moved on gets the next step's
       message, and a group's new canonical the claims step's, both sent after the
       commit; without (a job item runs the next steps itself) nothing is sent.
       ``on_end`` runs at the end of that transaction (a job finishes its item there
       when the article is finished).
    3. If it raised, :func:`settle` says what that costs.

    ``retries``: how often this message ran already; ``label``: the task named in logs
    and failure reasons (the step's own task unless a job item runs it)."""
    settings = settings or get_settings()
    label = label or step.task_name
    if step.ready is not None and on_begin is None:
        try:
            with unit_of_work() as session:
                wait = step.ready(session, article_id, settings)
        except Exception as exc:
            if not is_environment_error(exc):
                raise
            return environment_retry(label, exc, retries, article_id=article_id)
        if wait is not None:
            return wait_for_host(article_id, wait, settings)
    try:
        hold = StepLock(get_engine(settings).connect(), article_id)
    except Exception as exc:
        if not is_environment_error(exc):
            raise
        return environment_retry(label, exc, retries, article_id=article_id)
    with hold:
        outcome, settled_suspect = _run_held(
            hold, step, article_id, retries, label, follow_up, on_begin, on_end, settings
        )
    if settled_suspect and follow_up:
        # A suspect (its worker died during this step before) ran and its process lives,
        # or it was quarantined: the next suspect goes now (worker.pipeline.sweep).
        send_next_suspect(settings)
    return outcome


def _run_held(
    hold: StepLock,
    step: Step,
    article_id: int,
    retries: int,
    label: str,
    follow_up: bool,
    on_begin: Callable[[Session], object] | None,
    on_end: Callable[[Session], object] | None,
    settings: Settings,
) -> tuple[Outcome, bool]:
    """:func:`run_step`'s steps 1 to 3 on the connection of ``hold``, which holds the
    article's step lock from the start until the start is settled (taken back, or the
    article moved on, and committed): a copy of this step arriving meanwhile, even
    between the two transactions, sees this one running and neither counts nor runs.
    The lock is released before the step's follow-up messages are sent (the next step
    must not find it held). Returns the outcome and whether a suspect settled (the next
    one may go)."""
    try:
        with unit_of_work(bind=hold.conn) as session:
            if on_begin is not None:
                on_begin(session)
            started, deaths = begin_step(
                session,
                article_id,
                label,
                settings.max_step_deaths,
                takes=step.takes.value if step.task_name in _ROW_TASKS else None,
                lock=hold,
            )
    except Exception as exc:
        if not is_environment_error(exc):
            raise
        return environment_retry(label, exc, retries, article_id=article_id), False
    if started is StepStart.not_its_state:
        # A message of a step already done (or not yet due): nothing to do here. The
        # article's state goes back, so a job item goes on with the step of that state.
        log.info("step_skipped", task=label, article_id=article_id, why=started.value)
        return Outcome(state=_state_of(article_id)), False
    if started is not StepStart.run:
        # the suspect in flight is settled when quarantined
        return _not_run(label, article_id, started, deaths), started is StepStart.quarantined
    if deaths:
        log.warning("step_rerun_after_death", task=label, article_id=article_id, deaths=deaths)
    result: StepResult | None = None
    state: str | None = None

    def ended() -> None:
        if result is not None:  # its start taken back in the commit: settled
            hold.release()

    try:
        with unit_of_work(bind=hold.conn, then=ended) as session:
            if lock_article(session, article_id):
                result = step.run(session, article_id, settings)
                state = end_step(session, article_id, advanced=result.advanced)
                if on_end is not None:
                    on_end(session)
                if follow_up:
                    _follow_up(session, step, article_id, result, state)
    except Exception as exc:  # noqa: BLE001 (every failure is settled: counted or retried)
        # this suspect settled: its process lives
        return settle(label, article_id, exc, retries, settings), bool(deaths)
    if result is None:
        # The article is gone (its row deleted since the start). Our start is not a
        # death: take it back, then release the lock.
        log.info("step_skipped", task=label, article_id=article_id, why="gone")
        take_back_start(article_id)
        return Outcome(), bool(deaths)
    if result.advanced:
        # one INFO line per step that moved its article on (the embedded run leaves
        # these out: worker.embedded.quiet.PER_ITEM_EVENTS)
        log.info("article_step_done", step=step.name, article_id=article_id)
    outcome = Outcome(advanced=result.advanced, state=state, new_canonicals=result.new_canonicals)
    return outcome, bool(deaths)


HOLD_SLACK = 30.0
"""Seconds an article's sweep mark may be before the turn its fetch is sent back for
and still count as holding the sweep (at most a quarter of ``stale_after``): a turn that
moved a moment after the one its poll held the mark for costs no write transaction."""


def wait_for_host(article_id: int, wait: HostWait, settings: Settings) -> Outcome:
    """A step whose host is not free (its turn ``wait.seconds`` ahead, reserved for it),
    found before anything was written: sent back for its turn as a :class:`HostBusy`
    raised by the step is (:func:`settle`), with its sweep mark held until the turn
    (:func:`hold_sweep`: no second copy from the sweep meanwhile, and `claimwire status`
    reads the host's turns from the marks), in one short transaction, and no start to
    commit and take back: those two write transactions were most of the `run`
    process's waits for SQLite's write lock (issue 16). A mark that already holds the
    sweep until about the turn (:data:`HOLD_SLACK`) is left as it is: nothing written."""
    countdown = turn_countdown(wait.seconds)
    if wait.held_until is not None and wait.held_until >= utcnow() + timedelta(
        seconds=countdown - min(HOLD_SLACK, settings.stale_after / 4)
    ):
        # Its mark already holds the sweep until about its turn (the poll that found it
        # set it to the turn reserved then, which moved a moment since): no write.
        return Outcome(
            retry_in=capped(countdown, settings), cause=HostBusy(wait.host, wait.seconds)
        )
    try:
        with unit_of_work() as session:
            if is_postgres(session):  # as cheap as a start
                session.execute(text("SET LOCAL synchronous_commit = off"))
            hold_sweep(session, article_id, countdown)
    except Exception as exc:  # noqa: BLE001 (best effort: the retry is what matters)
        log.warning("sweep_not_held", article_id=article_id, error=short_error(exc))
    return Outcome(retry_in=capped(countdown, settings), cause=HostBusy(wait.host, wait.seconds))


def _state_of(article_id: int) -> str | None:
    """The article's state now (None when it is gone or the database does not answer:
    the caller then leaves the article to its lease or the sweep)."""
    try:
        with unit_of_work() as session:
            article = session.get(Article, article_id)
            return str(article.state) if article is not None else None
    except ENVIRONMENT_ERRORS:
        return None


def _follow_up(
    session: Session, step: Step, article_id: int, result: StepResult, state: str | None
) -> None:
    """The messages a step calls for, sent once its transaction commits: the next
    step's when it moved its article on, the step of the article's new state when it
    sent it back (an extract whose archived page is missing sends it back to be fetched:
    with no message it waited for the sweep), and a group's new canonical's claims step."""
    following = next_step(step) if result.advanced else None
    if following is None and state is not None and state != step.takes:
        following = step_for(state)  # a pending state the step moved it back to
    if following is not None:
        outbox.send_after_commit(session, following.task_name, article_id)
    for other in result.new_canonicals:
        outbox.send_after_commit(session, CLAIMS.task_name, other)


def _not_run(label: str, article_id: int, started: StepStart, deaths: int) -> Outcome:
    if started is StepStart.quarantined:
        log.error("quarantined_after_deaths", task=label, article_id=article_id, deaths=deaths)
        return Outcome(state="quarantined")
    if started is StepStart.abandoned:
        log.error("step_abandoned_after_deaths", task=label, article_id=article_id, deaths=deaths)
        return Outcome()
    log.info("step_skipped", task=label, article_id=article_id, why=started.value)
    if started is StepStart.already_quarantined:
        return Outcome(state="quarantined")
    return Outcome()


# ------------------------------------------------------------ starts and deaths


_BEGIN_STEP_PG = text(
    """
    WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true)),
    cur AS (
        SELECT id, state, step_starts, step_started_at FROM article
        WHERE id = :id AND (CAST(:takes AS text) IS NULL OR state = CAST(:takes AS text))
        FOR UPDATE SKIP LOCKED
    ),
    upd AS (
        UPDATE article SET step_starts = article.step_starts + 1, step_started_at = :now
        FROM cur, cfg
        WHERE article.id = cur.id AND cur.state <> 'quarantined' AND cur.step_starts < :max
        RETURNING article.id
    )
    SELECT cur.state, cur.step_starts, cur.step_started_at, (SELECT count(*) FROM upd)
    FROM cur
    """
)

_BEGIN_STEP_PG_LOCKED = text(
    """
    WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true)),
    seen AS (
        SELECT id FROM article
        WHERE id = :id AND (CAST(:takes AS text) IS NULL OR state = CAST(:takes AS text))
    ),
    held AS (SELECT pg_try_advisory_lock(:class, seen.id) AS got FROM seen),
    cur AS (
        SELECT article.id, article.state, article.step_starts, article.step_started_at
        FROM article, held
        WHERE held.got AND article.id = :id
          AND (CAST(:takes AS text) IS NULL OR article.state = CAST(:takes AS text))
        FOR UPDATE OF article SKIP LOCKED
    ),
    upd AS (
        UPDATE article SET step_starts = article.step_starts + 1, step_started_at = :now
        FROM cur, cfg
        WHERE article.id = cur.id AND cur.state <> 'quarantined' AND cur.step_starts < :max
        RETURNING article.id
    )
    SELECT cur.state, cur.step_starts, cur.step_started_at, (SELECT count(*) FROM upd),
        held.got
    FROM held LEFT JOIN cur ON true
    """
)
""":data:`_BEGIN_STEP_PG` under the step's lock (:mod:`worker.pipeline.steplock`): the
advisory lock is tried only on an article in the step's state (a late message of a step
already done never takes it from the next step), and before the row and its count are
read, so a start counted by a copy still running is never read as a death."""


# The bookkeeping statements are of the table, not the entity (as _HOLD_SWEEP): an
# entity's UPDATE or SELECT executed by the session goes through the ORM's bulk-update and
# loading machinery (its plan for the session's objects, their synchronization), about a
# fifth of a fetch step's CPU for statements that touch no object; the table's go
# straight to the connection. They do not flush the session as the entity's did:
# :func:`begin_step` and :func:`end_step` flush it first themselves.
_T = article_table.c
_START_ROW = select(_T.state, _T.step_starts, _T.step_started_at).where(
    _T.id == bindparam("article_id")
)
# The row read waiting for its lock: the step's lock is this copy's (no copy of the step
# runs) but another transaction holds the row, another step's writing the article (a
# group's new canonical taking its claims from a copy): wait for it to end.
_START_ROW_WAIT = _START_ROW.with_for_update()
_COUNT_START = (
    update(article_table)
    .where(_T.id == bindparam("article_id"))
    .values(
        step_starts=_T.step_starts + 1,
        step_started_at=bindparam("now", type_=UTCDateTime()),
    )
)

_UNCOUNT_START = (
    update(article_table)
    .where(_T.id == bindparam("article_id"))
    .values(step_starts=_T.step_starts - 1)
)

_START_IF_RUNS = {
    # SQLite: the start counted and its earlier starts read in one statement when the
    # step runs (the article in its state, not quarantined, below the deaths' limit);
    # only otherwise is the row read to say why not (a SELECT and an UPDATE a step)
    has_state: update(article_table)
    .where(
        _T.id == bindparam("article_id"),
        (_T.state == bindparam("takes"))
        if has_state
        else (_T.state != ArticleState.quarantined.value),
        _T.step_starts < bindparam("max"),
    )
    .values(
        step_starts=_T.step_starts + 1,
        step_started_at=bindparam("now", type_=UTCDateTime()),
    )
    .returning(_T.step_starts)
    for has_state in (True, False)
}


class StepStart(StrEnum):
    """What :func:`begin_step` decided."""

    run = "run"  # start recorded: run the step
    busy = "busy"  # another copy of the step holds the article (or it does not exist)
    not_its_state = "not_its_state"  # the article is not (or no longer) in the step's state
    already_quarantined = "already_quarantined"  # nothing to run
    quarantined = "quarantined"  # too many deaths: quarantined now, not run
    abandoned = "abandoned"  # too many deaths re-running a finished article's step


def begin_step(
    session: Session,
    article_id: int,
    step: str,
    max_deaths: int,
    now: datetime | None = None,
    *,
    takes: str | None = None,
    lock: StepLock | None = None,
) -> tuple[StepStart, int]:
    """Record the start of ``step`` on the article, to be committed before the step runs.

    ``takes``: the state the step acts on (a pipeline row's). An article in another state
    (a message of a step already done, delivered late or twice) is left alone: no start
    counted, no row lock taken, :attr:`StepStart.not_its_state`. Such a message used to
    take the row and count a start while doing nothing, and a job item running the
    article's next step at that moment met a locked row (or a false death) and left the
    article to its lease, ``stale_after`` later. None: any state (a reprocess restart
    takes any final state).

    The row is taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL: a locked row is the
    same step running in another worker, so this copy neither counts nor runs. Starts
    left uncleared by earlier deliveries are worker deaths; at ``max_deaths`` a pending
    article is quarantined with the reason instead of being run again. An article in a
    final state (a step re-run on it, such as a reprocess restart) is not quarantined:
    its counter is cleared and this message dropped.

    ``lock``: the step's lock (:mod:`worker.pipeline.steplock`), taken here before the
    count is read, for the caller to hold until the start is settled. A copy of the step
    whose lock is held by another one, running right now (possibly between its start
    and its step transaction, when the row is not locked), is told ``busy`` and counts
    nothing; without it, a start such a copy had just counted would be read as a death.

    Returns the decision and the deaths found (starts of earlier deliveries that never
    ended)."""
    now = now or utcnow()
    if is_postgres(session) and lock is not None:
        lock.held = True  # (from here: a statement that fails may have taken it)
        params = {
            "id": article_id,
            "now": now,
            "max": max_deaths,
            "takes": takes,
            "class": STEP_LOCK_CLASS,
        }
        locked = session.execute(_BEGIN_STEP_PG_LOCKED, params).first()
        lock.held = locked is not None and bool(locked[4])
        if locked is not None and not lock.held:
            return StepStart.busy, 0  # a copy of the step is running
        if locked is not None and locked[3]:
            return StepStart.run, int(locked[1])
        # (no row: not in the step's state, or another transaction holds it)
        row = locked[:4] if locked is not None and locked[0] is not None else None
        if row is None and lock.held:
            # The article was in the step's state and the step's lock is ours: the row is
            # held by another step's transaction, not a copy of this one. Dropping this
            # message as busy left the article to the sweep, ``stale_after`` later.
            row = session.execute(_START_ROW_WAIT, {"article_id": article_id}).first()
        if row is None and (moved := _moved_on(session, article_id, takes)) is not None:
            return moved, 0
    elif is_postgres(session):
        # One statement: lock the row unless a running step holds it, count the start
        # unless the step must not run, and let the commit skip the wait for the disk
        # (``synchronous_commit`` off for this transaction only: the start is visible
        # to every session at once, and can only be lost with the server itself,
        # which leaves one death uncounted). See docs/reliability.md for its price.
        row = session.execute(
            _BEGIN_STEP_PG, {"id": article_id, "now": now, "max": max_deaths, "takes": takes}
        ).first()
        if row is not None and row[3]:
            return StepStart.run, int(row[1])
        # Not taken: locked by a running step, or not in the step's state (then the
        # statement took no lock).
        if row is None and (moved := _moved_on(session, article_id, takes)) is not None:
            return moved, 0
    else:
        session.flush()  # (what ``on_begin`` changed: written first, as before)
        if takes != ArticleState.quarantined.value:  # (no step takes that state)
            params = {"article_id": article_id, "max": max_deaths, "now": now, "takes": takes}
            started = session.execute(_START_IF_RUNS[takes is not None], params).first()
            if started is not None:
                # Its lock only now, under SQLite's write lock: a copy that holds it
                # committed its start before this statement and has not settled it yet.
                if lock is not None and not lock.take_file():
                    session.execute(_UNCOUNT_START, {"article_id": article_id})
                    return StepStart.busy, 0
                return StepStart.run, int(started[0]) - 1
        row = session.execute(_START_ROW, {"article_id": article_id}).first()
    if row is None:
        return StepStart.busy, 0
    state, deaths, last_start = row[0], int(row[1]), row[2]
    if state == ArticleState.quarantined:
        return StepStart.already_quarantined, deaths
    if takes is not None and state != takes:
        return _not_its_state(state), 0
    if deaths >= max_deaths:
        if lock is not None and not lock.postgres and not lock.take_file():
            return StepStart.busy, 0  # one of those starts is a copy running now
        values: dict[str, object] = {"step_starts": 0}
        if state in {s.value for s in PENDING_ARTICLE_STATES}:
            when = f"{last_start:%Y-%m-%d %H:%M:%S} UTC" if last_start else "unknown"
            values.update(
                state=ArticleState.quarantined.value,
                failed_state=state,
                state_changed_at=now,
                failure_reason=(
                    f"{step}: the worker process died {deaths} times during this step "
                    f"(killed or crashed; last started at {when}); not run again"
                ),
            )
        session.execute(update(Article).where(col(Article.id) == article_id).values(**values))
        return (StepStart.quarantined if "state" in values else StepStart.abandoned), deaths
    session.execute(_COUNT_START, {"article_id": article_id, "now": now})
    return StepStart.run, deaths


def _moved_on(session: Session, article_id: int, takes: str | None) -> StepStart | None:
    """Why a start statement found no row to take, read without a lock: the article
    left the state the step takes (:func:`_not_its_state`), or ``None`` when it is
    still in it (another transaction holds its row: a running copy of the step)."""
    if takes is None:
        return None
    state = session.execute(select(Article.state).where(col(Article.id) == article_id)).scalar()
    if state is not None and state != takes:
        return _not_its_state(state)
    return None


def _not_its_state(state: str) -> StepStart:
    if state == ArticleState.quarantined:
        return StepStart.already_quarantined
    return StepStart.not_its_state


_PENDING = [s.value for s in PENDING_ARTICLE_STATES]
_END_STEP = {
    # Built once: a step's bookkeeping statements are the same for every article (their
    # values bound), and building them anew for each step was CPU of every step.
    advanced: update(article_table)
    .where(_T.id == bindparam("article_id"), _T.step_starts > 0)
    .values(
        step_starts=0 if advanced else case((_T.state.in_(_PENDING), _T.step_starts - 1), else_=0)
    )
    .returning(_T.state)
    for advanced in (True, False)
}
_STATE = select(_T.state).where(_T.id == bindparam("article_id"))


def end_step(session: Session, article_id: int, *, advanced: bool) -> str | None:
    """The step started by :func:`begin_step` returned or raised (its process lives):
    take its start back. A step that moved the article on clears the counter, so the
    next step starts from zero; so does any step that ends on a finished article (what
    is left there are starts whose take-back failed, say during a database outage, of
    messages that found nothing to do: no step of that article is dying).

    Returns the article's state (None: it is gone), read by the same statement."""
    session.flush()  # the step's writes first: the statement reads the state they set
    row = session.execute(_END_STEP[advanced], {"article_id": article_id}).first()
    if row is None:  # no start to take back
        row = session.execute(_STATE, {"article_id": article_id}).first()
    return str(row[0]) if row is not None else None


def lock_article(session: Session, article_id: int) -> bool:
    """Take the article's row lock for this step's transaction (PostgreSQL), waiting for
    a transaction that holds it.

    A step holds its step lock (:func:`run_step`, :mod:`worker.pipeline.steplock`), so no
    copy of it runs: whatever holds the row is another transaction that will end,
    another step writing the article (a group's new canonical demoting it) or one that
    only took a foreign key's ``KEY SHARE`` on it (a copy joining its group, a poll
    recording a sighting, a claim cluster first seen in it), which ``FOR UPDATE``
    conflicts with. The step waits for it. It used to skip such a row (``SKIP LOCKED``)
    as if a copy of the step held it, and its message ended with nothing sent: the
    article waited for the sweep, ``stale_after`` later. On SQLite the database lock
    serializes writers instead. Returns False for an article that no longer exists."""
    if not is_postgres(session):
        return True
    return session.execute(_ROW_LOCK, {"article_id": article_id}).first() is not None


_ROW_LOCK = select(Article.id).where(col(Article.id) == bindparam("article_id")).with_for_update()


def hold_sweep(session: Session, article_id: int, seconds: float) -> None:
    """Move a pending article's sweep mark to ``seconds`` from now (never back): its step
    waits for a retry until then, which may be later than the retry's countdown
    (:func:`capped`); the sweep sends it again ``stale_after`` after that if no retry
    did."""
    hold_sweeps(session, {article_id: utcnow() + timedelta(seconds=seconds)})


def hold_sweeps(session: Session, until: dict[int, datetime]) -> None:
    """Move each pending article's sweep mark to its time in ``until`` (never back), in
    one statement: :func:`hold_sweep` for one, a poll's new articles held to the turns
    it reserved for their fetches for many (``worker.feeds.polling.send_fetches``)."""
    if until:
        rows = [{"article_id": article_id, "until": at} for article_id, at in until.items()]
        session.execute(_HOLD_SWEEP, rows)


# Built once, its values bound (a fetch sent back for its host's turn holds its sweep mark:
# thousands a run); as the start's and end's, it leaves the session's objects alone.
_UNTIL = bindparam("until", type_=UTCDateTime())
_HOLD_SWEEP = (
    # of the table, not the entity: given many rows, the session runs it as one
    # executemany (an entity's UPDATE with many rows is its bulk update by primary key)
    update(article_table)
    .where(
        article_table.c.id == bindparam("article_id"),
        # one comparison a state, not IN: an IN list is an expanding parameter, which
        # an executemany cannot take
        or_(*(article_table.c.state == s.value for s in PENDING_ARTICLE_STATES)),
        article_table.c.state_changed_at < _UNTIL,
    )
    .values(state_changed_at=_UNTIL)
)


class HeldSends:
    """Fetch messages held in this process until they are due, then sent (without a
    countdown): the embedded run's (:data:`HELD`, switched on by :func:`hold_in_process`
    in the `run` process, whose threads alone consume the ``io`` queue of its broker).
    The production io worker (a thread pool on Redis) holds here the fetches it sends
    back for their turns, and at the turn runs each again in its own pool instead of
    sending it (``worker.pipeline.reruns.InProcessRuns``).

    The embedded broker is a queue read in the order messages were sent. A message sent
    with a countdown waits its turn in that order; when the `run` process is behind (its
    threads busy, the machine loaded), it is taken from the queue after its turn with
    the messages sent next to it. A poll's fetches, sent together for turns one interval
    apart, then came together, long after their turns: one of them started, the others
    found their host not free and were sent back, together again, and so on (issue 16:
    3,857 fetch messages for 1,124 pages, 3.2 looks a page). Held here and sent at its
    turn, a fetch enters the queue at its turn, between the other hosts' fetches, and
    the queue's wait (when there is one) keeps the host's fetches one interval apart.

    A process that stops sends what it holds with the rest of each countdown
    (:meth:`flush`, on the worker's ``worker_shutting_down``), as the broker would have
    kept it. One that dies loses it, as a message taken into Celery's timer already was
    (the embedded broker gives a message up when it is read): the article's sweep mark,
    held until the turn (:func:`hold_sweep`), makes the sweep send it again, as for any
    lost message.

    ``send(countdown)`` sends the message: ``None`` at its turn, else held back by the
    broker that many seconds."""

    def __init__(self) -> None:
        self.enabled = False
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[float | None], object]]] = []
        self._count = 0
        self._thread: threading.Thread | None = None

    def hold(self, seconds: float, send: Callable[[float | None], object]) -> None:
        """Call ``send(None)`` in ``seconds`` (on this holder's thread)."""
        with self._cond:
            self._count += 1
            heapq.heappush(self._heap, (time.monotonic() + seconds, self._count, send))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="claimwire-held-sends", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _due, _n, send = heapq.heappop(self._heap)
            self._send(send, None)

    def flush(self) -> int:
        """Send everything held now, each with the rest of its countdown; how many."""
        with self._cond:
            held, self._heap = self._heap, []
        now = time.monotonic()
        for due, _n, send in sorted(held):
            self._send(send, max(0.0, due - now) or None)
        return len(held)

    @staticmethod
    def _send(send: Callable[[float | None], object], countdown: float | None) -> None:
        try:
            send(countdown)
        except Exception as exc:  # noqa: BLE001 (the sweep sends it again)
            log.warning("held_send_failed", error=short_error(exc))


HELD = HeldSends()

HOLD_AT_LEAST = 0.5
"""Seconds to its turn below which a fetch message is sent at once, with its countdown,
rather than held (:class:`HeldSends`)."""


def hold_in_process(settings: Settings) -> bool:
    """Switch :data:`HELD` on in a process that consumes the embedded broker's ``io``
    queue (the `run` process: ``worker_init``): a poll's fetches and those sent back are
    held, and sent at their turns; whether it is on."""
    if settings.broker_is_embedded:
        HELD.enabled = True
    return HELD.enabled


def held(seconds: float) -> bool:
    """Whether a fetch message due in ``seconds`` is held in this process."""
    return HELD.enabled and seconds >= HOLD_AT_LEAST


def count_attempt(
    session: Session,
    article_id: int,
    error: str,
    *,
    quarantine_after: int,
    hold_sweep_for: float | None = None,
) -> bool:
    """Count a failed attempt on an article; quarantine it when it has failed too
    often. Returns True when it was quarantined (or is gone). ``hold_sweep_for``: the
    server asked to wait that long (``Retry-After``): the sweep leaves the article
    alone until then."""
    article = session.get(Article, article_id, with_for_update=is_postgres(session))
    if article is None or article.state == ArticleState.quarantined:
        return True  # gone, or another copy of this message already gave up on it
    article.attempts += 1
    article.step_starts = max(0, article.step_starts - 1)  # it raised: not a death
    article.failure_reason = error[:2000]
    article.state_changed_at = utcnow()
    if article.attempts >= quarantine_after:
        article.failed_state = article.state
        article.state = ArticleState.quarantined
        log.error("quarantined", article_id=article_id, error=error)
        return True
    if hold_sweep_for:
        session.flush()
        hold_sweep(session, article_id, hold_sweep_for)
    return False


# ------------------------------------------------------------ settling a failed step


def capped(countdown: float, settings: Settings) -> float:
    """``countdown`` or, when longer, the longest a retry may wait in the broker
    (:func:`worker.core.queues.max_countdown`: below Redis's visibility timeout, which
    would otherwise deliver the waiting message a second time). A longer wait is kept
    by the article's sweep mark and by the host limiter, which the early retry meets
    again."""
    return min(countdown, max_countdown(settings))


def backoff(retries: int, base: float = 5.0, cap: float = 600.0) -> float:
    return float(min(cap, base * 2 ** int(retries or 0)) * random.uniform(0.8, 1.2))


def short_error(exc: BaseException) -> str:
    """The first line of an error (SQLAlchemy appends the statement and its
    parameters, which may carry article text; never a password, but noisy)."""
    msg = str(getattr(exc, "orig", None) or exc).strip()
    return msg.splitlines()[0][:500] if msg else type(exc).__name__


def is_item_fault(exc: BaseException) -> bool:
    """An environment error that is really about this one item: the archive works but
    this page's bytes are gone. Counted (and so bounded by quarantine) instead of being
    retried for ever."""
    return isinstance(exc, ArchiveError) and isinstance(exc.__cause__, FileNotFoundError)


def is_environment_error(exc: BaseException) -> bool:
    """An error of the environment, not of the item (a database connection that was
    lost counts; any other database error is the item's)."""
    if isinstance(exc, ENVIRONMENT_ERRORS):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def settle(
    label: str, article_id: int, exc: Exception, retries: int, settings: Settings
) -> Outcome:
    """A step of ``article_id`` raised ``exc`` (its transaction rolled back; ``label``
    names the task, ``retries`` how often its message ran again already): record what
    it costs and say what the task does next. See the module's docstring."""
    if isinstance(exc, RobotsUnavailable):
        # Nothing on the host may be fetched until its robots.txt can be read (RFC 9309).
        # Unlike a busy host this says nothing about when it will end (DNS failure, no
        # route, 5xx), so it counts: the retry comes when robots.txt is asked again, and
        # after max_attempts such checks the article is quarantined with the real cause
        # instead of waiting, uncounted, for ever (and `run --until-idle` with it).
        countdown = exc.retry_after + random.uniform(0, 1)
        wait = capped(countdown, settings)
        return _count(article_id, exc, f"{label}: {exc}", wait, wait, countdown, settings)
    if isinstance(exc, HostBusy):
        # The retry comes at the turn the host's timeline reserved for this article
        # (worker.network.politeness), a moment before it (TURN_LEAD): no jitter, or the
        # turns of one host would come back out of order and the pace would suffer.
        countdown = turn_countdown(exc.retry_after)
        # The retry is the article's message: the sweep must not send another copy while
        # it waits, or every stale_after adds one more endless retry chain (a host whose
        # robots.txt stays unreachable would pile them up for as long as it is down). A
        # wait beyond the cap: the mark still moves to its end, and the retry (at the
        # cap) meets the host's wait again and schedules the rest.
        # A wait that must keep something (a redirect hop the fetch goes on from:
        # worker.pages.fetch.RedirectWaits) records it with the hold.
        take_back_start(article_id, hold_sweep_for=countdown, keep=getattr(exc, "keep", None))
        return Outcome(retry_in=capped(countdown, settings), cause=exc)
    if is_environment_error(exc) and not is_item_fault(exc):
        take_back_start(article_id)
        return environment_retry(label, exc, retries, article_id=article_id)
    if isinstance(exc, UnknownHost):
        # The host name does not exist (NXDOMAIN, `.invalid`): asking again in minutes
        # gets the same answer, so no retry waits on a timer (five rounds of robots.txt
        # kept `run --until-idle` 20-25 minutes on such links). Quarantined at once with
        # the cause; `claimwire replay` sends it back once the name exists. A resolver
        # that does not answer is a transient FetchError below, retried with backoff.
        error = f"{label}: {exc.reason}"
        wait = backoff(retries)  # only with the database down: nothing was counted
        return _count(article_id, exc, error, wait, wait, None, settings, quarantine_after=1)
    if isinstance(exc, FetchError):  # transient: permanent ones are recorded by the step
        # A Retry-After beyond the cap: the step has put the host in back-off for all of
        # it (the limiter), so the capped retry meets HostBusy, uncounted, and waits on.
        wait = capped(exc.retry_after if exc.retry_after else backoff(retries), settings)
        error = f"{label}: {exc.reason}"
        return _count(article_id, exc, error, wait, wait, exc.retry_after, settings)
    # a crash in a step (or a database error that is not an outage) is the item's fault
    log.exception("step_failed", task=label, article_id=article_id)
    error = f"{label}: {type(exc).__name__}: {short_error(exc)}"
    wait = backoff(retries, base=2.0)
    return _count(article_id, exc, error, wait, backoff(retries), None, settings)


def environment_retry(label: str, exc: BaseException, retries: int, **item: int) -> Outcome:
    """Retry later without counting; past :data:`ENV_MAX_RETRIES` drop the message and
    leave the work to recovery (the sweep re-sends an article, a feed's or a job item's
    lease runs out). ``item`` names what the message is about, for the log."""
    log.warning("environment_error", task=label, error=short_error(exc), **item)
    if retries >= ENV_MAX_RETRIES:
        log.warning("left_to_sweep", task=label, **item)
        return Outcome()
    return Outcome(retry_in=backoff(retries), max_retries=ENV_MAX_RETRIES, cause=exc)


def _count(
    article_id: int,
    exc: BaseException,
    error: str,
    retry_in: float,
    retry_in_uncounted: float,
    hold_sweep_for: float | None,
    settings: Settings,
    quarantine_after: int | None = None,
) -> Outcome:
    """A failure of the item: count the attempt with ``error`` on the article and retry
    in ``retry_in`` seconds, or, after ``max_attempts`` (``quarantine_after`` attempts
    when given), quarantine it (done). With the database unreachable nothing is counted:
    retry in ``retry_in_uncounted``."""
    try:
        with unit_of_work() as session:
            quarantined = count_attempt(
                session,
                article_id,
                error,
                quarantine_after=quarantine_after or settings.max_attempts,
                hold_sweep_for=hold_sweep_for,
            )
    except ENVIRONMENT_ERRORS as env_exc:
        return Outcome(retry_in=retry_in_uncounted, cause=env_exc)
    if quarantined:
        return Outcome(state=ArticleState.quarantined.value)
    return Outcome(retry_in=retry_in, cause=exc)


def take_back_start(
    article_id: int,
    hold_sweep_for: float | None = None,
    keep: Callable[[Session], object] | None = None,
) -> None:
    """The step raised (or did not run), so its process lives: the start it recorded
    is not a death. Best effort: with the database down the start stays, and counts as
    one death until the step next ends (``max_step_deaths`` leaves room for such
    outages).

    ``hold_sweep_for``: the step is retried in that many seconds; the article's sweep
    mark moves to then (:func:`hold_sweep`). ``keep`` writes what the retry needs, in
    the same transaction."""
    try:
        with unit_of_work() as session:
            if is_postgres(session):  # as cheap as the start (a host-busy retry does this)
                session.execute(text("SET LOCAL synchronous_commit = off"))
            end_step(session, article_id, advanced=False)
            if hold_sweep_for is not None:
                hold_sweep(session, article_id, hold_sweep_for)
            if keep is not None:
                keep(session)
    except Exception as exc:  # noqa: BLE001 (best effort: the retry is what matters)
        log.warning("start_not_taken_back", article_id=article_id, error=short_error(exc))


def keep_after_rollback(keep: Callable[[Session], object] | None, **item: int) -> None:
    """Write what a unit of work that rolled back must not lose (``keep``, e.g. a
    robots.txt downloaded in the host's slot before the work was sent back for the
    host's next turn: ``worker.network.robots.keep_robots``), in a unit of work of its
    own. Best effort: unwritten, the process still remembers it; ``item`` names the
    work in the warning."""
    if keep is None:
        return
    try:
        with unit_of_work() as session:
            keep(session)
    except Exception as exc:  # noqa: BLE001 (best effort: the retry is what matters)
        log.warning("not_kept", error=short_error(exc), **item)
