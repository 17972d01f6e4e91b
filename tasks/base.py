"""What every task shares: error mapping, attempt counting, enqueue-after-commit."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import redis.exceptions
import structlog
from celery import Task
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session, col, select

from schemas.models import PENDING_ARTICLE_STATES, Article, ArticleState
from schemas.types import utcnow
from worker.celery_app import max_countdown
from worker.claims.model import ModelUnavailable
from worker.core.db import is_postgres, unit_of_work
from worker.core.settings import get_settings
from worker.network.http import FetchError
from worker.network.politeness import HostBusy, RobotsUnavailable
from worker.pages.archive import ArchiveError
from worker.pipeline.attempts import StepStart, begin_step, end_step

log = structlog.get_logger("claimwire.tasks")


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


def is_item_fault(exc: BaseException) -> bool:
    """An environment error that is really about this one item: the archive works but
    this page's bytes are gone. Counted (and so bounded by quarantine) instead of being
    retried for ever."""
    return isinstance(exc, ArchiveError) and isinstance(exc.__cause__, FileNotFoundError)


# Retries of one message after environment errors. Past this the message is dropped
# (acknowledged) and the article waits in its pending state for the sweep, which sends
# at most one fresh message per article per ``stale_after``: a long outage never piles
# up retry chains.
ENV_MAX_RETRIES = 8

# ``task.retry(max_retries=None)`` means Celery's default limit (3), not "no limit": the
# retries that must go on (a host that asks to wait; transient and item errors, bounded
# by ``max_attempts`` through quarantine instead) say so with this.
NO_RETRY_LIMIT = sys.maxsize


def capped(countdown: float) -> float:
    """``countdown`` or, when longer, the longest a retry may wait in the broker
    (``worker.celery_app.max_countdown``: below Redis's visibility timeout, which would
    otherwise deliver the waiting message a second time). A longer wait is kept by the
    article's sweep mark and by the host limiter, which the early retry meets again."""
    return min(countdown, max_countdown(get_settings()))


def backoff(retries: int, base: float = 5.0, cap: float = 600.0) -> float:
    return float(min(cap, base * 2 ** int(retries or 0)) * random.uniform(0.8, 1.2))


def send(task: Any, *args: Any) -> None:
    """Enqueue a follow-up. If the broker is down, the work is still recorded in the
    database and the periodic sweep sends it again, so a failure here only logs."""
    try:
        task.apply_async(args=args)
    except Exception as exc:  # noqa: BLE001 (any broker failure: the sweep recovers it)
        log.warning("enqueue_failed", task=task.name, args=args, error=str(exc))


def record_attempt(
    article_id: int, error: str, *, quarantine_after: int, hold_sweep_for: float | None = None
) -> bool:
    """Count a failed attempt on an article in its own transaction; quarantine it when
    it has failed too often. Returns True when it was quarantined. ``hold_sweep_for``:
    the server asked to wait that long (``Retry-After``): the sweep leaves the article
    alone until then (:func:`_hold_sweep`)."""
    with unit_of_work() as session:
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
            _hold_sweep(session, article_id, hold_sweep_for)
    return False


def lock_article(session: Session, article_id: int) -> bool:
    """Take the article's row lock for this step's transaction (PostgreSQL).

    Returns False when another worker holds it: the same step of the same article is
    running right now (a message redelivered after a broker restart, or re-sent by the
    sweep while the first copy still runs), so this copy does nothing and the one in
    flight finishes the work. A killed worker's lock goes with its connection, and the
    sweep sends the step again. On SQLite the database lock serializes writers instead.
    Also returns False for an article that no longer exists."""
    if not is_postgres(session):
        return True
    row = session.execute(
        select(Article.id).where(Article.id == article_id).with_for_update(skip_locked=True)
    ).first()
    return row is not None


def short_error(exc: BaseException) -> str:
    """The first line of an error (SQLAlchemy appends the statement and its
    parameters, which may carry article text; never a password, but noisy)."""
    msg = str(getattr(exc, "orig", None) or exc).strip()
    return msg.splitlines()[0][:500] if msg else type(exc).__name__


