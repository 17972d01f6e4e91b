"""How an article moves from one state to the next.

The states themselves and which of them are pending or final are data
(:class:`schemas.models.ArticleState`); which step takes an article out of each pending
state is :data:`worker.pipeline.steps.PIPELINE`.
"""

from __future__ import annotations

from schemas.models import Article, ArticleState
from schemas.types import utcnow


def set_state(article: Article, state: ArticleState, reason: str | None = None) -> None:
    """Move ``article`` to ``state`` now (the sweep's mark, ``state_changed_at``, with
    it), recording ``reason`` when one is given."""
    article.state = state
    article.state_changed_at = utcnow()
    if reason is not None:
        article.failure_reason = reason
