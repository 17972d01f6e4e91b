"""The work of a job's messages, in units of work: scheduling, discovery, and an item.

These are what the ``backfill`` queue's tasks do (``tasks.job_steps``): each returns an
:class:`~worker.pipeline.attempts.Outcome`, which the task maps to done or to a retry.
An item runs its article's steps inline, one after the other, from the article's state
on, as declared in :data:`worker.pipeline.steps.PIPELINE`; each step is its own unit of
work with the live pipeline's bookkeeping (:func:`worker.pipeline.attempts.run_step`), so
backfill work never enters the ``io`` or ``cpu`` queues.
"""

from __future__ import annotations

import random
import time
from functools import partial

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from schemas.models import Article, ArticleState, Job
from worker.core import outbox
from worker.core.db import unit_of_work
from worker.core.queues import BACKFILL_QUEUE, DISCOVER_JOB_TASK, PROCESS_ITEM_TASK
from worker.core.settings import Settings, get_settings
from worker.jobs import lifecycle
from worker.network.politeness import HostBusy
from worker.pipeline import attempts, resources
from worker.pipeline.attempts import ENVIRONMENT_ERRORS, Outcome, run_step
from worker.pipeline.steps import PIPELINE, Step, StepResult, step_for

log = structlog.get_logger("claimwire.jobs")

DISCOVERY_PAGES_PER_TASK = 20
"""Archive pages or sitemaps one discovery message reads before handing over to the
next message (each in its own transaction)."""


# -------------------------------------------------------------------------- scheduler


def advance_once(
    *, reclaim: bool = False, job_ids: list[int] | None = None
) -> lifecycle.AdvancePlan:
    """One scheduling round (:func:`worker.jobs.lifecycle.advance`), committed, then
    its discovery and item messages sent."""
    with unit_of_work() as session:
        plan = lifecycle.advance(session, get_settings(), reclaim=reclaim, job_ids=job_ids)
        for job_id in plan.discover:
            outbox.send_after_commit(session, DISCOVER_JOB_TASK, job_id)
        for job_id, article_id in plan.items:
            outbox.send_after_commit(session, PROCESS_ITEM_TASK, job_id, article_id)
    if plan.finished:
        log.info("jobs_finished", jobs=plan.finished)
    for job_id in plan.recluster:
        recluster_ended_job(job_id)
    return plan


def recluster_ended_job(job_id: int) -> int:
    """Cluster again the claims of the speakers an ended reprocess job's articles name
    (:func:`worker.jobs.reprocess.job_speaker_keys`, :func:`worker.claims.store.recluster`),
    one speaker key a unit of work (speakers' clusters never share a claim, so key by key
    gives what all keys at once give), after the round that ended the job has committed:
    neither the job scheduler's lock nor the other speakers' claims are held for it (on
    SQLite a long transaction holds every writer). Each speaker reclustered is
    committed; one that fails, or a process that dies meanwhile, leaves the rest as the
    live clustering made them (valid clusters, only dependent on the order the articles
    arrived in) and a warning in the log; a second ``claimwire reprocess`` of the same
    articles does it again. Returns the clusters made."""
    from worker.claims import store
    from worker.jobs.reprocess import job_speaker_keys

    settings = get_settings()
    made = 0
    try:
        with unit_of_work() as session:
            keys = job_speaker_keys(session, job_id)
        for key in keys:
            with unit_of_work() as session:
                made += store.recluster(session, settings, {key})
    except Exception as exc:  # noqa: BLE001 (the job is done; its clusters stay valid)
        log.warning("recluster_failed", job_id=job_id, error=attempts.short_error(exc))
    return made


# -------------------------------------------------------------------------- discovery


def discover(job_id: int, retries: int = 0) -> tuple[int, Outcome]:
    """Read up to :data:`DISCOVERY_PAGES_PER_TASK` archive pages or sitemaps of a job,
    each in its own transaction (its cursor saved with what the page listed), then hand
    over to the next message. Returns the articles added and what the task does next."""
    from worker.jobs.discovery import discover_step

    settings = get_settings()
    added = 0
    for _ in range(DISCOVERY_PAGES_PER_TASK):
        try:
            with unit_of_work() as session:
                step = discover_step(
                    session, job_id, resources.http_client(), resources.host_limiter(), settings
                )
                _renew_discovery_lease(session, job_id, settings)
        except HostBusy as exc:  # the host asks to wait: as long as it takes
            from worker.network.robots import keep_robots

            # the robots.txt its check downloaded, kept though the page rolls back
            attempts.keep_after_rollback(keep_robots(exc), job_id=job_id)
            wait = attempts.capped(exc.retry_after + random.uniform(0, 1), settings)
            return added, Outcome(retry_in=wait, cause=exc)
        except ENVIRONMENT_ERRORS as exc:
            # past ENV_MAX_RETRIES the discovery lease runs out and the scheduler hands
            # the job's discovery to a new message
            return added, attempts.environment_retry(DISCOVER_JOB_TASK, exc, retries, job_id=job_id)
        except Exception as exc:
            log.exception("discovery_failed", job_id=job_id)
            with unit_of_work() as session:
                job = session.get(Job, job_id)
                if job is not None:
                    lifecycle.finish_discovery(
                        job, f"discovery failed: {type(exc).__name__}: {exc}"
                    )
            return added, Outcome()
        added += step.added
        if step.retry_after is not None:  # a page failed; counted on the job
            return added, Outcome(retry_in=attempts.capped(step.retry_after, settings))
        if not step.more:
            return added, Outcome()
    outbox.send_now(DISCOVER_JOB_TASK, job_id)
    return added, Outcome()


