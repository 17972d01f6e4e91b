"""CPU tasks: extraction, deduplication, claims."""

from __future__ import annotations

from typing import Any

from tasks.base import run_article_step, send
from worker.celery_app import app
from worker.claims.model import require_model
from worker.core import resources
from worker.core.settings import get_settings
from worker.pages import extract


@app.task(bind=True, name="tasks.processing.extract_article")
def extract_article(self: Any, article_id: int) -> bool:
    """Clean an archived page to text and metadata, then queue deduplication."""
    settings = get_settings()
    return run_article_step(
        self,
        article_id,
        lambda s, aid: extract.extract_stored_article(s, aid, resources.archive(), settings),
        dedup_article,
    )


@app.task(bind=True, name="tasks.processing.dedup_article")
def dedup_article(self: Any, article_id: int) -> bool:
    """Place the article in its duplicate group, then queue claim extraction."""
    from worker.dedup import deduplicate

    settings = get_settings()
    requeue: list[int] = []

    def step(session: Any, aid: int) -> bool:
        outcome = deduplicate.deduplicate_article(session, aid, settings)
        if outcome.canonical_changed_to is not None:
            requeue.append(outcome.canonical_changed_to)
        return outcome.advanced

    advanced = bool(run_article_step(self, article_id, step, claims_article))
    for other in requeue:
        if other != article_id:
            send(claims_article, other)
    return advanced


@app.task(bind=True, name="tasks.processing.claims_article")
def claims_article(self: Any, article_id: int) -> bool:
    """Extract and cluster the claims of a group's canonical article."""
    from worker.claims import store

    settings = get_settings()

    def step(session: Any, aid: int) -> bool:
        require_model(settings)  # a model that cannot load is the setting's fault: wait
        return bool(store.process_claims(session, aid, settings))

    return run_article_step(self, article_id, step, None)
