"""Feed polling: which feeds are due, claiming them, and one poll of one feed.

The database is the scheduler. ``next_poll_at`` says when a feed is due; the
dispatcher claims due feeds in bounded batches by setting a lease (``lease_until``)
under ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite serializes writers itself),
so any number of dispatchers never hand out one feed twice. A poll ends by clearing
the lease and choosing the next time, adapted to how often the feed brings news.
"""

from __future__ import annotations

import hashlib
import random
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, NamedTuple

import httpx
from sqlalchemy import Table, bindparam, delete, event, insert, select, text, update
from sqlmodel import Session, col

from schemas.models import Article, ArticleState, Feed, FeedPoll, FeedState, Sighting
from schemas.types import utcnow
from worker.core import outbox
from worker.core.db import get_engine, is_postgres, unit_of_work
from worker.core.settings import Settings
from worker.feeds.due import count_due, due
from worker.feeds.parsing import Entry, ParsedFeed, parse_feed
from worker.network.http import FetchError, HttpClient, classify_status, parse_retry_after
from worker.network.politeness import HostBusy, HostLimiter, TurnAhead
from worker.network.robots import RobotsCopy, RobotsUnavailable, keeping, robots_allows
from worker.network.urls import InvalidURL, canonicalize, host_of, url_hash


class Lease(NamedTuple):
    """A claimed feed and its lease token: the ``lease_until`` the claim wrote, in ISO
    8601. Each claim of a feed writes a later ``lease_until`` (a new claim needs the old
    lease to have expired), so the value fences off older poll messages."""

    feed_id: int
    token: str


def lease_token(lease_until: datetime) -> str:
    return lease_until.astimezone(UTC).isoformat()


def claim_due_feeds(
    session: Session, settings: Settings, now: datetime | None = None, limit: int | None = None
) -> list[Lease]:
    """Lease up to ``limit`` due feeds to the caller; return their ids and lease tokens."""
    now = now or utcnow()
    limit = limit or settings.dispatch_batch_size
    query = select(col(Feed.id)).where(due(now)).order_by(col(Feed.next_poll_at)).limit(limit)
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    ids = [i for i in session.execute(query).scalars().all() if i is not None]
    if not ids:
        return []
    # Microseconds dropped: the token must survive every backend's timestamp unchanged.
    lease = (now + timedelta(seconds=settings.poll_lease_seconds)).replace(microsecond=0)
    # Re-check the rule in the UPDATE: on SQLite a concurrent dispatcher may have
    # claimed some of these between our SELECT and this statement.
    result = session.execute(
        update(Feed)
        .where(col(Feed.id).in_(ids), due(now))
        .values(lease_until=lease)
        .returning(col(Feed.id))
    )
    token = lease_token(lease)
    return [Lease(feed_id, token) for feed_id in result.scalars().all()]


@dataclass
class PollResult:
    outcome: str  # ok, not_modified, unchanged, error, deferred, skipped
    new_article_ids: list[int] = field(default_factory=list)
    new_article_hosts: list[str] = field(default_factory=list)  # of new_article_ids, in order
    entries_seen: int = 0
    error: str | None = None
    entries_rejected: int = 0
    rejected: str | None = None  # why, in one line: "2 not an absolute http(s) URL (...)"


class LeaseLost(Exception):
    """The feed was claimed again while this poll ran (its lease had run out): the newer
    claim's poll owns the feed now, so this one must not write anything."""


# Hints from the server (ttl, sy:updatePeriod, max-age, Expires, Retry-After) are obeyed
# even above the ceiling, up to this bound: a week, against absurd values.
HINT_CAP = 7 * 86_400


def _header_hint(headers: httpx.Headers, now: datetime) -> int | None:
    """Seconds the server asks us not to come back before (max-age, Expires)."""
    hints: list[int] = []
    cache_control = headers.get("cache-control", "")
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        value = value.strip().strip('"')
        if name.lower() in ("max-age", "s-maxage") and value.isdigit():
            hints.append(int(value))
    expires = headers.get("expires")
    if expires and "max-age" not in cache_control.lower():  # max-age overrides Expires
        try:
            when = parsedate_to_datetime(expires)
            if when.tzinfo is not None:
                hints.append(int((when - now).total_seconds()))
        except (TypeError, ValueError, IndexError):
            pass
    positive = [h for h in hints if h > 0]
    return max(positive) if positive else None


def next_interval(feed: Feed, settings: Settings, *, new_entries: int, failed: bool) -> int:
    """The adaptive interval: shorter when polls bring news, longer when they don't,
    exponential backoff on failure (``consecutive_failures`` already counts this one);
    clamped to the floor and ceiling."""
    floor, ceiling = settings.poll_min_interval, settings.poll_max_interval
    current = feed.poll_interval or settings.poll_initial_interval
    if failed:
        backoff = floor * 2 ** min(max(feed.consecutive_failures - 1, 0), 20)
        interval = max(current, backoff)
    elif new_entries > 0:
        interval = int(current / (1.5 if new_entries < 5 else 2.0))
    else:
        interval = int(current * 1.25)
    return int(max(floor, min(ceiling, interval)))


def poll_delay(feed: Feed, interval: int, *, failed: bool, not_before: float | None) -> float:
    """Seconds until the next poll (before jitter): the manual override if the feed has
    one, else the adaptive interval; never sooner than the server allows (ttl,
    sy:updatePeriod, max-age, Expires, Retry-After), and on failure never sooner than
    the backoff, override or not."""
    chosen = float(feed.interval_override or interval)
    if failed:
        chosen = max(chosen, float(interval))
    for hint in (feed.min_interval_hint, not_before):
        if hint:
            chosen = max(chosen, min(float(hint), float(HINT_CAP)))
    return chosen


def _schedule(
    feed: Feed,
    settings: Settings,
    now: datetime,
    interval: int,
    *,
    failed: bool = False,
    not_before: float | None = None,
) -> None:
    feed.poll_interval = interval
    delay = poll_delay(feed, interval, failed=failed, not_before=not_before)
    # Jitter: feeds added or polled together drift apart instead of coming due together.
    jitter = random.uniform(0, settings.poll_jitter * delay)
    feed.next_poll_at = now + timedelta(seconds=delay + jitter)
    feed.lease_until = None


