"""Feed management: add, find, remove, list with health, manual intervals, discovery."""

from __future__ import annotations

import codecs
import random
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from sqlmodel import Session, col, select

from schemas.models import Feed, FeedState
from schemas.types import utcnow
from worker.core.db import insert_ignore
from worker.core.settings import Settings
from worker.feeds.parsing import parse_feed
from worker.feeds.rows import feed_row as feed_row
from worker.feeds.rows import new_entries_per_day as new_entries_per_day
from worker.network.http import FetchError, HttpClient, Response, classify_status
from worker.network.politeness import HostBusy, HostLimiter
from worker.network.robots import robots_allows
from worker.network.urls import InvalidURL, canonicalize, host_of, origin_of


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
    new = set(added)
    return AddResult(added=added, existing=[u for u in rows if u not in new])


def find_feed(session: Session, ref: str) -> Feed:
    """A feed by id (digits) or by URL, as given or canonicalized."""
    ref = ref.strip()
    feed: Feed | None = None
    if ref.isdigit():
        feed = session.get(Feed, int(ref)) if int(ref) < 2**63 else None
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


# ------------------------------------------------------------------ manual settings

MIN_OVERRIDE = 60


def parse_interval(text: str) -> int | None:
    """``auto`` (None: adaptive again), seconds, or a number with s/m/h/d."""
    t = text.strip().lower()
    if t in ("auto", "adaptive", "none", "off"):
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    factor = units.get(t[-1:], 0)
    number = t[:-1] if factor else t
    factor = factor or 1
    if not number.isdigit():
        raise ValueError(f"not an interval: {text!r} (use e.g. 900, 15m, 2h, 1d or auto)")
    seconds = int(number) * factor
    if seconds < MIN_OVERRIDE:
        raise ValueError(f"interval {text!r} is shorter than {MIN_OVERRIDE} seconds")
    return seconds


def set_interval(session: Session, feed: Feed, seconds: int | None) -> None:
    """Fix the feed's poll interval (``None``: adaptive again). A shorter interval takes
    effect at once; hints from the server (ttl, Retry-After, ...) still apply."""
    feed.interval_override = seconds
    if seconds is not None:
        soonest = utcnow() + timedelta(seconds=seconds)
        if feed.next_poll_at > soonest:
            feed.next_poll_at = soonest
    session.add(feed)


def set_paused(session: Session, feed: Feed, paused: bool) -> None:
    """Pause a feed (never polled until resumed) or resume it (due at once)."""
    if paused:
        feed.state = FeedState.paused
    elif feed.state == FeedState.paused:
        feed.state = FeedState.active
        feed.next_poll_at = utcnow()
    session.add(feed)


# ------------------------------------------------------------------------ discovery

# Where sites commonly keep their feeds, tried when the page links none.
COMMON_FEED_PATHS = (
    "/feed",
    "/rss",
    "/feed.xml",
    "/rss.xml",
    "/atom.xml",
    "/index.xml",
    "/feed.json",
    "/?feed=rss2",
    "/feeds/posts/default",
)
MAX_CANDIDATES = 12


@dataclass
class Discovered:
    url: str
    title: str | None
    entries: int
    found_by: str  # "given", "link", "path"


def discover_feeds(
    session: Session,
    http: HttpClient,
    limiter: HostLimiter,
    site_url: str,
    settings: Settings,
) -> list[Discovered]:
    """Feeds of a site: the URL itself if it is a feed, else the feeds its page links
    (``<link rel="alternate">``, then feed-like ``<a>`` links, through trafilatura's
    feed finder), else whichever common feed paths answer with a feed. Each candidate
    is fetched (robots.txt and host limits honoured) and kept only if it parses as a
    feed. Raises FetchError when the page itself cannot be fetched."""
    from trafilatura.feeds import FeedParameters, determine_feed

    site_url = canonicalize(site_url)
    resp = _get_politely(session, http, limiter, site_url, settings)
    parsed = parse_feed(resp.body, resp.headers.get("content-type", ""), resp.url)
    if parsed.is_feed and (parsed.entries or parsed.title):
        return [Discovered(canonicalize(resp.url), parsed.title, len(parsed.entries), "given")]
    origin = origin_of(resp.url)
    html = resp.body.decode(_charset(resp.headers.get("content-type", "")), errors="replace")
    params = FeedParameters(origin, host_of(resp.url), resp.url)
    linked = [(u, "link") for u in determine_feed(html, params)]
    guessed = [(origin + p, "path") for p in COMMON_FEED_PATHS]
    found: dict[str, Discovered] = {}
    for batch in (linked, guessed):
        for url, how in batch[:MAX_CANDIDATES]:
            try:
                canonical = canonicalize(url)
            except InvalidURL:
                continue
            if canonical in found:
                continue
            try:
                cand = _get_politely(session, http, limiter, canonical, settings)
            except (FetchError, HostBusy):
                continue
            feed = parse_feed(cand.body, cand.headers.get("content-type", ""), cand.url)
            if feed.is_feed and (feed.entries or feed.title):
                final = canonicalize(cand.url)
                found.setdefault(final, Discovered(final, feed.title, len(feed.entries), how))
        if found:
            break  # common paths only when the page links no feed
    return list(found.values())


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            try:
                codecs.lookup(value.strip("\"' "))
                return value.strip("\"' ")
            except LookupError:
                break
    return "utf-8"


DISCOVER_WAIT = 30.0
"""Seconds ``feeds discover`` waits, in all, for one request's turn on its host."""


@contextmanager
def _waiting_slot(limiter: HostLimiter, url: str) -> Iterator[None]:
    """The slot of ``url``'s host, waited for: ``feeds discover`` is a command, not a
    worker thread with other hosts' work to do, so it waits for the host's next free
    place (robots.txt, the site's page and each candidate are requests of one host, one
    interval apart), up to :data:`DISCOVER_WAIT` (a host backed off for longer:
    ``HostBusy``). Without the wait each request after the first found the host busy:
    a candidate was skipped as if it were no feed, and the page after robots.txt failed."""
    host = host_of(url)
    waited = 0.0
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(limiter.slot(host))
                break
            except HostBusy as busy:
                if waited + busy.retry_after > DISCOVER_WAIT:
                    raise
                time.sleep(busy.retry_after)
                waited += busy.retry_after
        yield


def _get_politely(
    session: Session, http: HttpClient, limiter: HostLimiter, url: str, settings: Settings
) -> Response:
    slot = partial(_waiting_slot, limiter)
    if not robots_allows(session, http, url, settings, slot):
        raise FetchError(f"robots.txt disallows {url}", transient=False)
    with slot(url):
        resp = http.get(url, {"Accept": "text/html, application/rss+xml, application/atom+xml"})
    error = classify_status(resp.status, resp.headers)
    if error is not None:
        raise error
    return resp
