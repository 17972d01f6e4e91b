"""What `claimwire status` reports: queues, states, feed health, recent errors.

The queries are SQLAlchemy Core over :mod:`schemas.tables`: they run on an ORM session
(the service, the web view) and on a plain connection (`claimwire status`,
:func:`worker.core.db.reading`), which imports neither the ORM nor the SQLModel classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from schemas.states import PENDING_ARTICLE_STATES, ArticleState, FeedState
from schemas.tables import article, claim, claimcluster, feed
from schemas.types import utcnow
from worker.core.queues import queue_depths
from worker.core.settings import Settings, mask_secrets
from worker.feeds.due import count_due

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session
    from sqlmodel import Session as ModelSession


def pending_work(session: ModelSession) -> int:
    """Items the database says are not finished: due or leased feeds, pending articles,
    and backfill/reprocess jobs (articles held by a job's pending items counted once,
    as the job's). Paused jobs wait for a person and are not counted. (The service's
    question, asked on its ORM session.)"""
    from sqlmodel import col

    from schemas.models import Article, Feed
    from worker.jobs.lifecycle import jobs_pending_work
    from worker.pipeline.sweep import held_article_ids

    now = utcnow()
    leased = session.scalar(
        select(func.count())
        .select_from(Feed)
        .where(col(Feed.lease_until).is_not(None), col(Feed.lease_until) > now)
    )
    articles = session.scalar(
        select(func.count())
        .select_from(Article)
        .where(
            col(Article.state).in_([s.value for s in PENDING_ARTICLE_STATES]),
            col(Article.id).not_in(held_article_ids()),
        )
    )
    return (
        int(leased or 0) + int(articles or 0) + count_due(session, now) + jobs_pending_work(session)
    )


def pending_work_at_most(session: Session | Connection, at_most: int) -> int:
    """``min(pending_work(session), at_most)``, in one statement that stops counting at
    ``at_most``: each of ``pending_work``'s counts reads at most ``at_most`` rows (the
    pending articles through the index on their state), so the ``run --until-idle``
    watcher's check costs the same with 10 or 10,000 articles pending. ``at_most`` >= 1."""
    result = session.execute(_pending_statement(), {"now": utcnow(), "n": at_most}).scalar()
    return min(int(result or 0), at_most)


_PENDING: list[Any] = []


def _pending_statement() -> Any:
    """Built once: the sum of ``pending_work``'s five counts, each over at most ``:n``
    rows (the same conditions: leased feeds, pending articles not held by a job's
    pending item, due feeds, active jobs and their pending items)."""
    if _PENDING:
        return _PENDING[0]
    from typing import cast

    from sqlalchemy import Integer, bindparam, literal

    from schemas.states import JobItemState, JobState
    from schemas.tables import job, jobitem
    from worker.feeds.due import due
    from worker.pipeline.sweep import held_article_ids

    now = bindparam("now", type_=feed.c.lease_until.type)
    n = bindparam("n", type_=Integer())

    def bounded(rows: Any) -> Any:
        return select(func.count()).select_from(rows.limit(n).subquery()).scalar_subquery()

    active = [JobState.queued.value, JobState.running.value]
    held = held_article_ids()  # the sweep's rule: counted once, as the job's
    leased = select(literal(1)).where(feed.c.lease_until.is_not(None), feed.c.lease_until > now)
    articles = select(literal(1)).where(
        article.c.state.in_([s.value for s in PENDING_ARTICLE_STATES]),
        article.c.id.not_in(held),
    )
    # the dispatcher's rule, its time bound at each check
    due_feeds = select(literal(1)).where(due(cast(datetime, now), feed))
    jobs = select(literal(1)).where(job.c.state.in_(active))
    items = (
        select(literal(1))
        .select_from(jobitem.join(job, job.c.id == jobitem.c.job_id))
        .where(job.c.state.in_(active), jobitem.c.state == JobItemState.pending.value)
    )
    statement = select(
        bounded(articles) + bounded(leased) + bounded(due_feeds) + bounded(jobs) + bounded(items)
    )
    _PENDING.append(statement)
    return statement


def _count(session: Session | Connection, query: Any) -> int:
    return int(session.scalar(query) or 0)


