"""Backfills: discovering the articles of the past, one page at a time, resumably.

Sources:

* a feed's own history: RFC 5005 archives (``rel="prev-archive"``) and paged feeds
  (``rel="next"``), in Atom or in RSS with ``atom:link``; without such links,
  WordPress-style ``?paged=N``. Pages are read from the newest back until one reaches
  back before ``since`` (the pages behind it are older still) or the pages run out;
* sitemaps: robots.txt ``Sitemap:`` lines, sitemap indexes (children whose
  ``lastmod`` is older than ``since`` are not read), URL sets and news sitemaps
  (``news:publication_date``), filtered by date;
* a list of URLs (a file, stdin, or a Celery call).

Discovery keeps its cursor in the job's params, and every page is one unit of work
(fetch, parse, record articles and items, move the cursor): after a crash it resumes
at the page it was reading. Every URL goes through the same canonicalization, robots,
politeness, dedup and claim steps as live polling; feed entries are recorded with
``worker.feeds.polling.record_entries`` itself (sightings included).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import feedparser
from sqlmodel import Session, col, select

from schemas.models import Article, ArticleState, Feed, Job, JobState
from schemas.types import utcnow
from worker.core.db import insert_ignore
from worker.core.settings import Settings
from worker.feeds.parsing import Entry, ParsedFeed, parse_feed
from worker.feeds.polling import record_entries
from worker.jobs import lifecycle
from worker.jobs.sitemaps import (
    SitemapError,
    in_range,
    parse_sitemap,
    parse_w3c_date,
    robots_sitemaps,
)
from worker.network.http import FetchError, HttpClient, classify_status
from worker.network.politeness import HostBusy, HostLimiter
from worker.network.robots import RobotsCopy, keeping, robots_allows
from worker.network.urls import InvalidURL, canonicalize, host_of, origin_of, url_hash

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, */*;q=0.8"
)
SITEMAP_ACCEPT = "application/xml, text/xml;q=0.9, text/plain;q=0.5, */*;q=0.1"
MAX_PAGE_ERRORS = 3  # transient failures of one page before discovery moves on
ROBOTS_PREFIX = "robots:"


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _dt(value: Any) -> datetime | None:
    return parse_w3c_date(value) if isinstance(value, str) else None


# ------------------------------------------------------------------------- creation


def create_feed_job(
    session: Session,
    feed_ids: list[int],
    since: datetime | None,
    until: datetime | None,
    *,
    include_undated: bool = False,
) -> Job:
    return lifecycle.create_job(
        session,
        lifecycle.KIND_FEED,
        {
            "feeds": feed_ids,
            "since": _iso(since),
            "until": _iso(until),
            "include_undated": include_undated,
            "cursor": {"i": 0, "url": None, "page": 0, "mode": "auto", "seen": []},
            "pages": 0,
            "page_errors": 0,
        },
    )


def create_sitemap_job(
    session: Session,
    url: str,
    since: datetime | None,
    until: datetime | None,
    *,
    include_undated: bool = False,
) -> Job:
    canonicalize(url)  # raises InvalidURL for anything we cannot fetch
    parts = urlsplit(url)
    if parts.path in ("", "/", "/robots.txt"):
        start = ROBOTS_PREFIX + origin_of(url) + "/robots.txt"
    else:
        start = url.strip()
    return lifecycle.create_job(
        session,
        lifecycle.KIND_SITEMAP,
        {
            "url": url.strip(),
            "since": _iso(since),
            "until": _iso(until),
            "include_undated": include_undated,
            "queue": [start],
            "seen": [],
            "pages": 0,
            "page_errors": 0,
        },
    )


@dataclass
class UrlsJob:
    job: Job
    added: int
    invalid: list[str]


def create_urls_job(session: Session, urls: list[str], settings: Settings) -> UrlsJob:
    """A job over a given list of URLs: its items exist at once (no discovery)."""
    job = lifecycle.create_job(session, lifecycle.KIND_URLS, {"count": 0})
    assert job.id is not None
    invalid: list[str] = []
    added = 0
    batch: list[tuple[str, datetime | None, str | None]] = []
    for raw in urls:
        url = raw.strip()
        if not url or url.startswith("#"):
            continue
        try:
            canonicalize(url)
        except InvalidURL:
            invalid.append(url)
            continue
        batch.append((url, None, None))
        if len(batch) >= 1000:
            added += lifecycle.add_items(
                session, job.id, insert_articles(session, batch), settings.backfill_max_urls
            )
            batch = []
    if batch:
        added += lifecycle.add_items(
            session, job.id, insert_articles(session, batch), settings.backfill_max_urls
        )
    lifecycle.set_params(job, count=added, invalid=len(invalid))
    lifecycle.finish_discovery(job)
    return UrlsJob(job, added, invalid)


def insert_articles(
    session: Session, entries: list[tuple[str, datetime | None, str | None]]
) -> list[int]:
    """Articles for (url, date, title) not yet known (state discovered); returns the ids
    of all of them, new or not, in order, invalid URLs left out."""
    now = utcnow()
    rows: dict[str, dict[str, object]] = {}
    for url, date, title in entries:
        try:
            canonical = canonicalize(url)
        except InvalidURL:
            continue
        h = url_hash(canonical)
        rows.setdefault(
            h,
            dict(
                url=canonical,
                url_hash=h,
                host=host_of(canonical),
                state=ArticleState.discovered,
                state_changed_at=now,
                discovered_at=now,
                attempts=0,
                entry_title=title,
                entry_published_at=date,
                categories=[],
                tags=[],
            ),
        )
    if not rows:
        return []
    insert_ignore(session, Article, list(rows.values()), ["url_hash"])
    ids = dict(
        session.execute(
            select(Article.url_hash, Article.id).where(col(Article.url_hash).in_(list(rows)))
        ).all()
    )
    return [int(ids[h]) for h in rows if ids.get(h) is not None]


# ------------------------------------------------------------------------ discovery


@dataclass
class DiscoveryStep:
    more: bool  # call again for the next page
    added: int = 0
    retry_after: float | None = None  # a transient error: call again after this long


def discover_step(
    session: Session, job_id: int, http: HttpClient, limiter: HostLimiter, settings: Settings
) -> DiscoveryStep:
    """Read the job's next page (archive page, sitemap), record what it lists, move the
    cursor. Never commits. ``HostBusy`` propagates (nothing is recorded)."""
    if not lifecycle.discovery_lock(session, job_id):
        return DiscoveryStep(more=False)  # this job's discovery runs elsewhere right now
    job = session.get(Job, job_id)
    if job is None or job.state != JobState.running or job.params.get("discovery_done"):
        return DiscoveryStep(more=False)
    if int(job.params.get("pages", 0)) >= settings.backfill_max_pages:
        lifecycle.finish_discovery(job, f"stopped after {settings.backfill_max_pages} pages")
        return DiscoveryStep(more=False)
    assert job.id is not None
    if lifecycle.item_count(session, job.id) >= settings.backfill_max_urls:
        lifecycle.finish_discovery(job, f"stopped at {settings.backfill_max_urls} articles")
        return DiscoveryStep(more=False)
    if job.kind == lifecycle.KIND_FEED:
        return _feed_step(session, job, http, limiter, settings)
    if job.kind == lifecycle.KIND_SITEMAP:
        return _sitemap_step(session, job, http, limiter, settings)
    lifecycle.finish_discovery(job)
    return DiscoveryStep(more=False)


def _get(
    session: Session, http: HttpClient, limiter: HostLimiter, url: str, accept: str, s: Settings
) -> tuple[int, bytes, str, str]:
    """(status, body, content type, final URL); robots and host limits respected.
    robots.txt, when it must be downloaded, takes the host's slot; the page then waits
    for the host's next turn (``HostBusy``), which carries the robots.txt downloaded
    for the discovery task to keep (``worker.jobs.work.discover``)."""
    host = host_of(url)
    fresh: list[RobotsCopy] = []
    if not robots_allows(session, http, url, s, lambda u: limiter.slot(host_of(u)), fresh):
        raise FetchError("robots.txt disallows this URL", transient=False)
    try:
        with limiter.slot(host):
            resp = http.get(url, {"Accept": accept})
    except HostBusy as busy:
        if fresh:
            raise keeping(busy, fresh) from busy
        raise
    error = classify_status(resp.status, resp.headers)
    if error is not None:
        if resp.status in (429, 503) and error.retry_after:
            limiter.back_off(host, error.retry_after)
        raise error
    return resp.status, resp.body, resp.headers.get("content-type", ""), resp.url


def _transient(job: Job, url: str, exc: FetchError) -> DiscoveryStep | None:
    """Count a transient failure of the current page; None once it has failed too often
    (the caller then moves on as for a permanent error)."""
    errors = int(job.params.get("page_errors", 0)) + 1
    if errors < MAX_PAGE_ERRORS:
        lifecycle.set_params(job, page_errors=errors)
        job.last_error = f"{url}: {exc.reason} (will retry)"
        return DiscoveryStep(more=True, retry_after=exc.retry_after or 5.0 * 2**errors)
    return None


# ----------------------------------------------------------------------- feed archives


def paging_links(body: bytes, content_type: str, base_url: str) -> dict[str, str]:
    """``rel`` -> URL of a feed document's RFC 5005 links (prev-archive, next, ...)."""
    headers = {"content-type": content_type, "content-location": base_url}
    d = feedparser.parse(body, response_headers=headers)
    found: dict[str, str] = {}
    for link in d.feed.get("links", []) or []:
        rel, href = link.get("rel"), link.get("href")
        if rel and href and rel not in found:
            found[str(rel)] = str(href)
    return found