# The history is trimmed back to ``poll_history_size`` rows once every this many polls
# of a feed (when its ``polls_total`` reaches a multiple), and on every deferred poll
# (which does not count in ``polls_total``). So a feed never has more than
# ``poll_history_size + HISTORY_TRIM_EVERY - 1`` rows, and the DELETE costs one poll in
# ten instead of every poll.
HISTORY_TRIM_EVERY = 10

_FEED: Table = Feed.__table__  # type: ignore[attr-defined]
_FEEDPOLL: Table = FeedPoll.__table__  # type: ignore[attr-defined]
_FEED_COLUMNS = tuple(c.key for c in _FEED.columns if c.key != "id")


Loaded = tuple[Feed, dict[str, object]]
"""A feed detached from its session and a copy of its loaded values."""


def _detach(session: Session, feed: Feed) -> Loaded:
    session.expunge(feed)
    return feed, {k: getattr(feed, k) for k in _FEED_COLUMNS}


def _load_feed(session: Session, feed_id: int) -> Loaded | None:
    """The feed, detached from the session (its changes are written by :func:`_finish`
    in one fenced statement, never by an ORM flush), and a copy of its loaded values."""
    feed = session.get(Feed, feed_id)
    if feed is None:
        return None
    return _detach(session, feed)


def load_feeds(session: Session, feed_ids: list[int]) -> dict[int, Loaded]:
    """The feeds of one poll message in one ``SELECT``, each as :func:`_load_feed`
    gives it (a feed not found is left out). Loading them one by one cost a statement
    and an ORM load per poll (issue 16); the lease is still checked by each poll's
    fenced ``UPDATE``, and a poll writes only the columns it changed."""
    if not feed_ids:
        return {}
    feeds = session.execute(select(Feed).where(col(Feed.id).in_(feed_ids))).scalars().all()
    return {feed.id: _detach(session, feed) for feed in feeds if feed.id is not None}


def reads_outside_a_transaction() -> bool:
    """Whether :func:`read_feeds` reads outside a transaction (PostgreSQL)."""
    return get_engine().dialect.name == "postgresql"


def read_feeds(feed_ids: list[int]) -> dict[int, Loaded]:
    """:func:`load_feeds` on a connection of its own, outside a transaction on
    PostgreSQL (``AUTOCOMMIT``: the ``SELECT`` is its own snapshot, as it was as the one
    statement of a transaction). Its ``BEGIN`` and ``COMMIT`` were two of a poll
    message's statements and round trips (issue 16). SQLite: a unit of work, as before.
    Environment errors propagate."""
    if not reads_outside_a_transaction():
        with unit_of_work() as session:
            return load_feeds(session, feed_ids)
    with get_engine().connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        with Session(conn) as session:
            return load_feeds(session, feed_ids)


# Constant statements (the SET clause is made of the parameters' column names): the
# compiled form is found in SQLAlchemy's cache at once, where a statement built with
# its values was built and hashed anew on every poll.
_INSERT_POLL = insert(_FEEDPOLL)
_FENCED_UPDATE = (
    update(_FEED)
    .where(_FEED.c.id == bindparam("fenced_id"))
    .where(_FEED.c.lease_until == bindparam("fenced_lease"))
)


@dataclass
class PollWrite:
    """What one poll writes, built by :func:`_finish`: the feed's changed columns
    (``update``: the parameters of the fenced ``UPDATE``, with ``fenced_id`` and
    ``fenced_lease``), its history row (``poll``), and whether the history is trimmed
    back to ``keep`` rows."""

    feed_id: int
    update: dict[str, Any]
    poll: dict[str, Any]
    trim: bool
    keep: int
    result: PollResult


BATCHED_OUTCOMES = frozenset({"not_modified", "unchanged"})
"""Outcomes whose poll writes nothing but its feed row and its history row: their
writes may be made together with others (:func:`write_polls`)."""


def _finish(
    session: Session,
    feed: Feed,
    loaded: dict[str, object],
    lease: datetime,
    settings: Settings,
    started: float,
    now: datetime,
    result: PollResult,
    status: int | None,
    batch: list[PollWrite] | None = None,
) -> PollResult:
    """Write the poll: the feed's changed columns, fenced by the lease, then its history.

    The UPDATE matches only while ``lease_until`` is still our lease token. On
    PostgreSQL it locks the row and re-reads the newest committed lease, on SQLite it
    runs under the database write lock: a newer claim cannot slip in before our commit.
    No match means the feed was claimed again meanwhile: :class:`LeaseLost`, and the
    caller rolls back everything this poll wrote.

    ``batch``: a poll whose outcome writes nothing else (:data:`BATCHED_OUTCOMES`: a
    304, the same bytes) is not written here but appended to it, for
    :func:`write_polls` to write with the other polls of its message in one
    transaction."""
    feed_id = feed.id or 0
    changes = {k: v for k in _FEED_COLUMNS if (v := getattr(feed, k)) != loaded[k]}
    changes["lease_until"] = feed.lease_until
    write = PollWrite(
        feed_id=feed_id,
        update={**changes, "fenced_id": feed_id, "fenced_lease": lease},
        poll=dict(
            feed_id=feed_id,
            started_at=now,
            duration_ms=int((time.monotonic() - started) * 1000),
            outcome=result.outcome,
            http_status=status,
            entries_seen=result.entries_seen,
            entries_new=len(result.new_article_ids),
            entries_rejected=result.entries_rejected,
            rejected=result.rejected,
            error=result.error,
        ),
        trim=result.outcome == "deferred" or feed.polls_total % HISTORY_TRIM_EVERY == 0,
        keep=settings.poll_history_size,
        result=result,
    )
    if batch is not None and result.outcome in BATCHED_OUTCOMES and not result.new_article_ids:
        batch.append(write)
        return result
    if not _write_feed(session, write):
        raise LeaseLost(f"feed {feed_id}: lease {lease.isoformat()} was replaced")
    session.execute(_INSERT_POLL, write.poll)
    if write.trim:
        _trim_history(session, feed_id, write.keep)
    return result


