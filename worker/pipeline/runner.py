"""One step of one article, in its units of work: begin, run, settle.

:func:`run_step` is all a step's task does (``tasks.articles``), and what a job item
does for each of its article's steps (``worker.jobs.work``). It needs no Celery: it
returns an :class:`~worker.pipeline.attempts.Outcome`, which the caller maps to done
or to a retry of its message. The next step's message is recorded in the step's own
transaction and sent once it has committed (:mod:`worker.core.outbox`).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from sqlmodel import Session

from schemas.models import Article
from worker.core import outbox
from worker.core.db import unit_of_work
from worker.core.settings import Settings, get_settings
from worker.pipeline import attempts
from worker.pipeline.attempts import Outcome, StepStart
from worker.pipeline.steps import CLAIMS, Step, StepResult, next_step

log = structlog.get_logger("claimwire.pipeline")


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

    1. Its start is committed on the article (:func:`~worker.pipeline.attempts.begin_step`);
       an article that died too often during this step is quarantined instead, and a
       copy of a step that is running elsewhere does nothing. ``on_begin`` runs in that
       same transaction (a job renews its item's lease there).
    2. The step runs in one transaction under the article's row lock; its start is taken
       back in it. With ``follow_up``, an article it moved on gets the next step's
       message, and a group's new canonical the claims step's, both sent after the
       commit; without (a job item runs the next steps itself) nothing is sent.
       ``on_end`` runs at the end of that transaction (a job finishes its item there
       when the article is finished).
    3. If it raised, :func:`~worker.pipeline.attempts.settle` says what that costs.

    ``retries``: how often this message ran already; ``label``: the task named in logs
    and failure reasons (the step's own task unless a job item runs it)."""
    settings = settings or get_settings()
    label = label or step.task_name
    try:
        with unit_of_work() as session:
            if on_begin is not None:
                on_begin(session)
            started, deaths = attempts.begin_step(
                session, article_id, label, settings.max_step_deaths
            )
    except Exception as exc:
        if not attempts.is_environment_error(exc):
            raise
        return attempts.environment_retry(label, exc, retries, article_id=article_id)
    if started is not StepStart.run:
        return _not_run(label, article_id, started, deaths)
    if deaths:
        log.warning("step_rerun_after_death", task=label, article_id=article_id, deaths=deaths)
    result: StepResult | None = None
    state: str | None = None
    try:
        with unit_of_work() as session:
            if attempts.lock_article(session, article_id):
                result = step.run(session, article_id, settings)
                attempts.end_step(session, article_id, advanced=result.advanced)
                article = session.get(Article, article_id)
                state = article.state if article is not None else None
                if on_end is not None:
                    on_end(session)
                if follow_up:
                    _follow_up(session, step, article_id, result)
    except Exception as exc:  # noqa: BLE001 (every failure is settled: counted or retried)
        return attempts.settle(label, article_id, exc, retries, settings)
    if result is None:
        # Another copy took the row between our start and now (rare). Our start is not
        # a death: take it back (this waits for the other copy's transaction), or a copy
        # that then dies would count two deaths, and one that ends without moving the
        # article on would leave ours behind as a death.
        log.info("step_skipped_in_flight", task=label, article_id=article_id)
        attempts.take_back_start(article_id)
        return Outcome()
    if result.advanced:
        # one INFO line per step that moved its article on (the embedded run leaves
        # these out: worker.embedded.run.PER_ITEM_EVENTS)
        log.info("article_step_done", step=step.name, article_id=article_id)
    return Outcome(advanced=result.advanced, state=state, new_canonicals=result.new_canonicals)


def _follow_up(session: Session, step: Step, article_id: int, result: StepResult) -> None:
    """The messages a step's success calls for, sent once its transaction commits."""
    following = next_step(step)
    if result.advanced and following is not None:
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