def with_paged(url: str, page: int) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "paged"]
    query.append(("paged", str(page)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _next_feed(job: Job, cursor: dict[str, Any], error: str | None = None) -> DiscoveryStep:
    cursor = {"i": int(cursor["i"]) + 1, "url": None, "page": 0, "mode": "auto", "seen": []}
    lifecycle.set_params(job, cursor=cursor, page_errors=0)
    if error:
        job.last_error = error[:2000]
    if cursor["i"] >= len(job.params.get("feeds", [])):
        lifecycle.finish_discovery(job)
        return DiscoveryStep(more=False)
    return DiscoveryStep(more=True)


def _feed_step(
    session: Session, job: Job, http: HttpClient, limiter: HostLimiter, settings: Settings
) -> DiscoveryStep:
    assert job.id is not None
    feed_ids: list[int] = list(job.params.get("feeds", []))
    cursor: dict[str, Any] = dict(job.params.get("cursor") or {})
    i = int(cursor.get("i", 0))
    if i >= len(feed_ids):
        lifecycle.finish_discovery(job)
        return DiscoveryStep(more=False)
    feed = session.get(Feed, feed_ids[i])
    if feed is None:
        return _next_feed(job, cursor, f"feed {feed_ids[i]} no longer exists")
    page = int(cursor.get("page", 0))
    url = cursor.get("url") or feed.url
    mode = str(cursor.get("mode", "auto"))
    try:
        _status, body, ctype, final_url = _get(session, http, limiter, url, FEED_ACCEPT, settings)
    except FetchError as exc:
        if exc.transient and (step := _transient(job, url, exc)) is not None:
            return step
        if page > 0 and mode == "paged" and exc.status in (400, 404, 410):
            return _next_feed(job, cursor)  # ?paged=N past the last page
        return _next_feed(job, cursor, f"feed {feed.id} page {page + 1} ({url}): {exc.reason}")
    parsed = parse_feed(body, ctype, final_url)
    if not parsed.is_feed:
        if page > 0 and mode == "paged":
            return _next_feed(job, cursor)
        return _next_feed(job, cursor, f"feed {feed.id} ({url}): {parsed.error or 'not a feed'}")
    since, until = _dt(job.params.get("since")), _dt(job.params.get("until"))
    undated = bool(job.params.get("include_undated"))
    kept = [
        e for e in parsed.entries if in_range(e.published_at, since, until, include_undated=undated)
    ]
    added = _record_feed_entries(session, job.id, feed, kept, settings)
    lifecycle.set_params(job, pages=int(job.params.get("pages", 0)) + 1, page_errors=0)

    seen: list[str] = [*cursor.get("seen", []), url]
    dated = [e.published_at for e in parsed.entries if e.published_at is not None]
    reached_since = bool(since and dated and min(dated) < since)  # older pages: older still
    links = paging_links(body, ctype, final_url)
    if mode == "auto":
        mode = "links" if ("prev-archive" in links or "next" in links) else "paged"
    next_url: str | None
    if mode == "links":
        next_url = links.get("prev-archive") or links.get("next")
    else:
        first = parsed.entries[0].link if parsed.entries else None
        same_as_before = first is not None and first == cursor.get("first")
        next_url = None if same_as_before else with_paged(feed.url, page + 2)
        cursor["first"] = first
    if not parsed.entries or reached_since or not next_url or next_url in seen:
        return _next_feed(job, cursor)
    cursor.update(url=next_url, page=page + 1, mode=mode, seen=seen[-settings.backfill_max_pages :])
    lifecycle.set_params(job, cursor=cursor)
    return DiscoveryStep(more=True, added=added)


def _record_feed_entries(
    session: Session, job_id: int, feed: Feed, entries: list[Entry], settings: Settings
) -> int:
    if not entries:
        return 0
    record_entries(session, feed, ParsedFeed(entries=entries), utcnow())
    hashes: list[str] = []
    for e in entries:
        try:
            hashes.append(url_hash(canonicalize(e.link)))
        except InvalidURL:
            continue
    ids = dict(
        session.execute(
            select(Article.url_hash, Article.id).where(col(Article.url_hash).in_(hashes))
        ).all()
    )
    ordered = [int(ids[h]) for h in dict.fromkeys(hashes) if ids.get(h) is not None]
    return lifecycle.add_items(session, job_id, ordered, settings.backfill_max_urls)


# ---------------------------------------------------------------------------- sitemaps


def _sitemap_step(
    session: Session, job: Job, http: HttpClient, limiter: HostLimiter, settings: Settings
) -> DiscoveryStep:
    assert job.id is not None
    queue: list[str] = list(job.params.get("queue", []))
    seen: list[str] = list(job.params.get("seen", []))
    if not queue:
        lifecycle.finish_discovery(job)
        return DiscoveryStep(more=False)
    current = queue[0]
    rest = queue[1:]
    since, until = _dt(job.params.get("since")), _dt(job.params.get("until"))
    undated = bool(job.params.get("include_undated"))

    def move_on(error: str | None = None, more: list[str] | None = None) -> DiscoveryStep:
        new = [u for u in (more or []) if u not in seen and u not in rest and u != current]
        lifecycle.set_params(
            job,
            queue=rest + new,
            seen=[*seen, current],
            pages=int(job.params.get("pages", 0)) + 1,
            page_errors=0,
        )
        if error:
            job.last_error = error[:2000]
        if not rest and not new:
            lifecycle.finish_discovery(job)
            return DiscoveryStep(more=False)
        return DiscoveryStep(more=True)

    if current.startswith(ROBOTS_PREFIX):
        robots_url = current[len(ROBOTS_PREFIX) :]
        try:
            with limiter.slot(host_of(robots_url)):
                resp = http.get(robots_url, max_bytes=500_000)
        except FetchError as exc:
            if exc.transient and (step := _transient(job, robots_url, exc)) is not None:
                return step
            resp = None
        listed: list[str] = []
        if resp is not None and resp.status < 400:
            listed = robots_sitemaps(resp.body.decode("utf-8", errors="replace"), robots_url)
        if not listed:
            listed = [origin_of(robots_url) + "/sitemap.xml"]
        return move_on(more=listed)

    try:
        _s, body, _ct, final_url = _get(session, http, limiter, current, SITEMAP_ACCEPT, settings)
        doc = parse_sitemap(body, final_url, settings.max_response_bytes)
    except FetchError as exc:
        if exc.transient and (step := _transient(job, current, exc)) is not None:
            return step
        return move_on(f"sitemap {current}: {exc.reason}")
    except SitemapError as exc:
        return move_on(f"sitemap {current}: {exc}")
    if doc.kind == "index":
        children = [
            c.loc for c in doc.sitemaps if c.date is None or since is None or c.date >= since
        ]
        return move_on(more=children)
    kept = [
        (u.loc, u.date, u.title)
        for u in doc.urls
        if in_range(u.date, since, until, include_undated=undated)
    ]
    added = lifecycle.add_items(
        session, job.id, insert_articles(session, kept), settings.backfill_max_urls
    )
    step = move_on(f"sitemap {current}: truncated at 50000 URLs" if doc.truncated else None)
    step.added = added
    return step


__all__ = [
    "DiscoveryStep",
    "UrlsJob",
    "create_feed_job",
    "create_sitemap_job",
    "create_urls_job",
    "discover_step",
    "insert_articles",
    "paging_links",
    "with_paged",
]