def collect(session: Session | Connection, settings: Settings) -> dict[str, Any]:
    a, f = article.c, feed.c
    states = {
        str(k): int(n)
        for k, n in session.execute(select(a.state, func.count()).group_by(a.state)).all()
    }
    feed_states = {
        str(k): int(n)
        for k, n in session.execute(select(f.state, func.count()).group_by(f.state)).all()
    }
    recent_article_errors = [
        {
            "id": r.id,
            "url": mask_secrets(r.url),
            "state": r.state,
            "reason": mask_secrets(r.failure_reason or "") or None,
            "at": r.state_changed_at.isoformat(),
        }
        for r in session.execute(
            select(a.id, a.url, a.state, a.failure_reason, a.state_changed_at)
            .where(a.state.in_([ArticleState.failed.value, ArticleState.quarantined.value]))
            .order_by(a.state_changed_at.desc())
            .limit(5)
        ).all()
    ]
    recent_feed_errors = [
        {
            "id": r.id,
            "url": mask_secrets(r.url),
            "state": r.state,
            "error": mask_secrets(r.last_error or "") or None,
            "failures": r.consecutive_failures,
            "next_poll_at": r.next_poll_at.isoformat() if r.next_poll_at else None,
        }
        for r in session.execute(
            select(f.id, f.url, f.state, f.last_error, f.consecutive_failures, f.next_poll_at)
            .where(f.last_error.is_not(None))
            .order_by(f.last_attempt_at.desc())
            .limit(5)
        ).all()
    ]
    skipped_language = _count(
        session,
        select(func.count()).select_from(article).where(a.claims_status == "skipped_language"),
    )
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
        "articles": {s.value: states.get(s.value, 0) for s in ArticleState},
        "feeds": {
            "total": sum(feed_states.values()),
            "healthy": feed_states.get(FeedState.active.value, 0),
            "failing": feed_states.get(FeedState.failing.value, 0),
            "dead": feed_states.get(FeedState.dead.value, 0),
            "paused": feed_states.get(FeedState.paused.value, 0),
            "due": count_due(session),
        },
        "claims": _count(session, select(func.count()).select_from(claim)),
        "claim_clusters": _count(session, select(func.count()).select_from(claimcluster)),
        "articles_skipped_language": skipped_language,
        "recent_article_errors": recent_article_errors,
        "recent_feed_errors": recent_feed_errors,
        "frontier": frontier(session, settings),
    }


def frontier(session: Session | Connection, settings: Settings, limit: int = 10) -> dict[str, Any]:
    """The crawl frontier: hosts with fetches waiting, the largest backlogs first, each
    with the seconds until its next turn and its last one.

    The database says what waits (articles to fetch, by host) and when: a fetch sent
    back for its host's turn holds its article's sweep mark until that turn. With Redis,
    the hosts' timelines add the turns reserved (fetches and feed polls) and when each
    host is next free for a request without a turn (``free_in``)."""
    now = utcnow()
    a = article.c
    waiting = a.state == ArticleState.discovered.value
    count = func.count()
    rows = session.execute(
        select(a.host, count, func.min(a.state_changed_at), func.max(a.state_changed_at))
        .where(waiting)
        .group_by(a.host)
        .order_by(count.desc(), a.host)
        .limit(limit)
    ).all()
    hosts = _count(session, select(func.count(func.distinct(a.host))).where(waiting))
    articles = _count(session, select(func.count()).select_from(article).where(waiting))
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
    # pending articles that failed a step at least once and wait for its retry (a host
    # whose robots.txt cannot be read is asked again every 5 minutes): a run that prints
    # nothing new for minutes says what it waits for
    retrying: int = 0

    def line(self) -> str:
        retrying = f" ({self.retrying} retrying after an error)" if self.retrying else ""
        return (
            f"feeds: {self.feeds_polled} polled, {self.feeds_failing} failing; "
            f"articles: {self.processed} processed, {self.pending} pending{retrying}, "
            f"{self.failed} failed, {self.skipped} skipped; claims: {self.claims}"
        )


def progress(session: Session | Connection, since: datetime) -> Progress:
    """Counts for a progress line: small aggregate queries (articles by state through
    the state index, the pending ones that failed a step already, feeds, claims)."""
    a, f = article.c, feed.c
    states = {
        str(k): int(n)
        for k, n in session.execute(select(a.state, func.count()).group_by(a.state)).all()
    }
    pending_states = [s.value for s in PENDING_ARTICLE_STATES]
    # the pending rows only (found through the state index), not the whole table
    retrying = _count(
        session,
        select(func.count())
        .select_from(article)
        .where(a.state.in_(pending_states), a.attempts > 0),
    )
    feeds = session.execute(
        select(
            func.count().filter(f.last_attempt_at >= since),
            func.count().filter(f.state.in_([FeedState.failing.value, FeedState.dead.value])),
        ).select_from(feed)
    ).one()
    pending = sum(states.get(s.value, 0) for s in PENDING_ARTICLE_STATES)
    return Progress(
        feeds_polled=int(feeds[0]),
        feeds_failing=int(feeds[1]),
        processed=states.get(ArticleState.processed.value, 0),
        pending=pending,
        failed=states.get(ArticleState.failed.value, 0)
        + states.get(ArticleState.quarantined.value, 0),
        skipped=states.get(ArticleState.skipped.value, 0),
        claims=_count(session, select(func.count()).select_from(claim)),
        retrying=retrying,
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


def failing_feeds(session: Session | Connection, limit: int = 3) -> FailingFeeds:
    f = feed.c
    bad = [FeedState.failing.value, FeedState.dead.value]
    counts = session.execute(
        select(
            func.count().filter(f.state.in_(bad)),
            func.count().filter(f.state != FeedState.paused.value),
        ).select_from(feed)
    ).one()
    feeds = session.execute(
        select(f.id, f.url, f.last_error, f.next_poll_at)
        .where(f.state.in_(bad))
        .order_by(f.last_attempt_at.desc(), f.id)
        .limit(limit)
    ).all()
    examples = [
        (
            int(r.id or 0),
            mask_secrets(r.url),
            mask_secrets(r.last_error or "") or "no error recorded",
        )
        for r in feeds
    ]
    return FailingFeeds(
        failing=int(counts[0]),
        unpaused=int(counts[1]),
        examples=examples,
        next_polls=[r.next_poll_at for r in feeds],
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