def _renew_discovery_lease(session: Session, job_id: int, settings: Settings) -> None:
    job = session.get(Job, job_id)
    if job is not None and not job.params.get("discovery_done"):
        lifecycle.set_params(job, discovery_lease=time.time() + settings.stale_after)


# ------------------------------------------------------------------------------- items


def restart(session: Session, article_id: int, settings: Settings) -> StepResult:
    """The first step of a reprocess item: the finished article goes back to
    ``fetched`` and is extracted again (:func:`worker.jobs.reprocess.restart_article`)."""
    from worker.jobs.reprocess import restart_article

    promoted: list[int] = []
    advanced = restart_article(session, article_id, resources.archive(), settings, promoted)
    return StepResult(advanced, tuple(promoted))


RESTART = Step(
    ArticleState.processed, restart, BACKFILL_QUEUE, ArticleState.extracted, PROCESS_ITEM_TASK
)
"""Not a row of the pipeline: a reprocess item's way back into it."""


def run_item(job_id: int, article_id: int, retries: int = 0) -> tuple[str | None, Outcome]:
    """One article of a job through its steps (reprocess: restarted from its archived
    page first), each step its own transaction with the live pipeline's bookkeeping,
    then the item marked from the article's final state. Returns the item's new state
    (None while it is not finished) and what the task does next."""
    settings = get_settings()
    try:
        with unit_of_work() as session:
            kind = lifecycle.begin_item(session, job_id, article_id)
            article = session.get(Article, article_id)
            state = article.state if article is not None else None
    except ENVIRONMENT_ERRORS as exc:  # past the limit the item's lease brings it back
        return None, attempts.environment_retry(
            PROCESS_ITEM_TASK, exc, retries, job_id=job_id, article_id=article_id
        )
    if kind is None or state is None:
        return None, Outcome()

    def run(step: Step) -> Outcome:
        return run_step(
            step,
            article_id,
            retries=retries,
            label=PROCESS_ITEM_TASK,
            follow_up=False,  # the item runs the next step itself
            on_begin=partial(lifecycle.renew_item, job_id=job_id, article_id=article_id),
            # the item ends with the step that ends its article, in its transaction
            on_end=partial(lifecycle.finish_item, job_id=job_id, article_id=article_id),
            settings=settings,
        )

    new_canonicals: list[int] = []
    if kind == lifecycle.KIND_REPROCESS and lifecycle.is_final(state):
        outcome = run(RESTART)
        if outcome.retry_in is not None:
            return None, outcome
        new_canonicals += outcome.new_canonicals
        state = outcome.state or _article_state(article_id)
    if state == ArticleState.discovered:
        _warm_robots(article_id, settings)
    for _ in PIPELINE:
        step = step_for(state) if state is not None else None
        if step is None:
            break
        outcome = run(step)
        if outcome.retry_in is not None:
            return None, outcome
        new_canonicals += outcome.new_canonicals
        if outcome.state is None or (not outcome.advanced and outcome.state == state):
            break  # another worker holds this article right now; the lease brings it back
        state = outcome.state
    for other in new_canonicals:
        _claims_inline(other, settings)
    with unit_of_work() as session:
        finished = lifecycle.finish_item(session, job_id, article_id)
    if finished is not None:
        # Self-clocking: a finished item makes room for the next one at once instead
        # of at the next scheduler tick (the throttle still holds: advance counts).
        try:
            advance_once()  # all jobs: the round robin stays fair
        except ENVIRONMENT_ERRORS as exc:
            log.warning("advance_after_item_failed", job_id=job_id, error=attempts.short_error(exc))
    return finished, Outcome()


def _article_state(article_id: int) -> str | None:
    with unit_of_work() as session:
        article = session.get(Article, article_id)
        return article.state if article is not None else None


def _warm_robots(article_id: int, settings: Settings) -> None:
    """Cache the host's robots.txt in its own transaction before the fetch step. Many
    items of one new host start at once; the first to commit wins and the others'
    insert conflicts here, harmlessly, instead of failing (and retrying) their fetch.
    The robots.txt request takes the host's slot under the article's key, as the fetch
    step's would (its turn, else the host's next free place): the fetch step then waits
    for the host's next turn, with the robots.txt committed here."""
    from worker.network.robots import robots_allows
    from worker.network.urls import host_of
    from worker.pages.fetch import turn_key

    limiter = resources.host_limiter()
    try:
        with unit_of_work() as session:
            article = session.get(Article, article_id)
            if article is not None:
                host = article.host or host_of(article.url)
                robots_allows(
                    session,
                    resources.http_client(),
                    article.url,
                    settings,
                    lambda _url: limiter.slot(host, turn_key(article_id)),
                )
    except IntegrityError:
        pass  # another item cached it first
    except HostBusy:
        pass  # host not free now, or robots.txt unreachable: the fetch step meets it too
    except ENVIRONMENT_ERRORS:
        pass  # the fetch step checks robots again and maps errors as usual


def _claims_inline(article_id: int, settings: Settings) -> None:
    """A group's canonical article changed (dedup placed a new article, or reprocess
    took the old canonical out): its claims again, inline, as the live pipeline does.
    On failure the live recovery sweep takes a pending article over; a processed one
    keeps its old claims and is logged."""
    from worker.claims import store

    try:
        with unit_of_work() as session:
            if not attempts.lock_article(session, article_id):
                return
            article = session.get(Article, article_id)
            if article is None:
                return
            if article.state == ArticleState.deduplicated:
                store.process_claims(session, article_id, settings)
            elif article.state == ArticleState.processed:
                store.replace_claims(session, article, settings)
    except Exception as exc:  # noqa: BLE001 (left to the sweep)
        log.warning("claims_inline_failed", article_id=article_id, error=attempts.short_error(exc))
