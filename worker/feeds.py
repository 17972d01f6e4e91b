"""Feed management: add, find, remove, list with health."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from schemas.models import Feed, FeedState
from schemas.types import utcnow
from worker.db import insert_ignore
from worker.settings import Settings
from worker.urls import canonicalize


class FeedNotFound(LookupError):
    """No feed has that id or URL."""


@dataclass
class AddResult:
    added: list[str]
    existing: list[str]


def add_feeds(
    session: Session, urls: list[tuple[str, str | None, list[str]]], settings: Settings
) -> AddResult:
    """Add feeds given as (url, title, tags); existing ones are left as they are.

    New feeds are due at once, spread over a few seconds so that thousands added
    together do not all hit the dispatcher in the same instant."""
    now = utcnow()
    rows: dict[str, dict[str, object]] = {}
    for url, title, tags in urls:
        canonical = canonicalize(url)  # raises InvalidURL with a clear message
        # Many feeds added at once are spread over up to a minute; a few are due now.
        spread = random.uniform(0, min(60.0, len(urls) * 0.01)) if len(urls) > 100 else 0.0
        rows.setdefault(
            canonical,
            dict(
                url=canonical,
                title=title,
                tags=tags,
                state=FeedState.active,
                created_at=now,
                next_poll_at=now + timedelta(seconds=spread),
                poll_interval=settings.poll_initial_interval,
            ),
        )
    inserted = insert_ignore(session, Feed, list(rows.values()), ["url"], returning=[Feed.url])
    added = [r[0] for r in inserted]
    return AddResult(added=added, existing=[u for u in rows if u not in set(added)])


def find_feed(session: Session, ref: str) -> Feed:
    """A feed by id (digits) or by URL, as given or canonicalized."""
    ref = ref.strip()
    feed: Feed | None = None
    if ref.isdigit():
        feed = session.get(Feed, int(ref))
    else:
        feed = session.exec(select(Feed).where(Feed.url == ref)).first()
        if feed is None:
            try:
                feed = session.exec(select(Feed).where(Feed.url == canonicalize(ref))).first()
            except ValueError:
                feed = None
    if feed is None:
        raise FeedNotFound(f"no feed with id or URL {ref!r} (see `claimwire feeds list`)")
    return feed


def all_feeds(session: Session) -> list[Feed]:
    return list(session.exec(select(Feed).order_by(col(Feed.id))).all())


def new_entries_per_day(feed: Feed, now: datetime | None = None) -> float:
    now = now or utcnow()
    days = max((now - feed.created_at).total_seconds() / 86400, 1.0)
    return round(feed.entries_new_total / days, 2)


def feed_row(feed: Feed) -> dict[str, object]:
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
    }