def _write_feed(session: Session, write: PollWrite) -> bool:
    """The fenced ``UPDATE`` of one poll's feed; whether it matched (the lease held)."""
    updated = session.execute(_FENCED_UPDATE, write.update)
    return int(updated.rowcount) == 1  # type: ignore[attr-defined]


def write_polls(session: Session, writes: list[PollWrite]) -> list[PollWrite]:
    """Write the polls of :data:`BATCHED_OUTCOMES` gathered by :func:`poll_feed`
    (``batch``) in the caller's transaction: each feed's fenced ``UPDATE``, then one
    ``INSERT`` of their history rows, then the trims. Return the writes whose lease
    held; a feed whose lease was replaced meanwhile matched no row, so nothing of its
    poll is written (as :class:`LeaseLost` would have it). Never commits.

    One transaction for a message's 304s instead of one each: a 304 poll cost a
    ``BEGIN``, its ``UPDATE``, its ``INSERT`` and a ``COMMIT`` (issue 16)."""
    if is_postgres(session) and len(writes) > 1:
        held = _write_feeds_together(session, writes)
        done = [w for w in writes if w.feed_id in held]
    else:
        done = [w for w in writes if _write_feed(session, w)]
    if done:
        _insert_history(session, [w.poll for w in done])
    for w in done:
        if w.trim:
            _trim_history(session, w.feed_id, w.keep)
    return done


_FENCE_KEYS = ("fenced_id", "fenced_lease")


def _write_feeds_together(session: Session, writes: list[PollWrite]) -> set[int]:
    """PostgreSQL: the fenced ``UPDATE`` of many polls' feeds as one statement per set
    of changed columns, the ids of the feeds whose lease held::

        UPDATE feed SET <column> = fenced.<column>, ...
        FROM unnest(<ids>, <leases>, <column values>, ...) AS fenced (...)
        WHERE feed.id = fenced.fenced_id AND feed.lease_until = fenced.fenced_lease
        RETURNING feed.id

    Each row is matched, locked and re-checked against its newest committed lease
    exactly as by its own statement, and only the columns a poll changed are written,
    as :func:`_write_feed` does. A message's 304s mostly change the same columns: one
    statement instead of one a feed (issue 16). The values go as one array parameter
    a column, so the statement's text depends on the columns only, not on the number
    of feeds: one SQLAlchemy cache entry and one prepared statement for each set."""
    groups: dict[tuple[str, ...], list[PollWrite]] = {}
    for w in sorted(writes, key=lambda w: w.feed_id):  # rows locked in one order
        keys = tuple(sorted(k for k in w.update if k not in _FENCE_KEYS))
        groups.setdefault(keys, []).append(w)
    held: set[int] = set()
    dialect = session.get_bind().dialect
    for keys, group in groups.items():
        if len(group) == 1:
            if _write_feed(session, group[0]):
                held.add(group[0].feed_id)
            continue
        stmt, processors = _together_statement(keys, dialect)
        params: dict[str, list[Any]] = {}
        for name, process in zip((*_FENCE_KEYS, *keys), processors, strict=True):
            column_values = [w.update[name] for w in group]
            params[name] = [process(v) for v in column_values] if process else column_values
        held.update(int(i) for i in session.execute(stmt, params).scalars())
    return held


_TOGETHER: dict[tuple[str, ...], tuple[Any, list[Any]]] = {}


def _together_statement(keys: tuple[str, ...], dialect: Any) -> tuple[Any, list[Any]]:
    """The statement of :func:`_write_feeds_together` for the columns ``keys``, and the
    bind processor of each parameter (the fence's two, then ``keys``'): built once."""
    got = _TOGETHER.get(keys)
    if got is None:
        columns = {"fenced_id": _FEED.c.id, "fenced_lease": _FEED.c.lease_until}
        columns.update((k, _FEED.c[k]) for k in keys)
        names = list(columns)
        arrays = ", ".join(
            f"CAST(:{n} AS {columns[n].type.compile(dialect=dialect)}[])" for n in names
        )
        sets = ", ".join(f"{k} = fenced.{k}" for k in keys)
        stmt = text(
            f"UPDATE feed SET {sets} FROM unnest({arrays}) AS fenced ({', '.join(names)}) "
            "WHERE feed.id = fenced.fenced_id AND feed.lease_until = fenced.fenced_lease "
            "RETURNING feed.id"
        )
        got = _TOGETHER[keys] = (stmt, [columns[n].type.bind_processor(dialect) for n in names])
    return got


_HISTORY_COLUMNS = (
    "feed_id",
    "started_at",
    "duration_ms",
    "outcome",
    "http_status",
    "entries_seen",
    "entries_new",
    "entries_rejected",
    "rejected",
    "error",
)
_UNNEST: dict[tuple[str, str, tuple[str, ...], str], tuple[Any, list[Any]]] = {}


def _unnest_insert(
    session: Session,
    table: Table,
    names: tuple[str, ...],
    rows: list[dict[str, Any]],
    tail: str = "",
) -> None:
    """PostgreSQL: insert ``rows`` (the columns ``names`` each) with one statement, the
    values as one array parameter a column, in the rows' order::

        INSERT INTO <table> (<names>) SELECT <names> FROM unnest(<one array a column>)
            WITH ORDINALITY AS v (<names>, n) ORDER BY n <tail>

    Its text depends on the columns only, not on the number of rows: one SQLAlchemy
    cache entry and one prepared statement. psycopg's ``executemany`` sends one
    ``INSERT`` a row (pipelined, but each parsed, planned and executed by the server,
    and each row's parameters dumped on its own). ``tail``: e.g. an ``ON CONFLICT``
    clause."""
    dialect = session.get_bind().dialect
    cache_key = (dialect.name, table.name, names, tail)
    got = _UNNEST.get(cache_key)
    if got is None:
        columns = [table.c[n] for n in names]
        arrays = ", ".join(
            f"CAST(:{c.key} AS {c.type.compile(dialect=dialect)}[])" for c in columns
        )
        listed = ", ".join(names)
        stmt = text(
            f"INSERT INTO {table.name} ({listed}) SELECT {listed} FROM unnest({arrays}) "
            f"WITH ORDINALITY AS v ({listed}, n) ORDER BY n{' ' + tail if tail else ''}"
        )
        got = _UNNEST[cache_key] = (stmt, [c.type.bind_processor(dialect) for c in columns])
    stmt, processors = got
    params: dict[str, list[Any]] = {}
    for name, process in zip(names, processors, strict=True):
        values = [row[name] for row in rows]
        params[name] = [process(v) for v in values] if process else values
    session.execute(stmt, params)


