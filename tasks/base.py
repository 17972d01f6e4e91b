"""The task class every claimwire task shares: an outcome mapped to done or retry."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task
from celery.exceptions import Reject, Retry

from worker.network.politeness import HostBusy
from worker.pipeline.attempts import Outcome, is_environment_error, short_error

log = structlog.get_logger("claimwire.tasks")


class ClaimwireTask(Task):  # type: ignore[misc]
    """A task whose unit of work returns an :class:`~worker.pipeline.attempts.Outcome`.

    Its follow-up messages were recorded in that unit of work and sent after its commit
    (``worker.core.outbox``); what is left to the task is the retry."""

    def settle(self, outcome: Outcome) -> bool:
        """Retry this message when the outcome asks for it; otherwise say whether the
        step moved its article on. Every retry names its limit: Celery's
        ``max_retries=None`` would mean its default of 3. A retry that cannot be sent
        (the broker is down) is left to the sweep (:meth:`retry_or_leave`)."""
        if outcome.retry_in is None:
            return outcome.advanced
        request = self.request
        if isinstance(outcome.cause, HostBusy) and not (
            request.is_eager or request.called_directly
        ):
            # Sent back for its host's turn, which is no error: the retry is sent and the
            # task returns (its message acknowledged, as after a raised retry). Raised,
            # Celery's retry makes an ExceptionInfo of the whole trace (every frame's
            # code positions), which was a sixth of the `run` process's CPU (issue 16).
            self.retry_or_leave(countdown=outcome.retry_in, max_retries=outcome.max_retries)
            return False
        if outcome.cause is None:
            retry = self.retry_or_leave(countdown=outcome.retry_in, max_retries=outcome.max_retries)
            if retry is None:
                return False
            raise retry
        try:
            raise outcome.cause
        except BaseException as cause:
            # Raised while handling its cause, the retry carries it (``__cause__``), in a
            # worker and when the task is called directly (Celery raises then).
            retry = self.retry_or_leave(countdown=outcome.retry_in, max_retries=outcome.max_retries)
            if retry is None:
                return False
            raise retry from cause

    def retry_or_leave(self, **options: Any) -> Retry | None:
        """The retry of this message (``Task.retry`` with ``throw=False``), or None when
        it could not be sent because the broker is unreachable.

        Celery sends a retry as a new message; with the broker down that fails too, and
        Celery would reject the message (``requeue=False``) with chained tracebacks.
        Instead: one warning line that names the outage, and the message ends here, on
        purpose. The database still says what is pending: the sweep re-sends an article
        ``CLAIMWIRE_STALE_AFTER`` after its last mark, a feed's or a job item's lease
        runs out and it is handed out again (docs/reliability.md)."""
        try:
            retry: Retry = self.retry(throw=False, **options)
        except Reject as rejected:
            reason = rejected.reason
            if not isinstance(reason, BaseException) or not is_environment_error(reason):
                raise
            log.warning(
                "retry_not_sent_broker_down",
                task=self.name,
                args=list(self.request.args or []),
                error=short_error(reason),
                recovery="left to the sweep (or the lease): the database keeps it pending",
            )
            return None
        return retry
