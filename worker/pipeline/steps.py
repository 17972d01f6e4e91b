"""The article pipeline, declared once.

::

    discovered ─fetch─► fetched ─extract─► extracted ─dedup─► deduplicated ─claims─► processed
                 io                cpu               cpu                      cpu

Each row of :data:`PIPELINE` is one step: the article state it takes, the function that
does the work, the queue its task travels on, the state it leaves the article in, and
the name its Celery task has on the wire. Everything that moves articles along is
derived from this table:

* :mod:`worker.celery_app` routes each step's task to its queue (:func:`task_routes`);
* :mod:`tasks.articles` makes one task per row;
* :func:`worker.pipeline.attempts.run_step` follows a step that moved its article on with the next
  row's task;
* the recovery sweep (:mod:`worker.pipeline.sweep`) re-sends a stale article to the
  step of its state, and leaves alone the states whose queue is backlogged;
* a job item (:mod:`worker.jobs.work`) runs the rows from its article's state on, inline;
* a poll or a backfill queues :data:`FIRST` for each new article.

A step function takes a session, an article id and the settings, does its work in that
one transaction (never committing), and returns a :class:`StepResult`. It acts only on
an article in its ``takes`` state, so a redelivered message does nothing. The functions
below are thin: they fetch the process's shared resources and call the domain code of
their folder, imported when first run (a process that only routes messages, such as the
CLI, never loads trafilatura, numpy or spaCy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from schemas.models import ArticleState
from worker.core.queues import CPU_QUEUE, IO_QUEUE
from worker.core.settings import Settings


@dataclass(frozen=True)
class StepResult:
    """What one step did to its article."""

    advanced: bool  # the article moved on to the step's ``gives`` state (or ended)
    # Other articles that became their duplicate group's canonical and need their claims
    # step run (dedup and reprocess take a canonical out of a group).
    new_canonicals: tuple[int, ...] = ()


StepFunction = Callable[[Session, int, Settings], StepResult]


@dataclass(frozen=True)
class HostWait:
    """A step's host is not free for it: its turn is ``seconds`` ahead (reserved for it)."""

    host: str
    seconds: float
    held_until: datetime | None = None  # the article's sweep mark, as the look read it


ReadyFunction = Callable[[Session, int, Settings], HostWait | None]
"""A step's look before its start is committed (read only, never writes): None when
the step may run now, or the wait for its host (:func:`fetch_ready`)."""


def fetch(session: Session, article_id: int, settings: Settings) -> StepResult:
    """Download the page politely and safely, and archive it (worker/pages/fetch.py)."""
    from worker.pages.fetch import fetch_article
    from worker.pipeline import resources

    outcome = fetch_article(
        session,
        article_id,
        resources.http_client(),
        resources.host_limiter(),
        resources.archive(),
        settings,
    )
    return StepResult(outcome.advanced)


def fetch_ready(session: Session, article_id: int, settings: Settings) -> HostWait | None:
    """Whether the article's host is free for its fetch, asked before the step's start
    is committed: a discovered article gets its turn on the host's timeline now (kept
    under its key, nothing taken: :meth:`~worker.network.politeness.HostLimiter.book`),
    and when that turn is ahead the fetch is sent back for it without writing anything.
    The start, the row and the step's transaction are then spent only on a fetch that
    runs; the step's slot is taken at the turn kept for it (worker/pages/fetch.py)."""
    from sqlalchemy import select

    from schemas.tables import article as table
    from worker.network.politeness import MAX_WAIT
    from worker.pages.fetch import turn_key
    from worker.pipeline import resources

    # six columns, not the article loaded whole (its entry's text, JSON lists and
    # times): the step loads it in its own transaction
    row = session.execute(
        select(
            table.c.state,
            table.c.host,
            table.c.url,
            table.c.redirects,
            table.c.final_url,
            table.c.state_changed_at,
        ).where(table.c.id == article_id)
    ).first()
    if row is None or row.state != ArticleState.discovered or not row.host:
        return None  # the step decides (not its state, gone)
    host = str(row.host)
    if row.redirects and row.final_url:  # it goes on from a redirect hop
        from worker.network.urls import host_of

        hop = host_of(row.final_url)
        host = host if hop == host_of(row.url) else hop
    wait = resources.host_limiter().book(host, turn_key(article_id))
    if wait <= MAX_WAIT:
        return None  # now, or a moment from now: the step's slot waits that out
    return HostWait(host, wait, row.state_changed_at)


def extract(session: Session, article_id: int, settings: Settings) -> StepResult:
    """Clean the archived page to text and metadata (worker/pages/extract.py)."""
    from worker.pages.extract import extract_stored_article
    from worker.pipeline import resources

    return StepResult(extract_stored_article(session, article_id, resources.archive(), settings))


def dedup(session: Session, article_id: int, settings: Settings) -> StepResult:
    """Place the article in its duplicate group (worker/dedup/)."""
    from worker.dedup.deduplicate import deduplicate_article

    outcome = deduplicate_article(session, article_id, settings)
    moved = outcome.canonical_changed_to
    return StepResult(
        outcome.advanced, (moved,) if moved is not None and moved != article_id else ()
    )


def claims(session: Session, article_id: int, settings: Settings) -> StepResult:
    """Extract, store and cluster the claims of a group's canonical (worker/claims/)."""
    from worker.claims.model import require_model
    from worker.claims.store import process_claims

    require_model(settings)  # a model that cannot load is the setting's fault: wait
    return StepResult(process_claims(session, article_id, settings))


@dataclass(frozen=True)
class Step:
    takes: ArticleState
    run: StepFunction
    queue: str
    gives: ArticleState
    task_name: str  # the Celery task's name on the wire (unchanged since 0.1)
    ready: ReadyFunction | None = None  # a look before the start (worker.pipeline.attempts)

    @property
    def name(self) -> str:
        return self.run.__name__


S = ArticleState

# fmt: off
PIPELINE: tuple[Step, ...] = (
    #     takes           run      queue      gives           task name on the wire
    Step(S.discovered,   fetch,   IO_QUEUE,  S.fetched,      "tasks.fetching.fetch_article",
         ready=fetch_ready),
    Step(S.fetched,      extract, CPU_QUEUE, S.extracted,    "tasks.processing.extract_article"),
    Step(S.extracted,    dedup,   CPU_QUEUE, S.deduplicated, "tasks.processing.dedup_article"),
    Step(S.deduplicated, claims,  CPU_QUEUE, S.processed,    "tasks.processing.claims_article"),
)
# fmt: on

FIRST = PIPELINE[0]
"""The step of a new article: a poll or a backfill queues it."""
CLAIMS = PIPELINE[-1]
"""The step a group's new canonical article needs (:attr:`StepResult.new_canonicals`)."""

_BY_STATE = {step.takes.value: step for step in PIPELINE}
_BY_NAME = {step.name: step for step in PIPELINE}


def step_for(state: str) -> Step | None:
    """The step that takes an article out of ``state``; None for a final state."""
    return _BY_STATE.get(str(state))


def step_named(name: str) -> Step:
    return _BY_NAME[name]


def next_step(step: Step) -> Step | None:
    """The step that follows ``step`` (None after the last)."""
    return step_for(step.gives)


def task_routes() -> dict[str, dict[str, str]]:
    """Each step's task to its queue (``worker.celery_app``)."""
    return {step.task_name: {"queue": step.queue} for step in PIPELINE}
