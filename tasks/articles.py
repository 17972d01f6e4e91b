"""The article pipeline's tasks: one per row of ``worker.pipeline.steps.PIPELINE``,
named and routed as the row says. Each runs its step for one article
(``worker.pipeline.attempts.run_step``) and retries when the outcome asks for it; in the
embedded run, a fetch sent back for its host's turn is held in the process until then
(``worker.pipeline.attempts.HeldSends``) instead of being sent with a countdown."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init, worker_shutting_down

from tasks.base import ClaimwireTask
from worker.celery_app import app
from worker.core.settings import get_settings
from worker.network.politeness import HostBusy
from worker.pipeline.attempts import HELD, Outcome, held, hold_in_process, run_step
from worker.pipeline.steps import PIPELINE, Step


def _held_back(task: ClaimwireTask, outcome: Outcome) -> bool:
    """Hold the retry of a step sent back for its host's turn in this process until
    the turn (the embedded run: :func:`hold_in_process`), sent then without a
    countdown: sent at once with its countdown, it waited in the broker's queue behind
    every message sent after it was and came back with the host's other late fetches
    (:class:`~worker.pipeline.attempts.HeldSends`). Whether it was held."""
    request = task.request
    if (
        outcome.retry_in is None
        or not isinstance(outcome.cause, HostBusy)
        or request.is_eager
        or request.called_directly
        or not held(outcome.retry_in)
    ):
        return False
    retry = task.signature_from_request(request, retries=(request.retries or 0) + 1)
    HELD.hold(outcome.retry_in, lambda countdown: retry.apply_async(countdown=countdown))
    return True


def _task_for(step: Step) -> Any:
    def run(self: ClaimwireTask, article_id: int) -> bool:
        outcome = run_step(step, article_id, retries=self.request.retries or 0)
        if step.ready is not None and _held_back(self, outcome):
            return False
        return self.settle(outcome)

    run.__doc__ = step.run.__doc__
    run.__name__ = run.__qualname__ = step.task_name.rsplit(".", 1)[-1]
    return app.task(bind=True, base=ClaimwireTask, name=step.task_name)(run)


@worker_init.connect
def _hold_fetches_in_process(sender: Any = None, **_: Any) -> bool:
    """The embedded run's `run` process (a thread pool consuming the embedded broker,
    whose ``io`` queue only it reads) holds its fetches until their turns."""
    pool = str(getattr(sender, "pool_cls", "") or "").lower()
    return "thread" in pool and hold_in_process(get_settings())


@worker_shutting_down.connect
def _send_held_fetches(**_: Any) -> int:
    """A `run` process that stops sends the fetches it holds, each with the rest of its
    countdown, for the broker to keep (the next run takes them)."""
    return HELD.flush()


TASKS: dict[str, Any] = {step.name: _task_for(step) for step in PIPELINE}

fetch_article = TASKS["fetch"]
extract_article = TASKS["extract"]
dedup_article = TASKS["dedup"]
claims_article = TASKS["claims"]
