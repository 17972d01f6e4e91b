"""The article pipeline's tasks: one per row of ``worker.pipeline.steps.PIPELINE``,
named and routed as the row says. Each runs its step for one article
(``worker.pipeline.attempts.run_step``) and retries when the outcome asks for it. A fetch
sent back for its host's turn is held in the worker process until then
(``worker.pipeline.attempts.HeldSends``) instead of being sent with a countdown: in the
embedded run it is sent at its turn, without a countdown; in a thread pool's worker on
Redis (the production io worker) it is run again in that worker's pool at its turn, with
no message at all (:class:`worker.pipeline.reruns.InProcessRuns`)."""

from __future__ import annotations

from functools import partial
from typing import Any

import structlog
from celery.signals import worker_init, worker_shutting_down

from tasks.base import ClaimwireTask
from worker.celery_app import app
from worker.core.settings import get_settings
from worker.network.politeness import HostBusy
from worker.pipeline.attempts import (
    HELD,
    Outcome,
    held,
    hold_in_process,
    run_step,
    short_error,
)
from worker.pipeline.reruns import InProcessRuns
from worker.pipeline.steps import PIPELINE, Step

log = structlog.get_logger("claimwire.tasks")


def _send(step: Step, article_id: int, retries: int, countdown: float | None) -> None:
    """Send a held fetch as the message its task's retry would have been."""
    try:
        TASKS[step.name].apply_async(
            args=(article_id,), countdown=countdown or None, retries=retries
        )
    except Exception as exc:  # noqa: BLE001 (the broker is down: the sweep sends it again)
        log.warning("held_fetch_not_sent", article_id=article_id, error=short_error(exc))


RERUNS = InProcessRuns(_send)


def _held_back(task: ClaimwireTask, step: Step, outcome: Outcome) -> bool:
    """Hold a step sent back for its host's turn in this process until the turn: in the
    production io worker run then in its pool (:data:`RERUNS`); in the embedded run
    (:func:`hold_in_process`) its retry sent then without a countdown: sent at once with
    its countdown, it waited in the broker's queue behind every message sent after it was
    and came back with the host's other late fetches
    (:class:`~worker.pipeline.attempts.HeldSends`). Whether it was held."""
    request = task.request
    if (
        outcome.retry_in is None
        or not isinstance(outcome.cause, HostBusy)
        or request.is_eager
        or request.called_directly
    ):
        return False
    retries = (request.retries or 0) + 1
    if RERUNS.active:
        article_id = int(request.args[0])
        HELD.hold(outcome.retry_in, partial(RERUNS.at_turn, step, article_id, retries))
        return True
    if not held(outcome.retry_in):
        return False
    retry = task.signature_from_request(request, retries=retries)
    HELD.hold(outcome.retry_in, lambda countdown: retry.apply_async(countdown=countdown))
    return True


def _task_for(step: Step) -> Any:
    def run(self: ClaimwireTask, article_id: int) -> bool:
        outcome = run_step(step, article_id, retries=self.request.retries or 0)
        if step.ready is not None and _held_back(self, step, outcome):
            return False
        return self.settle(outcome)

    run.__doc__ = step.run.__doc__
    run.__name__ = run.__qualname__ = step.task_name.rsplit(".", 1)[-1]
    return app.task(bind=True, base=ClaimwireTask, name=step.task_name)(run)


@worker_init.connect
def _hold_fetches_in_process(sender: Any = None, **_: Any) -> bool:
    """A worker with a thread pool holds its fetches sent back for their turns: the
    embedded run's `run` process (consuming the embedded broker, whose ``io`` queue only
    it reads) holds a poll's fetches too, and sends each at its turn; a worker on Redis
    (the production io worker) runs them again in its pool (:data:`RERUNS`)."""
    pool = str(getattr(sender, "pool_cls", "") or "").lower()
    RERUNS.worker, RERUNS.stopping = None, False
    if "thread" not in pool:
        return False
    if hold_in_process(get_settings()):
        return True
    RERUNS.worker = sender
    return True


@worker_shutting_down.connect
def _send_held_fetches(**_: Any) -> int:
    """A worker that stops sends the fetches it holds, each with the rest of its
    countdown, for the broker to keep (the next worker takes them), and those waiting in
    its pool's queue."""
    queued = RERUNS.flush()
    return HELD.flush() + queued


TASKS: dict[str, Any] = {step.name: _task_for(step) for step in PIPELINE}

fetch_article = TASKS["fetch"]
extract_article = TASKS["extract"]
dedup_article = TASKS["dedup"]
claims_article = TASKS["claims"]
