"""Fetching tasks."""

from __future__ import annotations

from typing import Any

from tasks.base import run_article_step
from worker.celery_app import app
from worker.core import resources
from worker.core.settings import get_settings
from worker.pages import fetch


@app.task(bind=True, name="tasks.fetching.fetch_article")
def fetch_article(self: Any, article_id: int) -> bool:
    """Download and archive one discovered article, then queue its extraction."""
    from tasks.processing import extract_article

    settings = get_settings()

    def step(session: Any, aid: int) -> bool:
        return fetch.fetch_article(
            session,
            aid,
            resources.http_client(),
            resources.host_limiter(),
            resources.archive(),
            settings,
        ).advanced

    return run_article_step(self, article_id, step, extract_article)
