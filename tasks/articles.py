"""The article pipeline's tasks: one per row of ``worker.pipeline.steps.PIPELINE``,
named and routed as the row says. Each runs its step for one article
(``worker.pipeline.attempts.run_step``) and retries when the outcome asks for it. A fetch
sent back for its host's turn is held in the worker process until then
(``worker.pipeline.attempts.HeldSends``) instead of being sent with a countdown: in the
embedded run it is sent at its turn, without a countdown; in a thread pool's worker on
Redis (the production io worker) it is run again in that worker's pool at its turn, with
no message at all (:class:`InProcessRuns`)."""

from __future__ import annotations

import itertools
import threading
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
from worker.pipeline.steps import PIPELINE, Step

log = structlog.get_logger("claimwire.tasks")


class InProcessRuns:
    """Fetches sent back for their host's turn, run again in this worker's own pool at
    their turn (:data:`HELD` keeps them until then), instead of a new message each: the
    production io worker's (``-P threads`` on Redis; :func:`_hold_fetches_in_process`).

    On Redis a message sent back with a countdown was read at once by an io worker and
    held in its memory until the countdown ran out (Celery keeps a message with an ETA in
    the worker's timer, unacknowledged in Redis until it has run); each cost a publish,
    the consumer's receive, the unacknowledged bookkeeping and the ack, in the io worker,
    whose one interpreter is the fetch side's bottleneck, and the more it fell behind the
    more turns moved and the more fetches were sent back (issue 16: 4.6–5.6 fetch messages
    a page). Held here, a fetch waits in the same process as before, and runs again from
    the pool's queue: the same look, the same slot, the same limits.

    What a worker that dies loses: the fetches it holds. The article's sweep mark is held
    until its turn, and the sweep sends it again ``stale_after`` after that, which is
    also what first recovered the messages a dead worker held in its timer (Redis gives
    those back only after its visibility timeout, an hour). A worker that stops sends
    each one as a message, with the rest of its countdown (:func:`_send_held_fetches`),
    including those waiting in its pool's queue (a pool that stops drops them); such a
    one that still starts does nothing."""

    def __init__(self) -> None:
        self.worker: Any = None  # the WorkController whose pool runs them (worker_init)
        self.stopping = False
        self._lock = threading.Lock()
        self._queued: dict[int, tuple[Step, int, int]] = {}  # in the pool, not started
        self._tokens = itertools.count()

    @property
    def active(self) -> bool:
        return self.worker is not None

    def at_turn(self, step: Step, article_id: int, retries: int, countdown: float | None) -> None:
        """The turn of a fetch held by :data:`HELD` came (``countdown`` None: run it in
        the pool), or the worker stops (sent as a message held back ``countdown``)."""
        if countdown is not None or self.stopping:
            _send(step, article_id, retries, countdown)
            return
        token = next(self._tokens)
        with self._lock:
            self._queued[token] = (step, article_id, retries)
        try:
            self.worker.pool.apply_async(self._run, (token,), callback=_ignore)
        except Exception as exc:  # noqa: BLE001 (a pool that stopped: the broker keeps it)
            with self._lock:
                item = self._queued.pop(token, None)
            if item is not None:
                log.info("held_fetch_sent", article_id=article_id, why=short_error(exc))
                _send(step, article_id, retries, None)

    def _run(self, token: int) -> None:
        with self._lock:
            item = self._queued.pop(token, None)
        if item is None:
            return  # sent as a message when the worker stopped
        step, article_id, retries = item
        try:
            outcome = run_step(step, article_id, retries=retries)
        except Exception as exc:  # noqa: BLE001 (the article stays pending: the sweep)
            log.warning("held_fetch_failed", article_id=article_id, error=short_error(exc))
            return
        if outcome.retry_in is None:
            return
        if isinstance(outcome.cause, HostBusy):  # its turn moved again: held again
            HELD.hold(outcome.retry_in, partial(self.at_turn, step, article_id, retries + 1))
            return
        # another retry (an error of the environment, a transient fetch error): the
        # message its task would have sent
        _send(step, article_id, retries + 1, outcome.retry_in)

    def flush(self) -> int:
        """Send the fetches queued in the pool and not started, as messages, and from now
        on every fetch whose turn comes; how many were queued."""
        with self._lock:
            self.stopping = self.active
            queued, self._queued = self._queued, {}
        for step, article_id, retries in queued.values():
            _send(step, article_id, retries, None)
        return len(queued)


def _ignore(_result: Any) -> None:
    """The pool's callback for a run's result (there is none to report)."""


def _send(step: Step, article_id: int, retries: int, countdown: float | None) -> None:
    """Send a held fetch as the message its task's retry would have been."""
    try:
        TASKS[step.name].apply_async(
            args=(article_id,), countdown=countdown or None, retries=retries
        )
    except Exception as exc:  # noqa: BLE001 (the broker is down: the sweep sends it again)
        log.warning("held_fetch_not_sent", article_id=article_id, error=short_error(exc))


RERUNS = InProcessRuns()


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
