"""The states of feeds, articles, jobs and job items (plain enums: importing them loads
neither SQLAlchemy's ORM nor the SQLModel classes of :mod:`schemas.models`, which
re-exports them).

States of an article (``ArticleState``) move forward only:
discovered -> fetched -> extracted -> deduplicated -> processed, or end in
skipped (robots, content type, ...), failed (permanent error) or quarantined
(a step failed ``max_attempts`` times; replayable).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "FINAL_ARTICLE_STATES",
    "PENDING_ARTICLE_STATES",
    "ArticleState",
    "FeedState",
    "JobItemState",
    "JobState",
]


class FeedState(StrEnum):
    active = "active"
    failing = "failing"
    dead = "dead"
    paused = "paused"


class ArticleState(StrEnum):
    discovered = "discovered"
    fetched = "fetched"
    extracted = "extracted"
    deduplicated = "deduplicated"
    processed = "processed"
    skipped = "skipped"
    failed = "failed"
    quarantined = "quarantined"


PENDING_ARTICLE_STATES = (
    ArticleState.discovered,
    ArticleState.fetched,
    ArticleState.extracted,
    ArticleState.deduplicated,
)
FINAL_ARTICLE_STATES = (
    ArticleState.processed,
    ArticleState.skipped,
    ArticleState.failed,
    ArticleState.quarantined,
)


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    paused = "paused"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


class JobItemState(StrEnum):
    pending = "pending"
    done = "done"
    skipped = "skipped"
    failed = "failed"
