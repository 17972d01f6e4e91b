"""Database helpers shared by the tests (through the configured settings)."""

from __future__ import annotations

from schemas.models import Article


def load_article(article_id: int) -> Article:
    """The article as stored now, detached from its session."""
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        a = s.get(Article, article_id)
        assert a is not None
        s.expunge(a)
        return a
