"""The article pipeline's tasks: one per row of ``worker.pipeline.steps.PIPELINE``,
named and routed as the row says. Each runs its step for one article
(``worker.pipeline.attempts.run_step``) and retries when the outcome asks for it."""

from __future__ import annotations

from typing import Any

from tasks.base import ClaimwireTask
from worker.celery_app import app
from worker.pipeline.attempts import run_step
from worker.pipeline.steps import PIPELINE, Step


def _task_for(step: Step) -> Any:
    def run(self: ClaimwireTask, article_id: int) -> bool:
        return self.settle(run_step(step, article_id, retries=self.request.retries or 0))

    run.__doc__ = step.run.__doc__
    run.__name__ = run.__qualname__ = step.task_name.rsplit(".", 1)[-1]
    return app.task(bind=True, base=ClaimwireTask, name=step.task_name)(run)


TASKS: dict[str, Any] = {step.name: _task_for(step) for step in PIPELINE}

fetch_article = TASKS["fetch"]
extract_article = TASKS["extract"]
dedup_article = TASKS["dedup"]
claims_article = TASKS["claims"]