def _insert_history(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert the history rows of a message's polls (:data:`_HISTORY_COLUMNS` each).

    PostgreSQL: one statement for all of them (:func:`_unnest_insert`): psycopg's
    ``executemany`` sent one ``INSERT`` a row, a statement a poll (issue 16). SQLite,
    and one row: the plain ``INSERT``."""
    if len(rows) < 2 or not is_postgres(session):
        session.execute(_INSERT_POLL, rows)
        return
    _unnest_insert(session, _FEEDPOLL, _HISTORY_COLUMNS, rows)


def _trim_history(session: Session, feed_id: int, keep_rows: int) -> None:
    """Keep only the newest ``keep_rows`` polls of the feed."""
    keep = (
        select(_FEEDPOLL.c.id)
        .where(_FEEDPOLL.c.feed_id == feed_id)
        .order_by(_FEEDPOLL.c.started_at.desc(), _FEEDPOLL.c.id.desc())
        .limit(keep_rows)
    )
    session.execute(
        delete(_FEEDPOLL).where(
            _FEEDPOLL.c.feed_id == feed_id, _FEEDPOLL.c.id.not_in(keep.scalar_subquery())
        )
    )


def _lease_of(token: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(token)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else None


def poll_feed(
    session: Session,
    feed_id: int,
    token: str,
    http: HttpClient,
    limiter: HostLimiter,
    settings: Settings,
    preloaded: dict[int, Loaded] | None = None,
    batch: list[PollWrite] | None = None,
) -> PollResult:
    """Poll one leased feed once. Never commits.

    ``token`` is the lease token the dispatcher sent with the message. Only the holder
    of the feed's current, unexpired lease polls: a duplicate or a redelivered older
    message does nothing (outcome ``skipped``). Raises :class:`LeaseLost` when the feed
    was claimed again while this poll was on the network; the caller rolls back.
    ``preloaded``: the feeds of the message, read together (:func:`load_feeds`); a feed
    missing from it is gone. The poll then reads nothing before its host slot.
    ``batch``: a poll of :data:`BATCHED_OUTCOMES` leaves its writes there
    (:func:`_finish`), for the caller to make with :func:`write_polls`.
    """
    loaded = _load_feed(session, feed_id) if preloaded is None else preloaded.pop(feed_id, None)
    now = utcnow()
    lease = _lease_of(token)
    if loaded is None or lease is None:
        return PollResult(outcome="skipped")
    feed, before = loaded
    if feed.lease_until is None or feed.lease_until != lease or lease <= now:
        return PollResult(outcome="skipped")

    def finish(result: PollResult, status: int | None) -> PollResult:
        return _finish(session, feed, before, lease, settings, started, now, result, status, batch)

    url = feed.url
    started = time.monotonic()
    status: int | None = None
    host = host_of(url)
    # robots.txt, when it must be downloaded, takes the host's slot (the poll's turn);
    # the poll then waits for the host's next turn, and its task keeps the robots.txt
    # downloaded when it holds the poll or sends it back (keeping, tasks.polls).
    fresh: list[RobotsCopy] = []

    def slot(robots_url: str) -> AbstractContextManager[None]:
        return limiter.slot(host_of(robots_url))

    try:
        if not robots_allows(session, http, url, settings, slot, fresh):
            raise FetchError("robots.txt disallows this feed", transient=False)
        headers: dict[str, str] = {
            "Accept": "application/rss+xml, application/atom+xml, "
            "application/feed+json, application/xml;q=0.9, */*;q=0.8"
        }
        if feed.etag:
            headers["If-None-Match"] = feed.etag
        if feed.last_modified:
            headers["If-Modified-Since"] = feed.last_modified
        try:
            with limiter.slot(host):
                resp = http.get(url, headers)
        except TurnAhead as ahead:
            if fresh:
                raise keeping(ahead, fresh) from ahead
            raise
        status = resp.status
        error = classify_status(resp.status, resp.headers)
        if error is not None:
            if resp.status in (429, 503) and error.retry_after:
                limiter.back_off(host, error.retry_after)
            raise error
    except RobotsUnavailable as exc:
        # The host's robots.txt is down: nothing may be fetched there for now (RFC 9309).
        # A transient failure with its real cause; the feed is polled again at its
        # backoff (``next_poll_at``), not at robots.txt's own 300 s memory. The error is
        # the cause alone: when the next poll comes is worked out where it is shown
        # (``worker.feeds.rows.next_poll``), never stored as text that goes stale.
        down = FetchError(str(exc), transient=True, retry_after=exc.retry_after)
        return finish(_failed(feed, settings, now, down, None), None)
    except HostBusy as exc:
        # Our own per-host limit (or a host's Retry-After) says not now: come back then,
        # without counting it against the feed.
        feed.next_poll_at = now + timedelta(seconds=exc.retry_after + random.uniform(0, 5))
        feed.lease_until = None
        return finish(PollResult(outcome="deferred", error=str(exc)), None)
    except FetchError as exc:
        status = exc.status or status
        return finish(_failed(feed, settings, now, exc, status), status)

    feed.last_attempt_at = now
    feed.polls_total += 1
    hint = _header_hint(resp.headers, now)
    feed.last_status = resp.status
    # A 304 or the same bytes is the document the last successful poll parsed: an
    # ill-formed one's complaint stays. (After failures, ``last_error`` is the failure's.)
    complaint = feed.last_error if feed.consecutive_failures == 0 else None
    if resp.status == 304:
        _record_success(feed, settings, now, 0, hint)
        feed.last_error = complaint
        return finish(PollResult(outcome="not_modified"), status)
    etag, last_modified = resp.headers.get("etag"), resp.headers.get("last-modified")
    body_hash = hashlib.sha256(resp.body).hexdigest()
    if body_hash == feed.body_hash:
        # Same bytes under a fresh ETag: nothing downstream needs to look again.
        feed.etag, feed.last_modified = etag, last_modified
        _record_success(feed, settings, now, 0, hint)
        feed.last_error = complaint
        return finish(PollResult(outcome="unchanged"), status)

    parsed = parse_feed(resp.body, resp.headers.get("content-type", ""), resp.url)
    if not parsed.is_feed:
        not_feed = FetchError(parsed.error or "not a feed", transient=False, status=resp.status)
        feed.polls_total -= 1  # _failed counts the attempt
        return finish(_failed(feed, settings, now, not_feed, status), status)
    # Validators are kept only for a feed: a 304 to a non-feed's would pass as a success.
    feed.etag, feed.last_modified = etag, last_modified
    feed.body_hash = body_hash
    feed.title = feed.title or parsed.title
    feed.site_url = feed.site_url or parsed.site_url
    feed.min_interval_hint = parsed.min_interval_hint
    # The articles are written before the fenced UPDATE of the feed: if the lease turns
    # out to be lost there, the caller's rollback takes them back too.
    screened = screen_entries(parsed, settings.max_entries_per_poll)
    new = record_entries(session, feed, screened.parsed, now)
    new_ids = [article_id for article_id, _ in new]
    result = PollResult(
        outcome="ok",
        new_article_ids=new_ids,
        new_article_hosts=[host for _, host in new],
        entries_seen=len(parsed.entries) + len(parsed.not_web),
        error=parsed.error,
        entries_rejected=screened.rejected,
        rejected=screened.reasons,
    )
    _record_success(feed, settings, now, len(new_ids), hint)
    feed.last_error = parsed.error  # ill-formed but usable: keep the complaint visible
    return finish(result, status)


def record_crash(
    session: Session, feed_id: int, token: str, error: str, settings: Settings
) -> PollResult:
    """A poll of the leased feed raised an error of the item (a bug met by this feed
    only, a statement the database refuses for this document): the poll's own work was
    rolled back; record it as a failed poll, counted against the feed (backoff, then
    dead after ``feed_dead_after``) and shown in its history and ``last_error``, instead
    of leaving the feed to its lease to fail the same way, unseen, every lease. Fenced
    by the lease like :func:`poll_feed` (raises :class:`LeaseLost`). Never commits."""
    loaded = _load_feed(session, feed_id)
    now = utcnow()
    lease = _lease_of(token)
    if loaded is None or lease is None:
        return PollResult(outcome="skipped")
    feed, before = loaded
    if feed.lease_until is None or feed.lease_until != lease:
        return PollResult(outcome="skipped")
    result = _failed(feed, settings, now, FetchError(error, transient=False), None)
    return _finish(session, feed, before, lease, settings, time.monotonic(), now, result, None)


def _failed(
    feed: Feed,
    settings: Settings,
    now: datetime,
    exc: FetchError,
    status: int | None,
) -> PollResult:
    feed.last_attempt_at = now
    feed.polls_total += 1
    _record_failure(feed, settings, now, exc, status)
    return PollResult(outcome="error", error=exc.reason)


@dataclass
class Screened:
    """The entries of a feed document a poll takes (``parsed``), and how many it refused
    (``rejected``) with the reasons in one line (``reasons``)."""

    parsed: ParsedFeed
    rejected: int = 0
    reasons: str | None = None


def screen_entries(parsed: ParsedFeed, limit: int) -> Screened:
    """Refuse, with a reason, the entries a poll must not take: a link that is not an
    absolute http(s) URL (``file:///etc/passwd``, ``javascript:``...), and every entry
    past the first ``limit`` distinct links (``CLAIMWIRE_MAX_ENTRIES_PER_POLL``: one
    feed must not hold a worker for minutes; feeds list their newest entries first, and
    a feed's archive is a backfill's work). Repeats of one link before the limit are
    neither taken twice nor refused; everything after it is refused unexamined."""
    taken: list[Entry] = []
    seen: set[str] = set()
    refused: dict[str, list[str]] = {}  # reason -> first links
    counts: dict[str, int] = {}

    def refuse(reason: str, example: str) -> None:
        counts[reason] = counts.get(reason, 0) + 1
        if len(refused.setdefault(reason, [])) < 2 and example:
            refused[reason].append(example[:120])

    over = f"over the limit of {limit} entries per poll (CLAIMWIRE_MAX_ENTRIES_PER_POLL)"
    for n, entry in enumerate(parsed.entries):
        if len(seen) >= limit:
            # The rest is not looked at (canonicalizing 70,000 links costs seconds):
            # repeats of taken links among it are counted as refused too.
            for rest in parsed.entries[n:]:
                refuse(over, rest.link)
            break
        try:
            h = url_hash(canonicalize(entry.link))
        except InvalidURL as exc:
            refuse(str(exc).split(":", 1)[0], entry.link)
            continue
        if h in seen:
            continue
        seen.add(h)
        taken.append(entry)
    for address in parsed.not_web:  # the parser found no web address for these
        if address:
            refuse("not an absolute http(s) URL", address)
        else:
            refuse("without a link", "")
    if not counts:
        return Screened(parsed)

    def said(reason: str, n: int) -> str:  # "2 not an absolute http(s) URL ('a', 'b', ...)"
        examples = ", ".join(map(repr, refused[reason])) + (
            ", ..." if n > len(refused[reason]) else ""
        )
        return f"{n} {reason} ({examples})" if refused[reason] else f"{n} {reason}"

    reasons = "; ".join(said(reason, n) for reason, n in counts.items())
    return Screened(replace(parsed, entries=taken), sum(counts.values()), reasons[:2000])


# Hashes per ``IN (...)`` when looking up the articles of a poll's entries: far below
# PostgreSQL's 65,535 bind parameters and SQLite's 32,766 per statement.
LOOKUP_CHUNK = 5_000


def record_entries(
    session: Session, feed: Feed, parsed: ParsedFeed, now: datetime
) -> list[tuple[int, str]]:
    """Insert unseen articles (state discovered) and a sighting of every entry; return
    the id and host of each article this call created. Any number of entries: every
    statement binds a bounded number of parameters."""
    rows: dict[str, dict[str, object]] = {}
    links: dict[str, tuple[str, str | None]] = {}
    for entry in parsed.entries:
        try:
            canonical = canonicalize(entry.link)
        except InvalidURL:
            continue
        h = url_hash(canonical)
        if h in rows:
            continue
        links[h] = (entry.link, entry.guid)
        rows[h] = dict(
            url=canonical,
            url_hash=h,
            host=host_of(canonical),
            state=ArticleState.discovered,
            state_changed_at=now,
            discovered_at=now,
            attempts=0,
            entry_title=entry.title,
            entry_published_at=entry.published_at,
            entry_summary=entry.summary,
            entry_content=entry.content,
            categories=[],
            tags=[],
        )
    if not rows:
        return []
    insert_articles, insert_sightings = _entry_inserts(session)
    # The articles the entries already name first: only the others are sent to the
    # INSERT. A changed feed lists mostly entries it listed before (one new of 6 in
    # bench.poll_cycle, a few of 20-50 in a real feed), and each was sent whole
    # (summary, content: 13 columns) to be refused by its conflict, on every change
    # of the feed (issue 16).
    ids = _article_ids(session, list(rows))
    unseen = [row for h, row in rows.items() if h not in ids]
    new: list[tuple[int, str]] = []
    if unseen:
        inserted = session.execute(insert_articles, unseen).all()
        new = [(int(r[0]), str(r[1] or "")) for r in inserted]
        ids.update((str(r[2]), int(r[0])) for r in inserted)
        if len(inserted) < len(unseen):
            # another poll inserted some of them meanwhile (the conflict left them be)
            ids.update(_article_ids(session, [h for h in rows if h not in ids]))
    sightings = [
        dict(
            article_id=ids[h],
            feed_id=feed.id,
            entry_url=links[h][0],
            entry_guid=links[h][1],
            seen_at=now,
        )
        for h in rows
        if h in ids
    ]
    if len(sightings) > 1 and is_postgres(session):
        # one statement for the poll's sightings (an entry already seen in this feed
        # is a conflict, left as it is), where psycopg's executemany sent one a row:
        # a statement an entry of every changed feed (issue 16)
        _unnest_insert(
            session,
            _SIGHTING,
            _SIGHTING_COLUMNS,
            sightings,
            "ON CONFLICT (article_id, feed_id) DO NOTHING",
        )
    elif sightings:
        session.execute(insert_sightings, sightings)
    return new


def _article_ids(session: Session, hashes: list[str]) -> dict[str, int]:
    """The ids of the articles of these URL hashes that exist (or are visible to this
    transaction), by hash; any number of hashes."""
    ids: dict[str, int] = {}
    for i in range(0, len(hashes), LOOKUP_CHUNK):
        chunk = hashes[i : i + LOOKUP_CHUNK]
        found = session.execute(
            select(col(Article.url_hash), col(Article.id)).where(col(Article.url_hash).in_(chunk))
        )
        ids.update((h, i) for h, i in found.all())
    return ids


_ARTICLE: Table = Article.__table__  # type: ignore[attr-defined]
_SIGHTING: Table = Sighting.__table__  # type: ignore[attr-defined]
_ENTRY_INSERTS: dict[str, tuple[Any, Any]] = {}
_SIGHTING_COLUMNS = ("article_id", "feed_id", "entry_url", "entry_guid", "seen_at")


def _entry_inserts(session: Session) -> tuple[Any, Any]:
    """The ``INSERT ... ON CONFLICT DO NOTHING`` of a poll's articles (``RETURNING``
    the id, host and URL hash of those inserted) and of its sightings, built once per dialect and
    executed with the rows as parameters (one executemany each, SQLAlchemy's
    insertmanyvalues; no bind-parameter limit to chunk for). Built with the rows as
    values (``insert_ignore``), each was compiled anew for every poll that brought
    news: 1.9 ms of CPU against 0.8 for the constant statement (issue 16)."""
    dialect = session.get_bind().dialect.name
    got = _ENTRY_INSERTS.get(dialect)
    if got is None:
        from sqlalchemy.dialects import postgresql, sqlite

        dialect_insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        articles = (
            dialect_insert(_ARTICLE)
            .on_conflict_do_nothing(index_elements=["url_hash"])
            .returning(_ARTICLE.c.id, _ARTICLE.c.host, _ARTICLE.c.url_hash)
        )
        sightings = dialect_insert(_SIGHTING).on_conflict_do_nothing(
            index_elements=["article_id", "feed_id"]
        )
        got = _ENTRY_INSERTS[dialect] = (articles, sightings)
    return got


def _record_success(
    feed: Feed, settings: Settings, now: datetime, new: int, hint: int | None
) -> None:
    feed.last_success_at = now
    feed.consecutive_failures = 0
    feed.state = FeedState.active if feed.state != FeedState.paused else feed.state
    feed.last_error = None
    if new:
        feed.last_new_entry_at = now
        feed.entries_new_total += new
    interval = next_interval(feed, settings, new_entries=new, failed=False)
    _schedule(feed, settings, now, interval, not_before=hint)


def _record_failure(
    feed: Feed, settings: Settings, now: datetime, exc: FetchError, status: int | None
) -> None:
    """Count the failure (transient or permanent), back off, mark the feed failing, and
    dead after ``feed_dead_after`` failures in a row. A dead feed is still polled, at
    the backed-off interval, so it comes back by itself when the site does."""
    feed.consecutive_failures += 1
    if exc.transient:
        feed.transient_failures += 1
    else:
        feed.permanent_failures += 1
    feed.last_error = exc.reason
    feed.last_status = status
    if feed.state != FeedState.paused:
        dead = feed.consecutive_failures >= settings.feed_dead_after
        feed.state = FeedState.dead if dead else FeedState.failing
    interval = next_interval(feed, settings, new_entries=0, failed=True)
    _schedule(feed, settings, now, interval, failed=True, not_before=exc.retry_after)


def make_due(session: Session, feed_ids: list[int] | None) -> int:
    """Make feeds due now (all when ``feed_ids`` is None); dead feeds get another chance."""
    now = utcnow()
    stmt = update(Feed).values(next_poll_at=now)
    if feed_ids is not None:
        stmt = stmt.where(col(Feed.id).in_(feed_ids))
    return int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


__all__ = [
    "HINT_CAP",
    "HISTORY_TRIM_EVERY",
    "Lease",
    "LeaseLost",
    "PollResult",
    "PollWrite",
    "claim_due_feeds",
    "count_due",
    "due",
    "lease_token",
    "load_feeds",
    "make_due",
    "next_interval",
    "parse_retry_after",
    "poll_delay",
    "poll_feed",
    "read_feeds",
    "reads_outside_a_transaction",
    "record_crash",
    "record_entries",
    "screen_entries",
    "send_fetches",
    "write_polls",
]


def poll_messages(leases: list[Lease], per_message: int) -> list[list[list[Any]]]:
    """Split claimed feeds into the arguments of at most ``per_message`` feeds each.
    Message ``j`` of ``n`` takes feeds ``j, j + n, j + 2n, ...``: feeds next to each
    other in the claim order (often of one host, or added together) go to different
    messages, so one host's politeness interval does not make a single worker thread
    wait for it over and over."""
    per_message = max(1, per_message)
    n = -(-len(leases) // per_message)
    return [[[feed_id, token] for feed_id, token in leases[j::n]] for j in range(n)]


def release_leases(session: Session, leases: list[Lease]) -> None:
    """Give back claimed feeds whose poll messages may not have been queued, so that the
    next dispatcher run claims them again instead of waiting ``poll_lease_seconds`` for
    the leases to run out. A message that did reach the broker carries the old lease
    token and does nothing; a poll already running loses its lease and rolls back (or,
    if it committed first, the feed is no longer due)."""
    session.execute(
        update(Feed)
        .where(col(Feed.id).in_([feed_id for feed_id, _ in leases]))
        .values(lease_until=None)
    )


# ------------------------------------------------------------------ new articles' fetches


AHEAD_AT_MOST = 3
"""A poll's new articles go ahead of their host's waiting polls
(:func:`worker.network.politeness.reserve_ahead`) when it brought at most this many: the
news of a live poll. A poll that brought more (a first poll, a feed back after an
outage) queues their fetches at the end of the host's line, as before: each fetch that
goes ahead sends a poll to the end of the line, and that poll's message back for its
new turn, so 40 feeds of one host bringing 5 each would push their own polls back by
200 turns."""


def send_fetches(
    session: Session,
    articles: list[tuple[int, str]],
    limiter: HostLimiter,
    settings: Settings,
    task: str,
) -> None:
    """Record the fetch message (``task``) of each new article ``(id, host)``, sent once
    ``session`` commits and held back by the broker until the article's turn on its
    host's timeline, reserved now (under the fetch's key; one round trip on Redis for
    all of them): ahead of the host's waiting polls when the poll brought at most
    :data:`AHEAD_AT_MOST` (:func:`worker.network.politeness.reserve_ahead`: the next
    poll turn a second or more ahead, whose poll goes to the end of the line), else at
    the end of the line; the message is due a moment before the turn (``TURN_LEAD``). The articles'
    sweep marks move to their turns in the same transaction (one statement), as a fetch
    sent back for its turn holds its own.

    The turn of a new article is known when its poll commits: sent at once, each fetch
    of a feed's new articles was delivered, looked at its host, found its turn ahead
    and was sent back for it, a message and a write transaction for nothing (most
    fetches of a first poll; issue 16). Now a fetch comes once, at its turn. A turn
    reserved for a poll that then rolls back is an unused place on the host's timeline,
    as a lost message's is (the articles do not exist: nothing is sent for them)."""
    if not articles:
        return
    from worker.core.queues import max_countdown
    from worker.network.politeness import reserve_ahead, reserve_turns, turn_countdown
    from worker.pages.fetch import turn_key
    from worker.pipeline.attempts import HELD, held, hold_sweeps

    hosted = [(article_id, host) for article_id, host in articles if host]
    items = [(host, turn_key(article_id)) for article_id, host in hosted]
    # a live poll's few new articles go ahead of the host's waiting polls; a poll that
    # brought a backlog (a first poll) queues its fetches at the end of the line
    reserve = reserve_ahead if len(items) <= AHEAD_AT_MOST else reserve_turns
    waits = dict(
        zip([article_id for article_id, _ in hosted], reserve(limiter, items), strict=True)
    )
    now = utcnow()
    cap = max_countdown(settings)
    holds: dict[int, datetime] = {}
    in_process: list[tuple[float, int]] = []
    for article_id, _host in articles:
        countdown = turn_countdown(waits.get(article_id, 0.0))
        if countdown > 0:
            holds[article_id] = now + timedelta(seconds=countdown)
        if held(min(countdown, cap)):  # the embedded run: sent at its turn (HeldSends)
            in_process.append((min(countdown, cap), article_id))
            continue
        outbox.send_after_commit(
            session, task, article_id, countdown=min(countdown, cap) if countdown > 0 else None
        )
    hold_sweeps(session, holds)
    if in_process:
        read_at = time.monotonic()

        def hold_them(_session: Session) -> None:
            # from the commit: a message is due its countdown after the turns were read
            late = time.monotonic() - read_at
            for countdown, article_id in in_process:
                HELD.hold(countdown - late, partial(_send_fetch, task, article_id))

        event.listen(session, "after_commit", hold_them, once=True)