def run_article_step(
    task: Task,
    article_id: int,
    step: Callable[[Session, int], bool],
    follow_up: Any | None,
) -> bool:
    """Run one domain step for one article in one transaction and map its errors.

    * the start is recorded first, in its own transaction (``worker.pipeline.attempts.begin_step``)
      and taken back when the step returns or raises: a start left behind is a worker
      process that died during the step (out of memory, a crash in a C library,
      SIGKILL), which no exception reports. After ``max_step_deaths`` of them the
      article is quarantined instead of being run again;
    * environment errors (database, broker, archive, host limits) retry later without
      counting against the article;
    * transient fetch errors retry with backoff and count; so does a robots.txt that
      cannot be read (one attempt per check of it, ``ROBOTS_ERROR_TTL`` apart), so that
      an unreachable host ends its articles in quarantine with the cause;
    * anything else counts too and, after ``max_attempts``, quarantines the article
      (poison messages stop there, visible in ``claimwire status``, replayable).
    """
    settings = get_settings()
    try:
        with unit_of_work() as session:
            started, deaths = begin_step(session, article_id, task.name, settings.max_step_deaths)
    except ENVIRONMENT_ERRORS as exc:
        return _environment_retry(task, article_id, exc)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return _environment_retry(task, article_id, exc)
    if started is not StepStart.run:
        if started is StepStart.quarantined:
            log.error(
                "quarantined_after_deaths", task=task.name, article_id=article_id, deaths=deaths
            )
        elif started is StepStart.abandoned:
            log.error(
                "step_abandoned_after_deaths", task=task.name, article_id=article_id, deaths=deaths
            )
        else:
            log.info("step_skipped", task=task.name, article_id=article_id, why=started.value)
        return False
    if deaths:
        log.warning("step_rerun_after_death", task=task.name, article_id=article_id, deaths=deaths)
    try:
        with unit_of_work() as session:
            in_flight = not lock_article(session, article_id)
            if not in_flight:
                advanced = step(session, article_id)
                end_step(session, article_id, advanced=advanced)
        if in_flight:
            # Another copy took the row between our start and now (rare). Our start is
            # not a death: take it back (this waits for the other copy's transaction),
            # or a copy that then dies would count two deaths, and one that ends without
            # moving the article on would leave ours behind as a death.
            log.info("step_skipped_in_flight", task=task.name, article_id=article_id)
            _take_back_start(article_id)
            return False
    except RobotsUnavailable as exc:
        # Nothing on the host may be fetched until its robots.txt can be read (RFC 9309).
        # Unlike a busy host this says nothing about when it will end (DNS failure, no
        # route, 5xx), so it counts: the retry comes when robots.txt is asked again, and
        # after max_attempts such checks the article is quarantined with the real cause
        # instead of waiting, uncounted, for ever (and `run --until-idle` with it).
        countdown = exc.retry_after + random.uniform(0, 1)
        return _counted_retry(task, article_id, exc, str(exc), countdown, countdown)
    except HostBusy as exc:
        countdown = exc.retry_after + random.uniform(0, 1)
        # The retry below is the article's message: the sweep must not send another copy
        # while it waits, or every stale_after adds one more endless retry chain (a host
        # whose robots.txt stays unreachable would pile them up for as long as it is down).
        # A wait beyond the cap: the mark still moves to its end, and the retry (at the
        # cap) meets the host's wait again and schedules the rest.
        _take_back_start(article_id, hold_sweep_for=countdown)
        raise task.retry(countdown=capped(countdown), max_retries=NO_RETRY_LIMIT) from exc
    except ENVIRONMENT_ERRORS as exc:
        if is_item_fault(exc):
            return _count_failure(task, article_id, exc, settings.max_attempts)
        _take_back_start(article_id)
        return _environment_retry(task, article_id, exc)
    except DBAPIError as exc:
        if exc.connection_invalidated:
            _take_back_start(article_id)
            return _environment_retry(task, article_id, exc)
        return _count_failure(task, article_id, exc, settings.max_attempts)
    except FetchError as exc:  # transient: permanent ones are recorded by the step
        # A Retry-After beyond the cap: the step has put the host in back-off for all of
        # it (the limiter), so the capped retry meets HostBusy, uncounted, and waits on.
        countdown = exc.retry_after if exc.retry_after else backoff(task.request.retries)
        return _counted_retry(task, article_id, exc, exc.reason, countdown, exc.retry_after)
    except Exception as exc:  # noqa: BLE001 (a crash in a step is the item's fault)
        return _count_failure(task, article_id, exc, settings.max_attempts)
    if advanced:
        # one INFO line per step that moved its article on (the embedded run leaves
        # these out: worker.embedded.run.PER_ITEM_EVENTS); "fetch", "extract", "dedup", "claims"
        step_name = task.name.rsplit(".", 1)[-1].removesuffix("_article")
        log.info("article_step_done", step=step_name, article_id=article_id)
        if follow_up is not None:
            send(follow_up, article_id)
    return advanced


