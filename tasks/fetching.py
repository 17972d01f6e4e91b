"""Fetching tasks."""

from __future__ import annotations

from typing import Any

from tasks.base import run_article_step
from worker import fetching, runtime
from worker.celery_app import app
from worker.settings import get_settings


@app.task(bind=True, name="tasks.fetching.fetch_article")
def fetch_article(self: Any, article_id: int) -> bool:
    """Download and archive one discovered article, then queue its extraction."""
    from tasks.processing import extract_article

    settings = get_settings()

    def step(session: Any, aid: int) -> bool:
        return fetching.fetch_article(
            session, aid, runtime.http_client(), runtime.host_limiter(), runtime.archive(), settings
        ).advanced

    return run_article_step(self, article_id, step, extract_article)
