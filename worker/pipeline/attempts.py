"""Quarantined articles: a step failed ``max_attempts`` times, or its worker process
died ``max_step_deaths`` times while running it. Replay sends them back.

Deaths are counted with *starts*: before a step runs, :func:`begin_step` records the
start in its own short transaction; :func:`end_step` clears it when the step returns or
raises. A process that dies (out of memory, a crash in a C library, SIGKILL) clears
nothing, so the starts left on an article are the deaths during its current step.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import case, text, update
from sqlmodel import Session, col, select

from schemas.models import PENDING_ARTICLE_STATES, Article, ArticleState, RawPage
from schemas.types import utcnow
from worker.core.db import is_postgres
from worker.pages.archive import Archive, ArchiveError

_BEGIN_STEP_PG = text(
    """
    WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true)),
    cur AS (
        SELECT id, state, step_starts, step_started_at FROM article
        WHERE id = :id FOR UPDATE SKIP LOCKED
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


class StepStart(StrEnum):
    """What :func:`begin_step` decided."""

    run = "run"  # start recorded: run the step
    busy = "busy"  # another copy of the step holds the article (or it does not exist)
    already_quarantined = "already_quarantined"  # nothing to run
    quarantined = "quarantined"  # too many deaths: quarantined now, not run
    abandoned = "abandoned"  # too many deaths re-running a finished article's step


def begin_step(
    session: Session, article_id: int, step: str, max_deaths: int, now: datetime | None = None
) -> tuple[StepStart, int]:
    """Record the start of ``step`` on the article, to be committed before the step runs.

    The row is taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL: a locked row is the
    same step running in another worker, so this copy neither counts nor runs. Starts
    left uncleared by earlier deliveries are worker deaths; at ``max_deaths`` a pending
    article is quarantined with the reason instead of being run again. An article in a
    final state (a step re-run on it, such as a reprocess restart) is not quarantined:
    its counter is cleared and this message dropped.

    Returns the decision and the deaths found (starts of earlier deliveries that never
    ended)."""
    now = now or utcnow()
    if is_postgres(session):
        # One statement: lock the row unless a running step holds it, count the start
        # unless the step must not run, and let the commit skip the wait for the disk
        # (``synchronous_commit`` off for this transaction only: the start is visible
        # to every session at once, and can only be lost with the server itself,
        # which leaves one death uncounted). See docs/reliability.md for its price.
        row = session.execute(
            _BEGIN_STEP_PG, {"id": article_id, "now": now, "max": max_deaths}
        ).first()
        if row is not None and row[3]:
            return StepStart.run, int(row[1])
    else:
        row = session.execute(
            select(Article.state, Article.step_starts, Article.step_started_at).where(
                col(Article.id) == article_id
            )
        ).first()
    if row is None:
        return StepStart.busy, 0
    state, deaths, last_start = row[0], int(row[1]), row[2]
    if state == ArticleState.quarantined:
        return StepStart.already_quarantined, deaths
    if deaths >= max_deaths:
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
    session.execute(
        update(Article)
        .where(col(Article.id) == article_id)
        .values(step_starts=col(Article.step_starts) + 1, step_started_at=now)
    )
    return StepStart.run, deaths


def end_step(session: Session, article_id: int, *, advanced: bool) -> None:
    """The step started by :func:`begin_step` returned or raised (its process lives):
    take its start back. A step that moved the article on clears the counter, so the
    next step starts from zero; so does any step that ends on a finished article (what
    is left there are starts whose take-back failed, say during a database outage, of
    messages that found nothing to do: no step of that article is dying)."""
    starts = col(Article.step_starts)
    pending = [s.value for s in PENDING_ARTICLE_STATES]
    value: Any = 0 if advanced else case((col(Article.state).in_(pending), starts - 1), else_=0)
    session.execute(
        update(Article).where(col(Article.id) == article_id, starts > 0).values(step_starts=value)
    )


def _page_readable(session: Session, article: Article, archive: Archive) -> bool:
    raw = session.get(RawPage, article.raw_sha256) if article.raw_sha256 else None
    if raw is None:
        return False
    try:
        archive.get(raw.storage_key)
    except ArchiveError:
        return False
    except Exception:  # noqa: BLE001 (corrupt bytes: the page must be fetched again)
        return False
    return True


class NotQuarantined(LookupError):
    """An article given to replay does not exist or is not quarantined."""


def _check_ids(session: Session, ids: list[int]) -> None:
    """Every id must name a quarantined article; otherwise nothing is replayed."""
    for i in ids:
        if not 0 < i < 2**63:  # beyond any database integer: no article either
            raise NotQuarantined(f"no article with id {i}; nothing replayed")
    states = dict(
        session.exec(select(Article.id, Article.state).where(col(Article.id).in_(ids))).all()
    )
    for i in ids:
        if i not in states:
            raise NotQuarantined(f"no article with id {i}; nothing replayed")
        if states[i] != ArticleState.quarantined:
            raise NotQuarantined(
                f"article {i} is not quarantined (state {states[i]}); nothing replayed"
            )


def replay(session: Session, ids: list[int] | None = None, archive: Archive | None = None) -> int:
    """Put quarantined articles back into the state whose step failed, with a fresh
    attempt count, and old enough that the next sweep sends them at once.

    Explicit ``ids`` must all be quarantined articles: otherwise :class:`NotQuarantined`
    is raised before anything changes.

    An article quarantined in extraction whose archived page is missing or unreadable
    goes back to ``discovered`` instead, so that the page is fetched again."""
    if archive is None:
        from worker.core import resources

        archive = resources.archive()
    query = select(Article).where(Article.state == ArticleState.quarantined)
    if ids:
        _check_ids(session, ids)
        query = query.where(col(Article.id).in_(ids))
    n = 0
    pending = {s.value for s in PENDING_ARTICLE_STATES}
    for article in session.exec(query).all():
        back = article.failed_state if article.failed_state in pending else "discovered"
        if back == ArticleState.fetched and not _page_readable(session, article, archive):
            back = ArticleState.discovered
        article.state = back
        article.attempts = 0
        article.step_starts = 0
        article.failed_state = None
        article.state_changed_at = utcnow().replace(year=2000)
        n += 1
    return n
