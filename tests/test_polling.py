"""Feed polling against a real local HTTP server and a real database: conditional GET,
the body-hash skip, the adaptive interval and the server's hints, Retry-After,
tracking-parameter duplicates across feeds, failures and dead feeds, the lease token
that fences off redelivered poll messages, and the dispatcher under concurrency."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from schemas.models import Article, Feed, FeedPoll, FeedState, Sighting
from schemas.types import utcnow
from worker.core.db import init_db, unit_of_work
from worker.core.settings import Settings
from worker.feeds.polling import (
    HINT_CAP,
    HISTORY_TRIM_EVERY,
    Lease,
    LeaseLost,
    PollResult,
    claim_due_feeds,
    make_due,
    next_interval,
    poll_feed,
)
from worker.feeds.subscriptions import add_feeds, set_interval
from worker.network.http import HttpClient
from worker.network.politeness import HostBusy, LocalHostLimiter
from worker.testing.content import BASE_DAY, rss
from worker.testing.server import Reply

RSS = "application/rss+xml"


class Poller:
    """One database, one HTTP client and one limiter; claims and polls like a worker."""

    def __init__(self, settings: Settings) -> None:
        init_db(settings)
        self.settings = settings
        self.http = HttpClient(settings)
        self.limiter = LocalHostLimiter(settings, max_wait=2.0)
        self.held: dict[int, Lease] = {}

    def add(self, *urls: str, tags: list[str] | None = None) -> list[int]:
        with unit_of_work() as s:
            add_feeds(s, [(u, None, tags or []) for u in urls], self.settings)
        with unit_of_work() as s:
            return [self.feed_by_url(s, u).id or 0 for u in urls]

    @staticmethod
    def feed_by_url(s: Any, url: str) -> Feed:
        feed = s.exec(select(Feed).where(Feed.url == url)).first()
        assert feed is not None, url
        return feed

    def claim(self, now: datetime | None = None) -> list[Lease]:
        with unit_of_work() as s:
            return claim_due_feeds(s, self.settings, now=now)

    def poll(self, lease: Lease) -> PollResult:
        with unit_of_work() as s:
            return poll_feed(s, lease.feed_id, lease.token, self.http, self.limiter, self.settings)

    def poll_now(self, feed_id: int) -> PollResult:
        """Make the feed due, claim it and poll it once."""
        with unit_of_work() as s:
            make_due(s, [feed_id])
        for lease in self.claim():  # other due feeds stay leased to us until polled
            self.held[lease.feed_id] = lease
        return self.poll(self.held.pop(feed_id))

    def feed(self, feed_id: int) -> Feed:
        with unit_of_work() as s:
            feed = s.get(Feed, feed_id)
            assert feed is not None
            return feed

    def count(self, model: Any) -> int:
        with unit_of_work() as s:
            return int(s.exec(select(func.count()).select_from(model)).one())

    def close(self) -> None:
        self.http.close()


@pytest.fixture()
def poller(configure: Any) -> Any:
    made: list[Poller] = []

    def make(**overrides: Any) -> Poller:
        p = Poller(configure(**overrides))
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def items(server: Any, n: int, prefix: str = "/news", start: int = 0) -> list[Any]:
    return [
        (server.url(f"{prefix}/story-{i}"), f"Story {i}", BASE_DAY + timedelta(hours=i))
        for i in range(start, start + n)
    ]


def rss_with(extra_channel: str, entries: list[Any]) -> bytes:
    body = rss("http://example.invalid/", entries).decode()
    return body.replace("<description>", extra_channel + "<description>", 1).encode()


# ------------------------------------------------------------------ conditional GET


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_conditional_get_sends_validators_and_304_costs_nothing(
    poller: Any, server: Any, db: str, request: pytest.FixtureRequest
) -> None:
    extra = {"DATABASE_URL": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    p = poller(**extra)
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), items(server, 3)),
        content_type=RSS,
        headers={"ETag": '"v1"', "Last-Modified": "Mon, 02 Mar 2026 09:00:00 GMT"},
    )
    (fid,) = p.add(server.url("/feed.xml"))
    first = p.poll_now(fid)
    assert first.outcome == "ok" and len(first.new_article_ids) == 3

    second = p.poll_now(fid)
    assert second.outcome == "not_modified"
    assert second.new_article_ids == []
    path, headers = server.requests[-1]
    assert path == "/feed.xml"
    assert headers.get("If-None-Match") == '"v1"'
    assert headers.get("If-Modified-Since") == "Mon, 02 Mar 2026 09:00:00 GMT"
    assert headers.get("User-Agent") == p.settings.user_agent  # descriptive, with a contact
    assert "+http" in p.settings.user_agent
    assert server.hits["304:/feed.xml"] == 1
    feed = p.feed(fid)
    assert feed.last_status == 304 and feed.consecutive_failures == 0
    assert p.count(Article) == 3


def test_same_bytes_under_a_fresh_etag_are_skipped_by_the_body_hash(
    poller: Any, server: Any
) -> None:
    p = poller()
    body = rss(server.url("/"), items(server, 2))
    served = {"n": 0}

    def fresh_etag(_: Any) -> Reply:
        served["n"] += 1
        return Reply(body=body, content_type=RSS, headers={"ETag": f'"gen-{served["n"]}"'})

    server.routes["/feed.xml"] = fresh_etag
    (fid,) = p.add(server.url("/feed.xml"))
    assert p.poll_now(fid).outcome == "ok"
    sightings = p.count(Sighting)
    again = p.poll_now(fid)
    assert served["n"] == 2  # the server did send the whole body again...
    assert again.outcome == "unchanged"  # ...but nothing downstream looked at it
    assert again.entries_seen == 0 and again.new_article_ids == []
    assert p.count(Sighting) == sightings
    assert p.feed(fid).etag == '"gen-2"'  # the newest validator is kept for next time

    # A real change is noticed despite the skip.
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), items(server, 3)), content_type=RSS
    )
    changed = p.poll_now(fid)
    assert changed.outcome == "ok" and len(changed.new_article_ids) == 1


# ---------------------------------------------------------- interval and the hints


def test_interval_shortens_with_news_lengthens_without_and_stays_clamped(
    poller: Any, server: Any
) -> None:
    p = poller(POLL_MIN_INTERVAL=600, POLL_MAX_INTERVAL=7200, POLL_INITIAL_INTERVAL=3600)
    entries = items(server, 2)
    server.routes["/feed.xml"] = lambda _: Reply(
        body=rss(server.url("/"), entries), content_type=RSS
    )
    (fid,) = p.add(server.url("/feed.xml"))
    assert p.poll_now(fid).outcome == "ok"
    after_news = p.feed(fid).poll_interval
    assert after_news < 3600

    entries.extend(items(server, 1, start=2))  # one new entry: shorter still
    p.poll_now(fid)
    assert p.feed(fid).poll_interval < after_news

    intervals = []
    for _ in range(12):  # nothing new: longer each time, up to the ceiling
        assert p.poll_now(fid).outcome == "unchanged"
        intervals.append(p.feed(fid).poll_interval)
    assert intervals == sorted(intervals)
    assert intervals[0] > after_news * 0.5
    assert intervals[-1] == 7200

    for _ in range(10):  # lots of news: down to the floor, never below
        entries.extend(items(server, 6, start=len(entries)))
        p.poll_now(fid)
    assert p.feed(fid).poll_interval == 600


def test_next_poll_time_is_the_interval_plus_bounded_jitter(poller: Any, server: Any) -> None:
    p = poller(POLL_JITTER="0.2")
    for i in range(20):
        server.routes[f"/f{i}.xml"] = Reply(
            body=rss(server.url("/"), items(server, 1, prefix=f"/s{i}")), content_type=RSS
        )
    ids = p.add(*[server.url(f"/f{i}.xml") for i in range(20)])
    leases = p.claim()
    assert sorted(le.feed_id for le in leases) == sorted(ids)
    before = utcnow()
    for lease in leases:
        p.poll(lease)
    after = utcnow()
    delays = []
    for fid in ids:
        feed = p.feed(fid)
        assert feed.next_poll_at >= before + timedelta(seconds=feed.poll_interval)
        assert feed.next_poll_at <= after + timedelta(seconds=feed.poll_interval * 1.2)
        delays.append(feed.next_poll_at)
    assert len(set(delays)) == len(delays)  # spread out, not one instant


def test_many_feeds_added_at_once_are_spread_over_time(poller: Any) -> None:
    p = poller()
    urls = [f"https://site{i}.example/feed.xml" for i in range(400)]
    before = utcnow()
    p.add(*urls[:200])
    p.add(*urls[200:])
    with unit_of_work() as s:
        due = [f.next_poll_at for f in s.exec(select(Feed)).all()]
    assert len(due) == 400
    assert all(before <= d <= before + timedelta(seconds=61) for d in due)
    # Not all in one second: they come due across a range of seconds.
    assert len({int(d.timestamp()) for d in due}) >= 2
    assert max(due) - min(due) >= timedelta(seconds=1)


@pytest.mark.parametrize(
    ("channel", "headers", "at_least"),
    [
        ("<ttl>300</ttl>", {}, 300 * 60),  # RSS ttl, minutes
        (
            "<sy:updatePeriod>daily</sy:updatePeriod><sy:updateFrequency>2</sy:updateFrequency>",
            {},
            43_200,
        ),
        ("", {"Cache-Control": "public, max-age=20000"}, 20_000),
        ("", {"Expires": "+30000"}, 30_000),
    ],
    ids=["ttl", "sy-updatePeriod", "max-age", "expires"],
)
def test_the_server_hints_are_never_undercut(
    poller: Any, server: Any, channel: str, headers: dict[str, str], at_least: int
) -> None:
    p = poller(POLL_MIN_INTERVAL=600, POLL_INITIAL_INTERVAL=3600, POLL_JITTER=0)
    if headers.get("Expires") == "+30000":
        headers = {"Expires": format_datetime(utcnow() + timedelta(seconds=30_000), usegmt=True)}
    body = rss_with(channel, items(server, 3))
    if "sy:" in channel:
        body = body.replace(
            b'<rss version="2.0">',
            b'<rss version="2.0" xmlns:sy="http://purl.org/rss/1.0/modules/syndication/">',
        )
    server.routes["/feed.xml"] = Reply(body=body, content_type=RSS, headers=headers)
    (fid,) = p.add(server.url("/feed.xml"))
    before = utcnow()
    assert p.poll_now(fid).outcome == "ok"
    feed = p.feed(fid)
    assert feed.poll_interval < at_least  # the adaptive interval alone would be sooner
    # (Expires has whole seconds only: allow two.)
    assert feed.next_poll_at >= before + timedelta(seconds=at_least - 2)
    assert feed.next_poll_at <= utcnow() + timedelta(seconds=at_least + 1)


def test_a_manual_interval_overrides_the_adaptive_one_but_not_the_server(
    poller: Any, server: Any
) -> None:
    p = poller(POLL_JITTER=0)
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), items(server, 2)), content_type=RSS
    )
    (fid,) = p.add(server.url("/feed.xml"))
    with unit_of_work() as s:
        feed = s.get(Feed, fid)
        assert feed is not None
        set_interval(s, feed, 120)
    before = utcnow()
    p.poll_now(fid)
    feed = p.feed(fid)
    assert feed.interval_override == 120
    assert before + timedelta(seconds=119) <= feed.next_poll_at
    assert feed.next_poll_at <= utcnow() + timedelta(seconds=121)

    # The server's max-age still wins over the operator's wish.
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), items(server, 3)),
        content_type=RSS,
        headers={"Cache-Control": "max-age=5000"},
    )
    p.poll_now(fid)
    assert p.feed(fid).next_poll_at >= utcnow() + timedelta(seconds=4990)

    with unit_of_work() as s:
        feed = s.get(Feed, fid)
        assert feed is not None
        set_interval(s, feed, None)
    assert p.feed(fid).interval_override is None


# -------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_on_429_backs_off_the_feed_and_its_host(
    poller: Any, server: Any, form: str
) -> None:
    p = poller(POLL_MIN_INTERVAL=60, POLL_JITTER=0)
    value = (
        "7200"
        if form == "seconds"
        else format_datetime(utcnow() + timedelta(seconds=7200), usegmt=True)
    )
    server.routes["/feed.xml"] = Reply(429, b"slow down", headers={"Retry-After": value})
    (fid,) = p.add(server.url("/feed.xml"))
    before = utcnow()
    result = p.poll_now(fid)
    assert result.outcome == "error" and result.error == "HTTP 429"
    feed = p.feed(fid)
    assert feed.next_poll_at >= before + timedelta(seconds=7190)
    assert feed.transient_failures == 1 and feed.permanent_failures == 0
    assert feed.last_status == 429 and feed.state == FeedState.failing
    # The whole host is backed off, for every feed and page on it.
    with pytest.raises(HostBusy) as busy, p.limiter.slot("127.0.0.1"):
        pass
    assert busy.value.retry_after > 7000


def test_an_absurd_retry_after_is_capped(poller: Any, server: Any) -> None:
    p = poller(POLL_JITTER=0)
    server.routes["/feed.xml"] = Reply(503, b"", headers={"Retry-After": "999999999"})
    (fid,) = p.add(server.url("/feed.xml"))
    p.poll_now(fid)
    due_in = (p.feed(fid).next_poll_at - utcnow()).total_seconds()
    assert HINT_CAP - 60 <= due_in <= HINT_CAP


def test_a_busy_host_defers_the_poll_without_counting_a_failure(poller: Any, server: Any) -> None:
    p = poller()
    server.routes["/feed.xml"] = Reply(body=rss(server.url("/"), items(server, 1)))
    (fid,) = p.add(server.url("/feed.xml"))
    p.limiter.back_off("127.0.0.1", 90)
    result = p.poll_now(fid)
    assert result.outcome == "deferred"
    feed = p.feed(fid)
    assert server.hits["/feed.xml"] == 0
    assert feed.consecutive_failures == 0 and feed.state == FeedState.active
    assert feed.lease_until is None  # released: due again once the host is free
    assert timedelta(seconds=80) < feed.next_poll_at - utcnow() < timedelta(seconds=100)


# ---------------------------------------------------------------- canonical URLs


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_tracking_duplicates_across_feeds_are_one_article_with_two_sightings(
    poller: Any, server: Any, db: str, request: pytest.FixtureRequest
) -> None:
    extra = {"DATABASE_URL": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    p = poller(**extra)
    canonical = "https://news.example.org/world/story?id=7&page=2"
    a = [
        (
            "https://News.Example.org:443/world/story?page=2&id=7&utm_source=rss&utm_medium=feed",
            "Story",
            BASE_DAY,
        ),
        ("https://news.example.org/world/other#comments", "Other", BASE_DAY),
    ]
    b = [
        (
            "https://news.example.org/world/story?fbclid=XYZ&id=7&gclid=1&page=2#top",
            "Story",
            BASE_DAY,
        ),
    ]
    server.routes["/a.xml"] = Reply(body=rss(server.url("/"), a), content_type=RSS)
    server.routes["/b.xml"] = Reply(body=rss(server.url("/"), b), content_type=RSS)
    fa, fb = p.add(server.url("/a.xml"), server.url("/b.xml"))
    ra = p.poll_now(fa)
    rb = p.poll_now(fb)
    assert len(ra.new_article_ids) == 2
    assert rb.new_article_ids == []  # already known: not queued for fetching again
    assert rb.entries_seen == 1
    with unit_of_work() as s:
        story = s.exec(select(Article).where(Article.url == canonical)).one()
        sightings = s.exec(select(Sighting).where(Sighting.article_id == story.id)).all()
    assert sorted(x.feed_id for x in sightings) == sorted([fa, fb])
    assert {x.entry_url for x in sightings} == {a[0][0], b[0][0]}  # as each feed wrote it
    assert p.count(Article) == 2


# ------------------------------------------------------------- failures and health


def test_failing_feed_backs_off_then_is_marked_dead_but_not_forgotten(
    poller: Any, server: Any
) -> None:
    p = poller(FEED_DEAD_AFTER=3, POLL_MIN_INTERVAL=600, POLL_INITIAL_INTERVAL=600, POLL_JITTER=0)
    server.routes["/feed.xml"] = Reply(500, b"oops")
    (fid,) = p.add(server.url("/feed.xml"))
    delays = []
    for expected_state in (FeedState.failing, FeedState.failing, FeedState.dead):
        result = p.poll_now(fid)
        assert result.outcome == "error"
        feed = p.feed(fid)
        assert feed.state == expected_state
        assert feed.last_attempt_at is not None
        delays.append((feed.next_poll_at - feed.last_attempt_at).total_seconds())
    feed = p.feed(fid)
    assert feed.consecutive_failures == 3 and feed.transient_failures == 3
    assert feed.last_error == "HTTP 500" and feed.last_status == 500
    assert [round(d) for d in delays] == [600, 1200, 2400]  # less and less often...
    assert feed.next_poll_at > utcnow()  # ...but still scheduled: a dead feed is retried
    with unit_of_work() as s:
        polls = s.exec(select(FeedPoll).where(FeedPoll.feed_id == fid)).all()
    assert [x.http_status for x in polls] == [500, 500, 500]

    # A permanent error is counted apart.
    server.routes["/feed.xml"] = Reply(404, b"gone")
    p.poll_now(fid)
    assert p.feed(fid).permanent_failures == 1

    # When the site comes back, so does the feed.
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), items(server, 2)), content_type=RSS
    )
    assert p.poll_now(fid).outcome == "ok"
    feed = p.feed(fid)
    assert feed.state == FeedState.active and feed.consecutive_failures == 0
    assert feed.last_error is None and feed.last_new_entry_at is not None


def test_a_page_that_is_not_a_feed_is_a_permanent_failure(poller: Any, server: Any) -> None:
    p = poller()
    server.routes["/news"] = Reply(body=b"<html><body><p>Hello</p></body></html>")
    (fid,) = p.add(server.url("/news"))
    result = p.poll_now(fid)
    assert result.outcome == "error" and "not a feed" in (result.error or "")
    feed = p.feed(fid)
    assert feed.permanent_failures == 1 and feed.polls_total == 1
    assert p.count(Article) == 0


def test_a_page_that_is_not_a_feed_stays_failing_when_it_answers_304(
    poller: Any, server: Any
) -> None:
    """The validators of a page that is not a feed are not kept: a 304 to them would
    count as a success and the feed would look healthy without ever being a feed."""
    p = poller()
    server.routes["/news"] = Reply(
        body=b"<html><body><p>Hello</p></body></html>", headers={"ETag": '"page"'}
    )
    (fid,) = p.add(server.url("/news"))
    assert p.poll_now(fid).outcome == "error"
    second = p.poll_now(fid)
    assert second.outcome == "error" and "not a feed" in (second.error or "")
    _path, headers = server.requests[-1]
    assert "if-none-match" not in {k.lower() for k in headers}
    feed = p.feed(fid)
    assert feed.state == FeedState.failing and feed.consecutive_failures == 2
    assert feed.permanent_failures == 2 and feed.last_success_at is None


def test_an_ill_formed_feed_gives_its_entries_and_keeps_the_complaint(
    poller: Any, server: Any
) -> None:
    p = poller()
    body = rss(server.url("/"), items(server, 3)).replace(b"Story 1", b"Story & 1 <b>")
    server.routes["/feed.xml"] = Reply(body=body, content_type=RSS)
    (fid,) = p.add(server.url("/feed.xml"))
    result = p.poll_now(fid)
    assert result.outcome == "ok" and len(result.new_article_ids) == 3
    feed = p.feed(fid)
    assert feed.state == FeedState.active and feed.consecutive_failures == 0
    assert feed.last_error and "SAXParseException" in feed.last_error


@pytest.mark.parametrize("etag", ['"same"', None])
def test_an_ill_formed_feed_keeps_its_complaint_when_unchanged(
    poller: Any, server: Any, etag: str | None
) -> None:
    """A 304 (or the same bytes again) is the same ill-formed document: its complaint
    stays on the feed. After a failure, the next success clears the failure's error."""
    p = poller()
    body = rss(server.url("/"), items(server, 2)).replace(b"Story 1", b"Story & 1 <b>")
    server.routes["/feed.xml"] = Reply(
        body=body, content_type=RSS, headers={"ETag": etag} if etag else {}
    )
    (fid,) = p.add(server.url("/feed.xml"))
    assert p.poll_now(fid).outcome == "ok"
    assert p.poll_now(fid).outcome == ("not_modified" if etag else "unchanged")
    feed = p.feed(fid)
    assert feed.state == FeedState.active
    assert feed.last_error and "SAXParseException" in feed.last_error

    server.routes["/feed.xml"] = Reply(500, b"oops")
    p.poll_now(fid)
    assert p.feed(fid).last_error == "HTTP 500"
    server.routes["/feed.xml"] = Reply(
        body=body, content_type=RSS, headers={"ETag": etag} if etag else {}
    )
    p.poll_now(fid)
    assert p.feed(fid).last_error is None and p.feed(fid).state == FeedState.active


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_poll_history_is_bounded(
    poller: Any, server: Any, db: str, request: pytest.FixtureRequest
) -> None:
    """Trimmed once every HISTORY_TRIM_EVERY polls of a feed: never more than
    POLL_HISTORY_SIZE + HISTORY_TRIM_EVERY - 1 rows, and the newest ones are kept."""
    extra = {"DATABASE_URL": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    p = poller(POLL_HISTORY_SIZE=3, **extra)
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), items(server, 1)), content_type=RSS, headers={"ETag": '"x"'}
    )
    (fid,) = p.add(server.url("/feed.xml"))
    polls = 2 * HISTORY_TRIM_EVERY + 2
    counts = []
    for _ in range(polls):
        p.poll_now(fid)
        counts.append(p.count(FeedPoll))
    assert max(counts) == 3 + HISTORY_TRIM_EVERY - 1  # reached just before a trim, never passed
    # The polls that trim (the 10th, the 20th) leave exactly the newest three.
    assert counts[HISTORY_TRIM_EVERY - 1] == counts[2 * HISTORY_TRIM_EVERY - 1] == 3
    assert counts[-1] == 5
    with unit_of_work() as s:
        kept = s.exec(
            select(FeedPoll).where(FeedPoll.feed_id == fid).order_by(FeedPoll.id)  # type: ignore[arg-type]
        ).all()
    # The first poll of the feed (200, "ok") is long gone; the newest five are kept.
    assert [x.outcome for x in kept] == ["not_modified"] * 5
    assert p.feed(fid).polls_total == polls


