"""Fetches sent back for their host's turn and run again in the worker's own pool at the
turn, with no message: the production io worker's (a thread pool on Redis). The
embedded run's `run` process holds its fetches in :data:`~worker.pipeline.attempts.HELD`
too, but sends each as a message at its turn (its CPU processes read the same broker);
``tasks.articles`` wires both to Celery's worker signals. Nothing here imports Celery:
the worker and the sending of a message are given."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog

from worker.network.politeness import HostBusy
from worker.pipeline.attempts import HELD, run_step, short_error
from worker.pipeline.steps import Step

log = structlog.get_logger("claimwire.tasks")

Send = Callable[[Step, int, int, "float | None"], None]
"""``send(step, article_id, retries, countdown)``: the step's message, held back
``countdown`` seconds (None: at once)."""


class InProcessRuns:
    """Fetches sent back for their host's turn, run again in this worker's own pool at
    their turn (:data:`HELD` keeps them until then), instead of a new message each: the
    production io worker's (``-P threads`` on Redis; ``tasks.articles`` switches it on
    at ``worker_init``).

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
    each one as a message, with the rest of its countdown (``tasks.articles``, at
    ``worker_shutting_down``), including those waiting in its pool's queue (a pool that
    stops drops them); such a one that still starts does nothing."""

    def __init__(self, send: Send) -> None:
        self.send = send  # a fetch sent as the message its task's retry would have been
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
            self.send(step, article_id, retries, countdown)
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
                self.send(step, article_id, retries, None)

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
        self.send(step, article_id, retries + 1, outcome.retry_in)

    def flush(self) -> int:
        """Send the fetches queued in the pool and not started, as messages, and from now
        on every fetch whose turn comes; how many were queued."""
        with self._lock:
            self.stopping = self.active
            queued, self._queued = self._queued, {}
        for step, article_id, retries in queued.values():
            self.send(step, article_id, retries, None)
        return len(queued)


def _ignore(_result: Any) -> None:
    """The pool's callback for a run's result (there is none to report)."""
