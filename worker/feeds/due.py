"""When a feed is due: the rule the dispatcher claims by (:mod:`worker.feeds.polling`)
and what `claimwire status` counts, without the HTTP client, the feed parser and the
network guard that polling itself needs (nor the ORM: :mod:`schemas.tables`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, func, or_, select

from schemas import tables
from schemas.states import FeedState
from schemas.types import utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

__all__ = ["count_due", "due"]


def due(now: datetime, feed: Any = None) -> ColumnElement[bool]:
    """The rule: a feed is due when its time has come, it is not paused, and no poll of
    it is in flight (or the one in flight has outlived its lease). ``feed``: the table
    the statement reads (default the ORM's, ``schemas.models.Feed``; one statement
    never mixes it with :data:`schemas.tables.feed`)."""
    if feed is None:
        from schemas.models import Feed

        feed = Feed.__table__  # type: ignore[attr-defined]
    c = feed.c
    return and_(
        c.state != FeedState.paused,
        c.next_poll_at <= now,
        or_(c.lease_until.is_(None), c.lease_until < now),
    )


def count_due(session: Session | Connection, now: datetime | None = None) -> int:
    feed = tables.feed
    return int(
        session.scalar(select(func.count()).select_from(feed).where(due(now or utcnow(), feed)))
        or 0
    )