def test_a_deferred_poll_trims_the_history(poller: Any, server: Any) -> None:
    """Deferred polls do not count in polls_total, so each of them trims: a feed whose
    host stays busy cannot grow its history without bound."""
    p = poller(POLL_HISTORY_SIZE=2)
    server.routes["/feed.xml"] = Reply(body=rss(server.url("/"), []), content_type=RSS)
    (fid,) = p.add(server.url("/feed.xml"))
    for _ in range(3):
        p.poll_now(fid)
    assert p.count(FeedPoll) == 3
    p.limiter.back_off("127.0.0.1", 90)
    for _ in range(4):
        assert p.poll_now(fid).outcome == "deferred"
        assert p.count(FeedPoll) == 2
    assert p.feed(fid).polls_total == 3


def test_a_gzip_file_served_as_such_is_read(poller: Any, server: Any) -> None:
    import gzip

    p = poller()
    server.routes["/feed.xml.gz"] = Reply(
        body=gzip.compress(rss(server.url("/"), items(server, 4))),
        content_type="application/x-gzip",
    )
    (fid,) = p.add(server.url("/feed.xml.gz"))
    assert len(p.poll_now(fid).new_article_ids) == 4


# ----------------------------------------------------------------- leases (fencing)


def test_only_the_holder_of_the_current_lease_polls(poller: Any, server: Any) -> None:
    p = poller(POLL_LEASE_SECONDS=900)
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), items(server, 2)), content_type=RSS
    )
    (fid,) = p.add(server.url("/feed.xml"))
    (old,) = p.claim()
    # The first poll message is lost in the broker; its lease runs out and the
    # dispatcher hands the feed out again.
    assert p.claim() == []  # not while the lease runs
    (new,) = p.claim(now=utcnow() + timedelta(seconds=901))
    assert new.feed_id == old.feed_id == fid and new.token != old.token

    # The old message is redelivered now: it must not poll.
    assert p.poll(old).outcome == "skipped"
    assert server.hits["/feed.xml"] == 0
    assert p.poll(Lease(fid, "not a token")).outcome == "skipped"
    # The current holder polls, once; its duplicate does nothing.
    assert p.poll(new).outcome == "ok"
    assert p.poll(new).outcome == "skipped"
    assert server.hits["/feed.xml"] == 1


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_poll_whose_feed_was_claimed_again_meanwhile_writes_nothing(
    poller: Any, server: Any, db: str, request: pytest.FixtureRequest
) -> None:
    extra = {"DATABASE_URL": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    p = poller(RESPECT_ROBOTS="false", **extra)
    body = rss(server.url("/"), items(server, 2))
    state: dict[str, Any] = {}

    def slow_feed(_: Any) -> Reply:
        # While this poll is on the network, its lease runs out and another
        # dispatcher claims the feed again.
        state["second"] = p.claim(now=utcnow() + timedelta(seconds=1000))
        return Reply(body=body, content_type=RSS)

    server.routes["/feed.xml"] = slow_feed
    (fid,) = p.add(server.url("/feed.xml"))
    (first,) = p.claim()
    with pytest.raises(LeaseLost):
        p.poll(first)
    (second,) = state["second"]
    feed = p.feed(fid)
    assert feed.lease_until is not None and feed.lease_until.isoformat() == second.token
    assert feed.polls_total == 0 and p.count(Article) == 0 and p.count(FeedPoll) == 0

    server.routes["/feed.xml"] = Reply(body=body, content_type=RSS)
    assert p.poll(second).outcome == "ok"
    assert p.count(Article) == 2


def test_the_task_ignores_messages_without_a_current_lease(poller: Any, server: Any) -> None:
    from tasks.polls import poll_feed as poll_task

    p = poller()
    server.routes["/feed.xml"] = Reply(body=rss(server.url("/"), []), content_type=RSS)
    (fid,) = p.add(server.url("/feed.xml"))
    (lease,) = p.claim()
    assert poll_task(fid) == 0  # a message from before lease tokens existed
    assert poll_task(fid, "2020-01-01T00:00:00+00:00") == 0
    assert server.hits["/feed.xml"] == 0
    assert p.feed(fid).lease_until is not None  # the holder's lease is untouched
    assert poll_task(fid, lease.token) == 0  # the holder polls (an empty feed)
    assert server.hits["/feed.xml"] == 1 and p.feed(fid).lease_until is None


def test_a_message_of_several_feeds_polls_each_on_its_own(
    poller: Any, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """poll_feeds: one feed polled, one with an outdated token skipped, one that crashes
    recorded as a failed poll (an error of the feed, counted and shown, not left to its
    lease to fail again unseen), and the feed after the crash still polled."""
    from tasks import polls as poll_tasks

    p = poller()
    for name in ("a", "b", "c", "d"):
        server.routes[f"/{name}.xml"] = Reply(
            body=rss(server.url("/"), items(server, 2, prefix=f"/{name}")), content_type=RSS
        )
    a, b, c, d = p.add(*[server.url(f"/{name}.xml") for name in "abcd"])
    leases = {lease.feed_id: lease.token for lease in p.claim()}
    real_poll = poll_tasks.polling.poll_feed

    def crash_on_c(session: Any, feed_id: int, *args: Any) -> PollResult:
        if feed_id == c:
            raise RuntimeError("a bug met by feed c only")
        return real_poll(session, feed_id, *args)

    monkeypatch.setattr(poll_tasks.polling, "poll_feed", crash_on_c)
    message = [[a, leases[a]], [b, "2020-01-01T00:00:00+00:00"], [c, leases[c]], [d, leases[d]]]
    assert poll_tasks.poll_feeds(message) == 4  # two new articles each from a and d
    assert [server.hits.get(f"/{n}.xml", 0) for n in "abcd"] == [1, 0, 0, 1]
    assert p.feed(a).lease_until is None and p.feed(d).lease_until is None
    assert p.feed(a).polls_total == p.feed(d).polls_total == 1
    # b keeps the lease of its real claim; c's crash is its failed poll, backed off.
    assert p.feed(b).lease_until is not None and p.feed(b).lease_until.isoformat() == leases[b]
    fc = p.feed(c)
    assert fc.lease_until is None and fc.polls_total == 1 and fc.consecutive_failures == 1
    assert fc.last_error == "RuntimeError: a bug met by feed c only"
    with unit_of_work() as s:
        (poll,) = s.exec(select(FeedPoll).where(FeedPoll.feed_id == c)).all()
        assert poll.outcome == "error" and poll.error == fc.last_error
    assert p.count(Article) == 4


def test_feeds_read_together_for_a_message_keep_what_changed_after_the_read(
    poller: Any, server: Any
) -> None:
    """poll_feeds reads its feeds in one statement before the first poll
    (``load_feeds``); each poll still writes only the columns it changed, fenced by its
    lease. So an operator's pause made after the read stays, a feed whose lease was
    replaced after the read writes nothing, and a feed the read did not find is
    skipped."""
    from worker.feeds.polling import load_feeds

    p = poller(POLL_LEASE_SECONDS=900)
    for name in ("a", "b", "c"):
        server.routes[f"/{name}.xml"] = Reply(
            body=rss(server.url("/"), items(server, 2, prefix=f"/{name}")), content_type=RSS
        )
    a, b, c = p.add(*[server.url(f"/{name}.xml") for name in "abc"])
    leases = {lease.feed_id: lease.token for lease in p.claim()}
    with unit_of_work() as s:
        preloaded = load_feeds(s, [a, b, c, 999_999])
    assert sorted(preloaded) == [a, b, c]
    del preloaded[c]  # as if the read had not found it (removed before the message ran)
    with unit_of_work() as s:  # after the read: a paused, b claimed again
        fa, fb = s.get(Feed, a), s.get(Feed, b)
        assert fa is not None and fb is not None
        fa.state = FeedState.paused
        fb.lease_until = fb.lease_until + timedelta(seconds=5)  # type: ignore[operator]

    def poll(feed_id: int) -> PollResult:
        with unit_of_work() as s:
            return poll_feed(s, feed_id, leases[feed_id], p.http, p.limiter, p.settings, preloaded)

    assert poll(a).outcome == "ok"
    feed_a = p.feed(a)
    assert feed_a.state == FeedState.paused and feed_a.polls_total == 1
    assert feed_a.lease_until is None
    with pytest.raises(LeaseLost):
        poll(b)
    assert p.feed(b).polls_total == 0
    assert poll(c).outcome == "skipped"
    assert preloaded == {}  # each feed's snapshot is used once
    assert server.hits["/a.xml"] == 1 and server.hits.get("/c.xml", 0) == 0
    assert p.count(Article) == 2  # a's only: b's poll rolled back


def test_an_environment_error_retries_that_feed_and_the_rest_of_the_message(
    poller: Any, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails during the second feed: the first stays polled (committed,
    not polled again), the second and third are polled by the retry."""
    from sqlalchemy.exc import OperationalError

    from tasks import polls as poll_tasks

    p = poller()
    for name in ("a", "b", "c"):
        server.routes[f"/{name}.xml"] = Reply(
            body=rss(server.url("/"), items(server, 1, prefix=f"/{name}")), content_type=RSS
        )
    a, b, c = p.add(*[server.url(f"/{name}.xml") for name in "abc"])
    leases = {lease.feed_id: lease.token for lease in p.claim()}
    real_poll = poll_tasks.polling.poll_feed
    failed: list[int] = []

    def database_blip_on_b(session: Any, feed_id: int, *args: Any) -> PollResult:
        if feed_id == b and not failed:
            failed.append(feed_id)
            raise OperationalError("SELECT 1", {}, ConnectionError("server closed"))
        return real_poll(session, feed_id, *args)

    monkeypatch.setattr(poll_tasks.polling, "poll_feed", database_blip_on_b)
    # apply(): run eagerly, so the task's retry runs too (with the arguments it chose).
    result = poll_tasks.poll_feeds.apply(args=([[f, leases[f]] for f in (a, b, c)],))
    assert result.successful(), result.traceback
    assert failed == [b]
    assert [server.hits.get(f"/{n}.xml", 0) for n in "abc"] == [1, 1, 1]
    assert all(p.feed(f).lease_until is None and p.feed(f).polls_total == 1 for f in (a, b, c))
    assert p.count(Article) == 3


def test_concurrent_dispatchers_never_hand_out_a_feed_twice(poller: Any, pg_url: str) -> None:
    p = poller(DATABASE_URL=pg_url, DISPATCH_BATCH_SIZE=37)
    p.add(*[f"https://host{i % 50}.example/feed{i}.xml" for i in range(600)])
    got: list[list[Lease]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def dispatcher() -> None:
        barrier.wait()
        mine: list[Lease] = []
        while True:
            batch = p.claim(now=utcnow() + timedelta(seconds=120))
            if not batch:
                break
            assert len(batch) <= 37
            mine.extend(batch)
        with lock:
            got.append(mine)

    threads = [threading.Thread(target=dispatcher) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    claimed = [le.feed_id for mine in got for le in mine]
    assert len(claimed) == 600 and len(set(claimed)) == 600
    assert sum(1 for mine in got if mine) >= 2  # they did run side by side


# -------------------------------------------------------------- the due rule itself


def test_next_interval_backs_off_exponentially_on_failure(configure: Any) -> None:
    settings = configure(POLL_MIN_INTERVAL=600, POLL_MAX_INTERVAL=86400)
    feed = Feed(url="https://x.example/f", poll_interval=600)
    seen = []
    for failures in range(1, 12):
        feed.consecutive_failures = failures
        feed.poll_interval = next_interval(feed, settings, new_entries=0, failed=True)
        seen.append(feed.poll_interval)
    assert seen[:4] == [600, 1200, 2400, 4800]
    assert seen[-1] == 86400 and seen == sorted(seen)


def test_paused_and_leased_feeds_are_not_due(poller: Any) -> None:
    p = poller()
    ids = p.add("https://a.example/f", "https://b.example/f", "https://c.example/f")
    with unit_of_work() as s:
        paused = s.get(Feed, ids[0])
        assert paused is not None
        paused.state = FeedState.paused
    first = p.claim()
    assert sorted(le.feed_id for le in first) == sorted(ids[1:])
    assert p.claim() == []
    later = datetime.now(UTC) + timedelta(days=2)  # leases expired, feeds due again
    assert sorted(le.feed_id for le in p.claim(now=later)) == sorted(ids[1:])


# ------------------------------------------------------------------ the commands


def test_feeds_commands_show_health_set_intervals_and_discover(tmp_path: Any, server: Any) -> None:
    import json

    from tests.conftest import claimwire, cli_env

    env = cli_env(tmp_path, FEED_DEAD_AFTER="1")
    page = (
        b'<html><head><link rel="alternate" type="application/rss+xml" href="/feed.xml">'
        b'<link rel="alternate" type="application/atom+xml" href="/comments/feed"></head>'
        b"<body>Home</body></html>"
    )
    server.routes["/"] = Reply(body=page)
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), items(server, 2), title="Harbour"), content_type=RSS
    )
    server.routes["/broken.xml"] = Reply(500, b"")

    r = claimwire(["feeds", "discover", server.url("/")], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert server.url("/feed.xml") in r.stdout and "comments" not in r.stdout
    r = claimwire(["feeds", "discover", server.url("/"), "--add"], env, tmp_path)
    assert f"added {server.url('/feed.xml')}" in r.stdout
    r = claimwire(
        ["feeds", "add", server.url("/feed.xml"), server.url("/broken.xml")], env, tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert f"already present: {server.url('/feed.xml')}" in r.stdout  # a no-op, not an error
    assert f"added {server.url('/broken.xml')}" in r.stdout

    # A site without any feed link: the common paths are tried.
    server.routes["/plain/"] = Reply(body=b"<html><body>no links</body></html>")
    other = server.url("/plain/")
    r = claimwire(["feeds", "discover", other], env, tmp_path)
    assert server.url("/feed.xml") in r.stdout and "by path" in r.stdout
    server.routes["/feed.xml"] = Reply(body=b"<html>moved</html>")
    r = claimwire(["feeds", "discover", other], env, tmp_path)
    assert r.returncode == 1 and "no feed found" in r.stderr
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), items(server, 2), title="Harbour"), content_type=RSS
    )

    r = claimwire(["run", "--until-idle"], env, tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {
        row["url"]: row
        for row in map(
            json.loads, claimwire(["feeds", "list", "--json"], env, tmp_path).stdout.splitlines()
        )
    }
    good, bad = rows[server.url("/feed.xml")], rows[server.url("/broken.xml")]
    assert good["state"] == "active" and good["dead"] is False and good["last_status"] == 200
    assert good["last_success_at"] and good["last_new_entry_at"] and good["last_attempt_at"]
    assert good["new_entries_per_day"] == 2.0 and good["consecutive_failures"] == 0
    assert bad["state"] == "dead" and bad["dead"] is True
    assert bad["last_error"] == "HTTP 500" and bad["last_status"] == 500
    assert bad["consecutive_failures"] == 1 and bad["last_success_at"] is None

    wide = {**env, "COLUMNS": "250"}  # as in a wide terminal (a pipe gets 80 columns)
    table = claimwire(["feeds", "list"], wide, tmp_path)
    assert table.returncode == 0
    for column in ("last attempt", "last success", "last new entry", "fails", "HTTP", "new/day"):
        assert column in table.stdout
    assert "dead" in table.stdout and "HTTP 500" in table.stdout

    status = json.loads(claimwire(["status", "--json"], env, tmp_path).stdout)
    assert status["feeds"]["healthy"] == 1 and status["feeds"]["dead"] == 1
    assert status["feeds"]["failing"] == 0 and status["feeds"]["total"] == 2
    text = claimwire(["status"], env, tmp_path).stdout
    assert "1 healthy" in text and "1 dead" in text

    fid = str(good["id"])
    r = claimwire(["feeds", "set", fid, "--interval", "15m"], env, tmp_path)
    assert r.returncode == 0 and "every 15m" in r.stdout
    listed = json.loads(claimwire(["feeds", "list", "--json"], env, tmp_path).stdout.split("\n")[0])
    assert listed["interval_override"] == 900
    assert "15m*" in claimwire(["feeds", "list"], wide, tmp_path).stdout
    r = claimwire(["feeds", "set", fid, "--interval", "auto"], env, tmp_path)
    assert "adaptive" in r.stdout
    for bad_value in ("10", "soon", "-5m"):
        r = claimwire(["feeds", "set", fid, "--interval", bad_value], env, tmp_path)
        assert r.returncode == 2 and r.stderr.strip(), bad_value
    r = claimwire(["feeds", "set", fid, "--pause"], env, tmp_path)
    assert "paused" in r.stdout
    status = json.loads(claimwire(["status", "--json"], env, tmp_path).stdout)
    assert status["feeds"]["paused"] == 1 and status["feeds"]["healthy"] == 0
    assert claimwire(["feeds", "set", "999", "--pause"], env, tmp_path).returncode == 2


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_messages_304s_are_written_together_and_a_replaced_lease_writes_nothing(
    poller: Any, server: Any, db: str, request: pytest.FixtureRequest
) -> None:
    """poll_feeds writes the polls that answered 304 together, in one transaction at
    the end of the message (``write_polls``): while its last feed is on the network,
    the first one's poll is not written yet. Each write is still fenced by its own
    lease: a feed claimed again meanwhile gets nothing written (no history row, no
    count), the others are written as usual."""
    from tasks import polls as poll_tasks

    extra = {"DATABASE_URL": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    p = poller(RESPECT_ROBOTS="false", POLL_LEASE_SECONDS=900, **extra)
    for name in "abc":
        server.routes[f"/{name}.xml"] = Reply(
            body=rss(server.url("/"), items(server, 1, prefix=f"/{name}")),
            content_type=RSS,
            headers={"ETag": f'"{name}1"'},
        )
    a, b, c = p.add(*[server.url(f"/{name}.xml") for name in "abc"])
    leases = {lease.feed_id: lease.token for lease in p.claim()}
    assert poll_tasks.poll_feeds([[f, leases[f]] for f in (a, b, c)]) == 3
    with unit_of_work() as s:
        make_due(s, [a, b, c])
    leases = {lease.feed_id: lease.token for lease in p.claim()}
    seen: dict[str, Any] = {}

    def not_modified(name: str) -> Any:
        def reply(_: Any) -> Reply:
            if name == "c":  # the last feed: a's and b's polls are done, not written
                seen["a_polls"] = p.feed(a).polls_total
                with unit_of_work() as s:  # b is claimed again (its lease ran out)
                    fb = s.get(Feed, b)
                    assert fb is not None and fb.lease_until is not None
                    fb.lease_until = fb.lease_until + timedelta(seconds=5)
                    seen["b_lease"] = fb.lease_until
            return Reply(status=304, body=b"", headers={"ETag": f'"{name}1"'})

        return reply

    for name in "abc":
        server.routes[f"/{name}.xml"] = not_modified(name)
    assert poll_tasks.poll_feeds([[f, leases[f]] for f in (a, b, c)]) == 0
    assert seen["a_polls"] == 1  # not written while the message was still polling
    for f in (a, c):
        feed = p.feed(f)
        assert feed.polls_total == 2 and feed.lease_until is None
    fb = p.feed(b)
    assert fb.polls_total == 1 and fb.lease_until == seen["b_lease"]
    with unit_of_work() as s:
        outcomes = {
            f: sorted(x.outcome for x in s.exec(select(FeedPoll).where(FeedPoll.feed_id == f)))
            for f in (a, b, c)
        }
    assert outcomes == {a: ["not_modified", "ok"], b: ["ok"], c: ["not_modified", "ok"]}
    assert [server.hits[f"/{n}.xml"] for n in "abc"] == [2, 2, 2]


def test_a_poll_whose_turn_moved_a_moment_is_polled_at_it_within_its_message(
    poller: Any, server: Any
) -> None:
    """Two feeds of one host in one message, the host's interval 1 s: the second one's
    turn is a second after the first request started. Its message keeps it and polls
    it then (no message sent back for it), never sooner than the interval."""
    from tasks import polls as poll_tasks
    from tests.test_dispatch import _queued_polls

    p = poller(HOST_MIN_INTERVAL=1, HOST_MAX_CONCURRENCY=2, RESPECT_ROBOTS="false")
    started: dict[str, float] = {}

    def feed(name: str) -> Any:
        def reply(_: Any) -> Reply:
            started[name] = time.monotonic()
            return Reply(body=rss(server.url("/"), []), content_type=RSS)

        return reply

    for name in "ab":
        server.routes[f"/{name}.xml"] = feed(name)
    a, b = p.add(*[server.url(f"/{name}.xml") for name in "ab"])
    leases = {lease.feed_id: lease.token for lease in p.claim()}
    _queued_polls()
    assert poll_tasks.poll_feeds([[a, leases[a]], [b, leases[b]]]) == 0
    assert _queued_polls() == []  # nothing sent back
    # a second apart (the limiter spaces starts; arrivals jitter by a loaded machine)
    assert started["b"] - started["a"] >= 0.8
    assert all(p.feed(f).lease_until is None and p.feed(f).polls_total == 1 for f in (a, b))


def test_an_environment_error_writing_a_messages_304s_polls_them_again(
    poller: Any, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails when the message writes its 304s together: nothing of them was
    written, their leases still hold, and the retry polls them again: each poll is
    recorded once."""
    from sqlalchemy.exc import OperationalError

    from tasks import polls as poll_tasks

    p = poller(RESPECT_ROBOTS="false")
    a, b, leases = _two_feeds_polled_once_and_due_again(p, server)
    for name in "ab":
        server.routes[f"/{name}.xml"] = Reply(status=304, headers={"ETag": f'"{name}"'})
    real_write = poll_tasks.polling.write_polls
    failed: list[int] = []

    def database_blip(session: Any, writes: Any) -> Any:
        if not failed:
            failed.append(len(writes))
            raise OperationalError("UPDATE feed", {}, ConnectionError("server closed"))
        return real_write(session, writes)

    monkeypatch.setattr(poll_tasks.polling, "write_polls", database_blip)
    result = poll_tasks.poll_feeds.apply(args=([[f, leases[f]] for f in (a, b)],))
    assert result.successful(), result.traceback
    assert failed == [2]
    assert [server.hits[f"/{n}.xml"] for n in "ab"] == [3, 3]  # 200, then 304 twice
    for f in (a, b):
        feed = p.feed(f)
        assert feed.polls_total == 2 and feed.lease_until is None
    with unit_of_work() as s:
        polls = s.exec(select(FeedPoll).where(FeedPoll.outcome == "not_modified")).all()
    assert sorted(x.feed_id for x in polls) == sorted([a, b])  # once each


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_write_polls_fences_each_feed_and_writes_only_its_changed_columns(
    poller: Any, db: str, request: pytest.FixtureRequest
) -> None:
    """``write_polls`` on PostgreSQL writes the feeds of a message that changed the same
    columns in one ``UPDATE ... FROM unnest(...)`` (issue 16); on SQLite one statement
    a feed. Either way each row is fenced by its own lease (a feed claimed again gets
    nothing written, not even its history row), only the columns a poll changed are
    written (a pause made meanwhile stays), and polls that changed other columns are
    written with their own values."""
    from sqlalchemy import event

    from worker.core.db import get_engine
    from worker.feeds.polling import PollWrite, write_polls

    extra = {"DATABASE_URL": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    p = poller(**extra)
    a, b, c, d = p.add(*[f"http://feeds{i}.example/rss.xml" for i in range(4)])
    leases = {lease.feed_id: datetime.fromisoformat(lease.token) for lease in p.claim()}
    now = utcnow().replace(microsecond=0)
    with unit_of_work() as s:  # meanwhile: a is paused, b is claimed again
        fa, fb = s.get(Feed, a), s.get(Feed, b)
        assert fa is not None and fb is not None and fb.lease_until is not None
        fa.state = FeedState.paused
        fb.lease_until = fb.lease_until + timedelta(seconds=5)

    def write(feed_id: int, **changed: Any) -> PollWrite:
        changed = {"polls_total": 1, "last_attempt_at": now, "lease_until": None, **changed}
        poll = dict(
            feed_id=feed_id, started_at=now, duration_ms=3, outcome="not_modified",
            http_status=304, entries_seen=0, entries_new=0, entries_rejected=0,
            rejected=None, error=None,
        )  # fmt: skip
        return PollWrite(
            feed_id=feed_id,
            update={**changed, "fenced_id": feed_id, "fenced_lease": leases[feed_id]},
            poll=poll,
            trim=False,
            keep=10,
            result=PollResult(outcome="not_modified"),
        )

    writes = [write(c), write(a), write(b), write(d, poll_interval=77, last_status=304)]
    updates: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with unit_of_work() as s:
            done = write_polls(s, writes)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert sorted(w.feed_id for w in done) == sorted([a, c, d])
    assert len(updates) == (2 if db == "postgresql" else 4)
    fa, fb, fc, fd = (p.feed(f) for f in (a, b, c, d))
    assert fa.state == FeedState.paused and fa.polls_total == 1 and fa.lease_until is None
    assert fb.polls_total == 0 and fb.lease_until is not None  # its lease was replaced
    assert fc.state == FeedState.active and fc.polls_total == 1 and fc.last_attempt_at == now
    assert (fd.poll_interval, fd.last_status, fd.polls_total) == (77, 304, 1)
    assert fc.poll_interval != 77 and fc.last_status is None
    with unit_of_work() as s:
        polled = sorted(x.feed_id for x in s.exec(select(FeedPoll)))
    assert polled == sorted([a, c, d])


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_write_polls_inserts_a_messages_history_rows_in_one_statement(
    poller: Any, db: str, request: pytest.FixtureRequest
) -> None:
    """The history rows of a message's 304s go in one ``INSERT`` on PostgreSQL (``...
    SELECT * FROM unnest(...)``, one array a column; psycopg's ``executemany`` sent one
    ``INSERT`` a row: issue 16), with each row's own values, nulls included; SQLite
    keeps its ``executemany``. A feed whose lease was replaced gets no row."""
    from sqlalchemy import event

    from worker.core.db import get_engine
    from worker.feeds.polling import PollWrite, write_polls

    extra = {"DATABASE_URL": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    p = poller(**extra)
    ids = p.add(*[f"http://feeds{i}.example/rss.xml" for i in range(4)])
    leases = {lease.feed_id: datetime.fromisoformat(lease.token) for lease in p.claim()}
    lost = ids[2]
    with unit_of_work() as s:  # meanwhile, one feed is claimed again
        feed = s.get(Feed, lost)
        assert feed is not None and feed.lease_until is not None
        feed.lease_until = feed.lease_until + timedelta(seconds=5)
    now = utcnow().replace(microsecond=0)
    rows = {
        f: dict(
            feed_id=f,
            started_at=now - timedelta(seconds=n),
            duration_ms=10 + n,
            outcome="unchanged" if n % 2 else "not_modified",
            http_status=200 if n % 2 else 304,
            entries_seen=n,
            entries_new=0,
            entries_rejected=n,
            rejected=f"{n} not an absolute http(s) URL ('x{n}')" if n % 2 else None,
            error=None if n == 0 else f"ill-formed {n}",
        )
        for n, f in enumerate(ids)
    }
    writes = [
        PollWrite(
            feed_id=f,
            update={
                "polls_total": 1,
                "lease_until": None,
                "fenced_id": f,
                "fenced_lease": leases[f],
            },
            poll=rows[f],
            trim=False,
            keep=10,
            result=PollResult(outcome=str(rows[f]["outcome"])),
        )
        for f in ids
    ]
    inserts: list[tuple[str, bool]] = []

    def seen(_c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            inserts.append((statement, many))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with unit_of_work() as s:
            done = write_polls(s, writes)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert sorted(w.feed_id for w in done) == sorted(f for f in ids if f != lost)
    assert len(inserts) == 1
    if db == "postgresql":
        assert "unnest" in inserts[0][0] and inserts[0][1] is False
    columns = [k for k in rows[ids[0]] if k != "feed_id"]
    with unit_of_work() as s:
        stored = {x.feed_id: {k: getattr(x, k) for k in columns} for x in s.exec(select(FeedPoll))}
    expected = {f: {k: rows[f][k] for k in columns} for f in ids if f != lost}
    assert stored == expected


def _record_seeing(
    feed_id: int, entries: list[Any], now: datetime, prefix: str
) -> tuple[Any, list[tuple[str, Any, bool]]]:
    """``record_entries`` of ``entries`` for the feed, in a unit of work, and the
    statements (with their parameters and executemany flag) that start with ``prefix``."""
    from sqlalchemy import event

    from worker.core.db import get_engine
    from worker.feeds.parsing import ParsedFeed
    from worker.feeds.polling import record_entries

    captured: list[tuple[str, Any, bool]] = []

    def seen(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith(prefix):
            captured.append((statement, params, many))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with unit_of_work() as s:
            feed = s.get(Feed, feed_id)
            assert feed is not None
            made = record_entries(s, feed, ParsedFeed(entries=entries), now)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    return made, captured


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_record_entries_inserts_a_polls_sightings_in_one_statement(
    poller: Any, db: str, request: pytest.FixtureRequest
) -> None:
    """A changed feed's sightings (one an entry) go in one ``INSERT`` on PostgreSQL
    (``... FROM unnest(...)``, one array a column; psycopg's ``executemany`` sent one
    ``INSERT`` a row: a statement an entry of every changed feed, issue 16), each row with
    its own values, nulls included; an entry this feed already listed is left as it was
    (a conflict, not an error), a new one gets its row. SQLite keeps its
    ``executemany``."""

    from worker.feeds.parsing import Entry, ParsedFeed
    from worker.feeds.polling import record_entries

    extra = {"DATABASE_URL": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    p = poller(**extra)
    (feed_id,) = p.add("http://sightings.example/rss.xml")
    later = utcnow().replace(microsecond=0)
    first = later - timedelta(hours=1)
    old = [Entry(link=f"http://sightings.example/old-{i}", guid=f"g{i}") for i in range(2)]
    new = [
        Entry(link="http://sightings.example/new-0", guid=None),
        Entry(link="http://sightings.example/new-1", guid="g-new"),
    ]
    with unit_of_work() as s:
        feed = s.get(Feed, feed_id)
        assert feed is not None
        assert len(record_entries(s, feed, ParsedFeed(entries=old), first)) == 2
    made, captured = _record_seeing(feed_id, [*new, *old], later, "INSERT INTO SIGHTING")
    inserts = [(statement, many) for statement, _params, many in captured]
    assert len(made) == 2
    assert len(inserts) == 1
    if db == "postgresql":
        assert "unnest" in inserts[0][0] and inserts[0][1] is False
    with unit_of_work() as s:
        ids = {a.url: a.id for a in s.exec(select(Article))}
        stored = {
            (x.article_id, x.feed_id, x.entry_url, x.entry_guid, x.seen_at)
            for x in s.exec(select(Sighting))
        }
    assert stored == {
        (ids[url], feed_id, url, guid, at)
        for url, guid, at in [
            ("http://sightings.example/old-0", "g0", first),
            ("http://sightings.example/old-1", "g1", first),
            ("http://sightings.example/new-0", None, later),
            ("http://sightings.example/new-1", "g-new", later),
        ]
    }


def test_a_messages_feeds_are_read_outside_a_transaction_on_postgresql(
    poller: Any, pg_url: str
) -> None:
    """``read_feeds`` (a poll message's read of its feeds) runs its ``SELECT`` on
    PostgreSQL outside a transaction (autocommit: no ``BEGIN`` and ``COMMIT`` around
    it, two statements and round trips a message: issue 16), reads what ``load_feeds``
    reads in a unit of work, and gives its connection back to the pool transactional
    again: a unit of work on it still rolls back."""
    import psycopg
    from sqlalchemy import event

    from worker.core.db import get_engine
    from worker.feeds.polling import load_feeds, read_feeds

    p = poller(DATABASE_URL=pg_url)
    a, b = p.add("http://feeds-a.example/rss.xml", "http://feeds-b.example/rss.xml")
    p.claim()
    seen: list[tuple[str, Any, Any]] = []

    def after(conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        raw = conn.connection.dbapi_connection
        seen.append((statement, raw, raw.info.transaction_status))

    engine = get_engine()
    event.listen(engine, "after_cursor_execute", after)
    try:
        read = read_feeds([a, b, 999_999])
    finally:
        event.remove(engine, "after_cursor_execute", after)
    ((statement, raw, status),) = seen
    assert statement.lstrip().upper().startswith("SELECT")
    assert status == psycopg.pq.TransactionStatus.IDLE  # in a transaction: INTRANS
    assert raw.autocommit is False  # back in the pool as it was
    with unit_of_work() as s:
        loaded = load_feeds(s, [a, b, 999_999])
    assert sorted(read) == sorted(loaded) == [a, b]
    assert {f: v for f, (_, v) in read.items()} == {f: v for f, (_, v) in loaded.items()}
    assert read[a][0].url == "http://feeds-a.example/rss.xml" and read[a][0].lease_until
    for _ in range(3):  # whichever pooled connection comes: still transactional
        with pytest.raises(RuntimeError), unit_of_work() as s:
            feed = s.get(Feed, a)
            assert feed is not None
            feed.title = "written, then rolled back"
            s.flush()
            raise RuntimeError("undo")
        assert p.feed(a).title != "written, then rolled back"


def test_a_messages_304s_are_written_together_also_when_it_waited_for_a_held_feed(
    poller: Any, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two feeds of one host in one message answer 304, the host's interval 1 s: the
    second is held for its turn a second later, and both 304s are written once the
    message ends, in one ``write_polls`` (each was written alone: before the wait, and
    at the end; issue 16). Each is recorded once, and its lease is cleared."""
    from tasks import polls as poll_tasks
    from tests.test_dispatch import _queued_polls

    p = poller(HOST_MIN_INTERVAL=1, HOST_MAX_CONCURRENCY=2, RESPECT_ROBOTS="false")
    a, b, leases = _two_feeds_polled_once_and_due_again(p, server)
    started: dict[str, float] = {}

    def not_modified(name: str) -> Any:
        def reply(_: Any) -> Reply:
            started[name] = time.monotonic()
            return Reply(status=304, headers={"ETag": f'"{name}"'})

        return reply

    for name in "ab":
        server.routes[f"/{name}.xml"] = not_modified(name)
    real_write = poll_tasks.polling.write_polls
    written: list[list[int]] = []

    def write_polls(session: Any, writes: Any) -> Any:
        written.append([w.feed_id for w in writes])
        return real_write(session, writes)

    monkeypatch.setattr(poll_tasks.polling, "write_polls", write_polls)
    _queued_polls()
    time.sleep(1.0)  # the host's interval since the first message's last request
    assert poll_tasks.poll_feeds([[a, leases[a]], [b, leases[b]]]) == 0
    assert _queued_polls() == []  # nothing sent back: b was held
    assert started["b"] - started["a"] >= 0.8  # a second apart (b waited for its turn)
    assert written == [[a, b]]
    for f in (a, b):
        feed = p.feed(f)
        assert feed.lease_until is None and feed.polls_total == 2 and feed.last_status == 304
    with unit_of_work() as s:
        outcomes = sorted(x.feed_id for x in s.exec(select(FeedPoll)) if x.http_status == 304)
    assert outcomes == [a, b]


def test_a_message_of_one_feed_reads_it_outside_the_polls_transaction_on_postgresql(
    poller: Any, server: Any, pg_url: str
) -> None:
    """On PostgreSQL a poll message of one feed (a poll sent back for its turn) reads
    its feed as a longer message does, outside a transaction (``read_feeds``), not in
    the poll's own transaction: that transaction holds no snapshot while the request
    is on the network, and a poll sent back again leaves no ``BEGIN`` and
    ``ROLLBACK`` behind. The poll is written as before."""
    import re

    import psycopg
    from sqlalchemy import event

    from tasks import polls as poll_tasks
    from worker.core.db import get_engine

    p = poller(DATABASE_URL=pg_url, RESPECT_ROBOTS="false")
    server.routes["/a.xml"] = Reply(body=rss(server.url("/"), []), content_type=RSS)
    (a,) = p.add(server.url("/a.xml"))
    (lease,) = p.claim()
    reads: list[Any] = []

    def after(conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT") and re.search(r"\bFROM feed\b", statement):
            reads.append(conn.connection.dbapi_connection.info.transaction_status)

    engine = get_engine()
    event.listen(engine, "after_cursor_execute", after)
    try:
        assert poll_tasks.poll_feeds([[a, lease.token]]) == 0
    finally:
        event.remove(engine, "after_cursor_execute", after)
    assert reads == [psycopg.pq.TransactionStatus.IDLE]  # in the poll's: INTRANS
    feed = p.feed(a)
    assert feed.polls_total == 1 and feed.lease_until is None
    assert server.hits["/a.xml"] == 1


def _two_feeds_polled_once_and_due_again(p: Any, server: Any) -> tuple[int, int, dict[int, str]]:
    """Feeds ``/a.xml`` and ``/b.xml`` (empty, with an ETag) added, polled once, made due
    again and claimed: their ids and the new leases."""
    from tasks import polls as poll_tasks

    for name in "ab":
        server.routes[f"/{name}.xml"] = Reply(
            body=rss(server.url("/"), []), content_type=RSS, headers={"ETag": f'"{name}"'}
        )
    a, b = p.add(*[server.url(f"/{name}.xml") for name in "ab"])
    leases = {lease.feed_id: lease.token for lease in p.claim()}
    assert poll_tasks.poll_feeds([[f, leases[f]] for f in (a, b)]) == 0
    with unit_of_work() as s:
        make_due(s, [a, b])
    return a, b, {lease.feed_id: lease.token for lease in p.claim()}


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_record_entries_sends_only_the_entries_not_yet_stored_to_the_insert(
    poller: Any, db: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed feed lists mostly entries it listed before: only its unseen entries
    are sent to the articles' ``INSERT`` (each stored one was sent whole, summary and
    content, to be refused by its conflict, on every change of the feed; issue 16). The
    entries stored by another feed get this feed's sighting and are not counted new. An
    article another poll inserted between the look and the ``INSERT`` (its conflict) is
    found again: its sighting is written, and it is not counted new either."""

    from worker.feeds import polling
    from worker.feeds.parsing import Entry, ParsedFeed
    from worker.feeds.polling import record_entries

    extra = {"DATABASE_URL": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    p = poller(**extra)
    feed_id, other_id = p.add("http://unseen.example/rss.xml", "http://unseen.example/b.xml")
    now = utcnow().replace(microsecond=0)
    old = [Entry(link=f"http://unseen.example/old-{i}", summary="s" * 50) for i in range(3)]
    theirs = Entry(link="http://unseen.example/theirs")
    with unit_of_work() as s:
        feed, other = s.get(Feed, feed_id), s.get(Feed, other_id)
        assert feed is not None and other is not None
        assert len(record_entries(s, feed, ParsedFeed(entries=old), now)) == 3
        assert len(record_entries(s, other, ParsedFeed(entries=[theirs]), now)) == 1
    new = Entry(link="http://unseen.example/new-0")
    made, captured = _record_seeing(feed_id, [new, theirs, *old], now, "INSERT INTO ARTICLE")
    sent = [repr(params) for _statement, params, _many in captured]
    with unit_of_work() as s:
        ids = {a.url: a.id for a in s.exec(select(Article))}
        sightings = {(x.article_id, x.feed_id) for x in s.exec(select(Sighting))}
    assert made == [(ids["http://unseen.example/new-0"], "unseen.example")]
    assert len(sent) == 1 and "new-0" in sent[0]
    assert not any(x in sent[0] for x in ("old-0", "old-1", "old-2", "theirs"))
    assert {(ids[e.link], feed_id) for e in [new, theirs, *old]} <= sightings

    # The look missed the stored articles (another poll inserted them meanwhile): the
    # INSERT's conflicts leave them, and they are looked up again for their sightings.
    real = polling._article_ids
    calls: list[int] = []

    def missed_first(session: Any, hashes: list[str]) -> dict[str, int]:
        calls.append(len(hashes))
        return {} if len(calls) == 1 else real(session, hashes)

    monkeypatch.setattr(polling, "_article_ids", missed_first)
    (third_id,) = p.add("http://unseen.example/c.xml")
    with unit_of_work() as s:
        third = s.get(Feed, third_id)
        assert third is not None
        made = record_entries(s, third, ParsedFeed(entries=[theirs, *old]), now)
    with unit_of_work() as s:
        sightings = {(x.article_id, x.feed_id) for x in s.exec(select(Sighting))}
    assert made == [] and calls == [4, 4]
    assert {(ids[e.link], third_id) for e in [theirs, *old]} <= sightings
