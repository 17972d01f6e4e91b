"""The task class every claimwire task shares: an outcome mapped to done or retry."""

from __future__ import annotations

from celery import Task

from worker.pipeline.attempts import Outcome


class ClaimwireTask(Task):  # type: ignore[misc]
    """A task whose unit of work returns an :class:`~worker.pipeline.attempts.Outcome`.

    Its follow-up messages were recorded in that unit of work and sent after its commit
    (``worker.core.outbox``); what is left to the task is the retry."""

    def settle(self, outcome: Outcome) -> bool:
        """Retry this message when the outcome asks for it; otherwise say whether the
        step moved its article on. Every retry names its limit: Celery's
        ``max_retries=None`` would mean its default of 3."""
        if outcome.retry_in is None:
            return outcome.advanced
        if outcome.cause is None:
            raise self.retry(countdown=outcome.retry_in, max_retries=outcome.max_retries)
        try:
            raise outcome.cause
        except BaseException as cause:
            # Raised while handling its cause, the retry carries it (``__cause__``), in a
            # worker and when the task is called directly (Celery raises then).
            retry = self.retry(
                countdown=outcome.retry_in, max_retries=outcome.max_retries, throw=False
            )
            raise retry from cause