def _send_fetch(task: str, article_id: int, countdown: float | None) -> None:
    """Send an article's fetch message held until its turn (``send_fetches``)."""
    outbox.deliver([outbox.Message(task, (article_id,), countdown)])


# ------------------------------------------------------------------ dispatch by host turns


def turn_key(feed_id: int) -> str:
    """The key of a feed's poll turn on its host's timeline."""
    return f"feed:{feed_id}"


def feed_hosts(session: Session, feed_ids: list[int]) -> dict[int, str]:
    """The host of each feed (the key of its host's timeline)."""
    if not feed_ids:
        return {}
    rows = session.execute(select(col(Feed.id), col(Feed.url)).where(col(Feed.id).in_(feed_ids)))
    out: dict[int, str] = {}
    for feed_id, url in rows:
        try:
            out[int(feed_id)] = host_of(url)
        except (InvalidURL, ValueError):
            out[int(feed_id)] = ""
    return out


TURN_BUCKET = 0.25
"""Seconds of turns one poll message may cover: the feeds of a message have their turns
within this much of each other, spread over it (:func:`plan_polls`), and the message is
held back until the first of them."""


@dataclass
class PollPlan:
    """The dispatcher's plan for claimed feeds: poll messages (``countdown`` seconds
    ahead, the turns of their feeds' hosts) and the feeds whose turn is too far ahead to
    hold a lease for (given back, due again ``later[feed_id]`` seconds from now)."""

    messages: list[tuple[float, list[list[Any]]]] = field(default_factory=list)
    later: dict[int, float] = field(default_factory=dict)


