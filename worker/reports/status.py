"""What `claimwire status` reports: queues, states, feed health, recent errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from schemas.models import (
    PENDING_ARTICLE_STATES,
    Article,
    ArticleState,
    Claim,
    ClaimCluster,
    Feed,
    FeedState,
)
from schemas.types import utcnow
from worker.core.queues import queue_depths
from worker.core.settings import Settings, mask_secrets
from worker.feeds.due import count_due
from worker.jobs.lifecycle import jobs_pending_work
from worker.pipeline.sweep import held_article_ids


def pending_work(session: Session) -> int:
    """Items the database says are not finished: due or leased feeds, pending articles,
    and backfill/reprocess jobs (articles held by a job's pending items counted once,
    as the job's). Paused jobs wait for a person and are not counted."""
    now = utcnow()
    leased = session.exec(
        select(func.count())
        .select_from(Feed)
        .where(col(Feed.lease_until).is_not(None), col(Feed.lease_until) > now)
    ).one()
    articles = session.exec(
        select(func.count())
        .select_from(Article)
        .where(
            col(Article.state).in_([s.value for s in PENDING_ARTICLE_STATES]),
            col(Article.id).not_in(held_article_ids()),
        )
    ).one()
    return int(leased) + int(articles) + count_due(session, now) + jobs_pending_work(session)


def collect(session: Session, settings: Settings) -> dict[str, Any]:
    states = dict(
        session.exec(select(Article.state, func.count()).group_by(col(Article.state))).all()
    )
    feed_states = dict(
        session.exec(select(Feed.state, func.count()).group_by(col(Feed.state))).all()
    )
    recent_article_errors = [
        {
            "id": a.id,
            "url": mask_secrets(a.url),
            "state": a.state,
            "reason": mask_secrets(a.failure_reason or "") or None,
            "at": a.state_changed_at.isoformat(),
        }
        for a in session.exec(
            select(Article)
            .where(
                col(Article.state).in_([ArticleState.failed.value, ArticleState.quarantined.value])
            )
            .order_by(col(Article.state_changed_at).desc())
            .limit(5)
        ).all()
    ]
    recent_feed_errors = [
        {
            "id": f.id,
            "url": mask_secrets(f.url),
            "state": f.state,
            "error": mask_secrets(f.last_error or "") or None,
            "failures": f.consecutive_failures,
            "next_poll_at": f.next_poll_at.isoformat() if f.next_poll_at else None,
        }
        for f in session.exec(
            select(Feed)
            .where(col(Feed.last_error).is_not(None))
            .order_by(col(Feed.last_attempt_at).desc())
            .limit(5)
        ).all()
    ]
    skipped_language = session.exec(
        select(func.count()).select_from(Article).where(Article.claims_status == "skipped_language")
    ).one()
    queues = queue_depths(settings)
    url = settings.effective_broker_url
    reachable: bool | None = None  # unknown: a broker whose queues are not read here
    if settings.broker_is_embedded:
        reachable = True
    elif url.startswith(("redis://", "rediss://")):
        reachable = all(depth is not None for depth in queues.values())
    return {
        "database": settings.effective_database_url,
        "broker": url,
        "broker_reachable": reachable,
        "queues": queues,
        "articles": {s.value: int(states.get(s.value, 0)) for s in ArticleState},
        "feeds": {
            "total": int(sum(feed_states.values())),
            "healthy": int(feed_states.get(FeedState.active.value, 0)),
            "failing": int(feed_states.get(FeedState.failing.value, 0)),
            "dead": int(feed_states.get(FeedState.dead.value, 0)),
            "paused": int(feed_states.get(FeedState.paused.value, 0)),
            "due": count_due(session),
        },
        "claims": int(session.exec(select(func.count()).select_from(Claim)).one()),
        "claim_clusters": int(session.exec(select(func.count()).select_from(ClaimCluster)).one()),
        "articles_skipped_language": int(skipped_language),
        "recent_article_errors": recent_article_errors,
        "recent_feed_errors": recent_feed_errors,
        "frontier": frontier(session, settings),
    }


def frontier(session: Session, settings: Settings, limit: int = 10) -> dict[str, Any]:
    """The crawl frontier: hosts with fetches waiting, the largest backlogs first, each
    with the seconds until its next turn and its last one.

    The database says what waits (articles to fetch, by host) and when: a fetch sent
    back for its host's turn holds its article's sweep mark until that turn. With Redis,
    the hosts' timelines add the turns reserved (fetches and feed polls) and when each
    host is next free for a request without a turn (``free_in``)."""
    now = utcnow()
    waiting = col(Article.state) == ArticleState.discovered.value
    count = func.count()
    rows = session.exec(
        select(
            Article.host,
            count,
            func.min(Article.state_changed_at),
            func.max(Article.state_changed_at),
        )
        .where(waiting)
        .group_by(col(Article.host))
        .order_by(count.desc(), col(Article.host))
        .limit(limit)
    ).all()
    hosts = int(
        session.exec(select(func.count(func.distinct(col(Article.host)))).where(waiting)).one()
    )
    articles = int(session.exec(select(func.count()).select_from(Article).where(waiting)).one())
    lines = _host_lines(settings, limit * 5)

    def seconds(at: datetime | None) -> float:
        return max(0.0, (at - now).total_seconds()) if at is not None else 0.0

    backlogs = []
    for host, n, first_mark, last_mark in rows:
        line = lines.get(host)
        backlogs.append(
            {
                "host": host,
                "waiting": int(n),
                "next_turn_in": round(seconds(first_mark), 1),
                "last_turn_in": round(seconds(last_mark), 1),
                "turns_reserved": line.turns if line else None,
                "free_in": round(line.free_in, 1) if line else None,
            }
        )
    return {
        "hosts_waiting": hosts,
        "articles_waiting": articles,
        "largest_backlogs": backlogs,
        "busiest_timelines": [
            {
                "host": line.host,
                "turns_reserved": line.turns,
                "free_in": round(line.free_in, 1),
                "last_turn_in": round(line.last_turn_in, 1),
            }
            for line in sorted(lines.values(), key=lambda x: -x.turns)[:limit]
        ],
    }


def _host_lines(settings: Settings, limit: int) -> dict[str, Any]:
    """The hosts' timelines kept in Redis (none for the embedded broker, whose timelines
    live in the `run` process), by host; empty when Redis cannot be asked."""
    url = settings.effective_broker_url
    if not url.startswith(("redis://", "rediss://")):
        return {}
    import redis

    from worker.network.politeness import RedisHostLimiter

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        return {line.host: line for line in RedisHostLimiter(client, settings).lines(limit)}
    except redis.RedisError:
        return {}


@dataclass(frozen=True)
class Progress:
    """What the embedded ``claimwire run`` prints every so often (``progress``)."""

    feeds_polled: int  # feeds polled (successfully or not) since the run started
    feeds_failing: int  # feeds whose last poll failed (failing or dead), now
    processed: int
    pending: int  # articles on their way (discovered .. deduplicated)
    failed: int  # failed or quarantined
    skipped: int
    claims: int

    def line(self) -> str:
        return (
            f"feeds: {self.feeds_polled} polled, {self.feeds_failing} failing; "
            f"articles: {self.processed} processed, {self.pending} pending, "
            f"{self.failed} failed, {self.skipped} skipped; claims: {self.claims}"
        )


def progress(session: Session, since: datetime) -> Progress:
    """Counts for a progress line: three small aggregate queries (articles by state
    through the state index, feeds, claims)."""
    states = dict(
        session.exec(select(Article.state, func.count()).group_by(col(Article.state))).all()
    )
    feeds = session.exec(
        select(
            func.count().filter(col(Feed.last_attempt_at) >= since),
            func.count().filter(
                col(Feed.state).in_([FeedState.failing.value, FeedState.dead.value])
            ),
        ).select_from(Feed)
    ).one()
    pending = sum(int(states.get(s.value, 0)) for s in PENDING_ARTICLE_STATES)
    return Progress(
        feeds_polled=int(feeds[0]),
        feeds_failing=int(feeds[1]),
        processed=int(states.get(ArticleState.processed.value, 0)),
        pending=pending,
        failed=int(states.get(ArticleState.failed.value, 0))
        + int(states.get(ArticleState.quarantined.value, 0)),
        skipped=int(states.get(ArticleState.skipped.value, 0)),
        claims=int(session.exec(select(func.count()).select_from(Claim)).one()),
    )


@dataclass(frozen=True)
class FailingFeeds:
    """Feeds whose last poll failed, among those not paused."""

    failing: int  # failing or dead
    unpaused: int  # every feed not paused
    examples: list[tuple[int, str, str]]  # (id, url masked, last error), latest first
    next_polls: list[datetime | None] = field(default_factory=list)  # of the examples

    @property
    def all_failed(self) -> bool:
        return self.unpaused > 0 and self.failing == self.unpaused


def failing_feeds(session: Session, limit: int = 3) -> FailingFeeds:
    bad = [FeedState.failing.value, FeedState.dead.value]
    counts = session.exec(
        select(
            func.count().filter(col(Feed.state).in_(bad)),
            func.count().filter(col(Feed.state) != FeedState.paused.value),
        ).select_from(Feed)
    ).one()
    feeds = session.exec(
        select(Feed)
        .where(col(Feed.state).in_(bad))
        .order_by(col(Feed.last_attempt_at).desc(), col(Feed.id))
        .limit(limit)
    ).all()
    examples = [
        (
            int(f.id or 0),
            mask_secrets(f.url),
            mask_secrets(f.last_error or "") or "no error recorded",
        )
        for f in feeds
    ]
    return FailingFeeds(
        failing=int(counts[0]),
        unpaused=int(counts[1]),
        examples=examples,
        next_polls=[f.next_poll_at for f in feeds],
    )


def archive_writable(path: Path) -> str | None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return f"archive {path} is not writable: {exc.strerror or exc}"
    return None
