"""When a feed is due: the rule the dispatcher claims by (:mod:`worker.feeds.polling`)
and what `claimwire status` counts, without the HTTP client, the feed parser and the
network guard that polling itself needs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlmodel import Session, col

from schemas.models import Feed, FeedState
from schemas.types import utcnow

__all__ = ["count_due", "due"]


def due(now: datetime) -> ColumnElement[bool]:
    """The rule: a feed is due when its time has come, it is not paused, and no poll of
    it is in flight (or the one in flight has outlived its lease)."""
    return and_(
        col(Feed.state) != FeedState.paused,
        col(Feed.next_poll_at) <= now,
        or_(col(Feed.lease_until).is_(None), col(Feed.lease_until) < now),
    )


def count_due(session: Session, now: datetime | None = None) -> int:
    return int(
        session.scalar(select(func.count()).select_from(Feed).where(due(now or utcnow()))) or 0
    )
