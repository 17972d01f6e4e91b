"""Feeds with their health, as `claimwire feeds list` / `feeds show` and the web view
show them. :func:`feed_row` takes an ORM ``Feed`` or a Core row alike;
:func:`listed_feeds` reads SQLAlchemy Core over :mod:`schemas.tables` on a plain
connection (:func:`worker.core.db.reading`), so `feeds list` imports neither the ORM,
the SQLModel classes nor the HTTP client and feed parser of
:mod:`worker.feeds.subscriptions` (which re-exports :func:`feed_row`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from schemas.states import FeedState
from schemas.tables import feed as feed_table
from schemas.types import utcnow
from worker.core.shown import human_duration

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

__all__ = ["feed_row", "listed_feeds", "new_entries_per_day", "next_poll"]


def listed_feeds(session: Session | Connection) -> Sequence[Any]:
    """Every feed, by id, as rows with the attributes :func:`feed_row` reads."""
    return session.execute(select(feed_table).order_by(feed_table.c.id)).all()


def new_entries_per_day(feed: Any, now: datetime | None = None) -> float:
    now = now or utcnow()
    age: float = (now - feed.created_at).total_seconds()
    entries: int = feed.entries_new_total
    return round(entries / max(age / 86400, 1.0), 2)


def next_poll(at: datetime | str | None, now: datetime | None = None) -> str:
    """When a feed is polled next, as read at ``now``: ``in 1h 4m``, ``due now``, or
    ``-`` (not scheduled). Worked out when shown: the database keeps the time itself
    (``next_poll_at``), never a sentence about it ("next poll in 63 min", stored with a
    failed poll, was still shown hours later)."""
    if at is None or at == "":
        return "-"
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    wait = (when - (now or utcnow())).total_seconds()
    return "due now" if wait < 1 else f"in {human_duration(wait)}"


def feed_row(feed: Any) -> dict[str, object]:
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {
        "id": feed.id,
        "url": feed.url,
        "title": feed.title,
        "state": feed.state,
        "tags": feed.tags,
        "next_poll_at": iso(feed.next_poll_at),
        "poll_interval": feed.poll_interval,
        "interval_override": feed.interval_override,
        "last_attempt_at": iso(feed.last_attempt_at),
        "last_success_at": iso(feed.last_success_at),
        "last_new_entry_at": iso(feed.last_new_entry_at),
        "consecutive_failures": feed.consecutive_failures,
        "transient_failures": feed.transient_failures,
        "permanent_failures": feed.permanent_failures,
        "last_status": feed.last_status,
        "last_error": feed.last_error,
        "new_entries_per_day": new_entries_per_day(feed),
        "polls_total": feed.polls_total,
        "dead": feed.state == FeedState.dead,
    }