def plan_polls(
    leases: list[Lease],
    hosts: dict[int, str],
    limiter: HostLimiter,
    settings: Settings,
    *,
    horizon: float | None = None,
) -> PollPlan:
    """Reserve each claimed feed's turn on its host's timeline
    (:func:`worker.network.politeness.reserve_turns`; a feed that has a turn keeps it)
    and group the feeds into poll messages by turn: feeds whose turns fall within
    :data:`TURN_BUCKET` of each other share messages (``per_message`` at most, of
    different hosts), each message held back until the first turn it carries. A
    bucket's ``n`` messages take its feeds in turn order by stride (message ``j`` the
    ``j``-th, ``j + n``-th, ... turn), so a message's turns are spread over the bucket
    and its thread, which polls them one after another, meets each at its turn rather
    than all at once, late by the polls before it. So 40 feeds of one host go out for
    40 different seconds and no poll waits for its host in a worker thread, while the
    feeds of other hosts go at once (many free hosts' first turns spread over one
    interval: :func:`spread_first_turns`). A feed whose turn is further ahead than ``horizon``
    (half the poll lease by default: the lease must outlive the wait) is not sent: it
    goes to ``later``, to be claimed again when its turn is near (it keeps its turn)."""
    from worker.network.politeness import reserve_turns, turn_countdown, turn_spacing

    horizon = settings.poll_lease_seconds / 2 if horizon is None else horizon
    plan = PollPlan()
    if not leases:
        return plan
    items = [(hosts.get(x.feed_id, ""), turn_key(x.feed_id)) for x in leases]
    waits = reserve_turns(limiter, items, spread_first_turns(items, turn_spacing(settings)))
    buckets: dict[int, list[tuple[float, Lease]]] = {}
    for lease, wait in zip(leases, waits, strict=True):
        if wait > horizon:
            plan.later[lease.feed_id] = wait
            continue
        buckets.setdefault(max(0, int(wait // TURN_BUCKET)), []).append((wait, lease))
    per_message = max(1, settings.poll_feeds_per_message)
    for index in sorted(buckets):
        # In turn order, dealt to the bucket's messages by stride (a bucket is shorter
        # than a host's interval: one host's feeds never share a message). A message of
        # consecutive turns (within a few milliseconds at 256 hosts) was due at its last
        # turn and its thread polled them one after another: its k-th feed started k
        # polls late, which moved the host's next turn (held or sent back, late again:
        # a host's lateness adds up, the cycle's tail; issue 16). Spread over the
        # bucket, the k-th turn comes about k polls' time after the first.
        members = sorted(buckets[index], key=lambda m: m[0])
        n = -(-len(members) // per_message)
        for j in range(n):
            chunk = members[j::n]
            # due a moment before the first turn it carries (TURN_LEAD): its thread
            # waits the rest in the limiter
            countdown = turn_countdown(chunk[0][0])
            plan.messages.append((countdown, [[x.feed_id, x.token] for _, x in chunk]))
    return plan


SPREAD_FROM_HOSTS = 16
"""A plan that starts more hosts' lines than this spreads their first turns over one
turn spacing (:func:`spread_first_turns`)."""


def spread_first_turns(items: list[tuple[str, str]], spacing: float) -> list[float]:
    """The soonest each item's turn may be, in seconds from now: the distinct hosts of
    the plan, in order, spread evenly over one ``spacing`` once there are more than
    :data:`SPREAD_FROM_HOSTS` of them (0 for all, else). A host whose line already runs
    further ahead keeps it; only a free host's first turn (and so its whole line) is
    moved, by less than one interval: never sooner than politeness allows.

    Without it, 256 free hosts got their first turns at the same instant, and their
    later turns too: every second a burst of 256 polls, which two cores start over
    0.6 s or more. The last ones started late, which moved their hosts' next turns, and
    each such poll was sent back for its moved turn (17% of the polls at 10,240 feeds,
    issue 16)."""
    order: dict[str, int] = {}
    for host, _ in items:
        order.setdefault(host, len(order))
    if len(order) <= SPREAD_FROM_HOSTS:
        return [0.0] * len(items)
    step = spacing / len(order)
    return [order[host] * step for host, _ in items]


def defer_feeds(session: Session, later: dict[int, float], now: datetime | None = None) -> None:
    """Give back claimed feeds whose host turn is far ahead: their lease is cleared and
    they are due again a little before their turn (which they keep)."""
    now = now or utcnow()
    lead = 2 * TURN_BUCKET
    for feed_id, wait in later.items():
        session.execute(
            update(Feed)
            .where(col(Feed.id) == feed_id)
            .values(lease_until=None, next_poll_at=now + timedelta(seconds=max(0.0, wait - lead)))
        )