def _counted_retry(
    task: Task,
    article_id: int,
    exc: BaseException,
    reason: str,
    countdown: float,
    hold_sweep_for: float | None,
) -> bool:
    """A transient failure of the item (``exc``): count the attempt, recording
    ``reason`` on the article (quarantined after ``max_attempts``: returns False), or
    retry in ``countdown`` seconds (capped; ``hold_sweep_for``: see :func:`record_attempt`)."""
    try:
        quarantined = record_attempt(
            article_id,
            f"{task.name}: {reason}",
            quarantine_after=get_settings().max_attempts,
            hold_sweep_for=hold_sweep_for,
        )
    except ENVIRONMENT_ERRORS as env_exc:
        raise task.retry(countdown=capped(countdown), max_retries=NO_RETRY_LIMIT) from env_exc
    if quarantined:
        return False
    raise task.retry(countdown=capped(countdown), max_retries=NO_RETRY_LIMIT) from exc


def _environment_retry(task: Task, article_id: int, exc: BaseException) -> bool:
    """Retry later without counting; past ``ENV_MAX_RETRIES`` leave it to the sweep."""
    log.warning("environment_error", task=task.name, article_id=article_id, error=short_error(exc))
    if (task.request.retries or 0) >= ENV_MAX_RETRIES:
        log.warning("left_to_sweep", task=task.name, article_id=article_id)
        return False
    # An explicit limit: ``max_retries=None`` means Celery's default of 3, not "no limit".
    raise task.retry(countdown=backoff(task.request.retries), max_retries=ENV_MAX_RETRIES) from exc


def _take_back_start(article_id: int, hold_sweep_for: float | None = None) -> None:
    """The step raised, so its process lives: the start it recorded is not a death.
    Best effort: with the database down the start stays, and counts as one death until
    the step next ends (``max_step_deaths`` leaves room for such outages).

    ``hold_sweep_for``: the step is retried in that many seconds; the article's
    ``state_changed_at`` (the sweep's mark) moves to then, so the sweep re-sends it only
    if that retry is lost (``stale_after`` after it was due), never while it waits."""
    try:
        with unit_of_work() as session:
            if is_postgres(session):  # as cheap as the start (a host-busy retry does this)
                session.execute(text("SET LOCAL synchronous_commit = off"))
            end_step(session, article_id, advanced=False)
            if hold_sweep_for is not None:
                _hold_sweep(session, article_id, hold_sweep_for)
    except Exception as exc:  # noqa: BLE001 (best effort: the retry is what matters)
        log.warning("start_not_taken_back", article_id=article_id, error=short_error(exc))


def _hold_sweep(session: Session, article_id: int, seconds: float) -> None:
    """Move a pending article's sweep mark to ``seconds`` from now (never back): its step
    waits for a retry until then, which may be later than the retry's countdown
    (:func:`capped`); the sweep sends it again ``stale_after`` after that if no retry
    did."""
    until = utcnow() + timedelta(seconds=seconds)
    session.execute(
        update(Article)
        .where(
            col(Article.id) == article_id,
            col(Article.state).in_([s.value for s in PENDING_ARTICLE_STATES]),
            col(Article.state_changed_at) < until,
        )
        .values(state_changed_at=until)
    )


def _count_failure(task: Task, article_id: int, exc: BaseException, max_attempts: int) -> bool:
    log.exception("step_failed", task=task.name, article_id=article_id)
    error = f"{task.name}: {type(exc).__name__}: {short_error(exc)}"
    try:
        quarantined = record_attempt(article_id, error, quarantine_after=max_attempts)
    except ENVIRONMENT_ERRORS as env_exc:
        raise task.retry(
            countdown=backoff(task.request.retries), max_retries=NO_RETRY_LIMIT
        ) from env_exc
    if quarantined:
        return False
    raise task.retry(
        countdown=backoff(task.request.retries, base=2.0), max_retries=NO_RETRY_LIMIT
    ) from exc
