"""robots.txt is a request to its host like any other (issue 16, politeness): it is
downloaded in the host's slot, so the host's server sees its robots.txt request and the
first page or feed request at least the host's interval apart, with either limiter (in
the process, and on Redis for every process). The caller's own request waits for the
host's next turn; the robots.txt it downloaded is kept when it is sent back (its
transaction rolls back), and is not downloaded again at that turn, even by another
process. An unreachable robots.txt still closes the host (RobotsUnavailable)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from schemas.models import ArticleState, RobotsTxt
from schemas.types import utcnow
from tests.support.db import cached_robots, discovered_article, load_article
from worker.network.robots import RobotsKept, RobotsUnavailable, forget_robots_failures
from worker.network.urls import origin_of
from worker.testing.server import LocalServer, Reply

PAGE = b"<html><body><article><p>" + b"Some words of news. " * 40 + b"</p></article></body></html>"
ROBOTS = Reply(body=b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
INTERVAL = 1.0
SLACK = 0.1
"""The server stamps a request when its thread has read the headers: a robots.txt
request read late (a server thread waiting for a core: 66 ms at load 35) shortens the
gap it sees by as much, while the client's sends are >= INTERVAL apart
(worker.network.netguard.send_gate). The same bound as tests/test_fetch_redirects.py;
without the slot the gap was milliseconds."""


@pytest.fixture(autouse=True)
def _fresh_robots_memory() -> Any:
    forget_robots_failures()
    yield
    forget_robots_failures()


def _limits(kind: str, redis_url: str | None) -> dict[str, Any]:
    limits: dict[str, Any] = {"HOST_MIN_INTERVAL": INTERVAL, "HOST_MAX_CONCURRENCY": 2}
    if kind == "redis":
        limits["BROKER_URL"] = redis_url
    return limits


@pytest.fixture(params=["local", "redis"])
def limits(request: Any) -> dict[str, Any]:
    """Settings of the host limits for either limiter: in the process, or on Redis."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return _limits(request.param, redis_url)


def _gap(server: LocalServer, first: str, then: str) -> float:
    arrived = {path: at for at, path in reversed(server.arrivals)}  # each path's first
    return arrived[then] - arrived[first]


def _stored_robots(url: str) -> RobotsTxt | None:
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        row = s.get(RobotsTxt, origin_of(url))
        if row is not None:
            s.expunge(row)
        return row


def _claimed_feed(settings: Any, server: LocalServer) -> tuple[int, str]:
    """A host with a robots.txt and one empty feed, added and claimed for a poll: the
    feed's id and lease token."""
    from worker.core.db import init_db, unit_of_work
    from worker.feeds.polling import claim_due_feeds
    from worker.feeds.subscriptions import add_feeds
    from worker.testing.content import rss

    init_db(settings)
    server.routes["/robots.txt"] = ROBOTS
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), []), content_type="application/rss+xml"
    )
    with unit_of_work() as s:
        add_feeds(s, [(server.url("/feed.xml"), None, [])], settings)
    with unit_of_work() as s:
        ((feed_id, token),) = claim_due_feeds(s, settings)
    return feed_id, token


def _fetch(article_id: int) -> Any:
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import FIRST as FETCH

    return run_step(FETCH, article_id, follow_up=False)


def test_a_hosts_first_page_follows_its_robots_txt_by_the_interval(
    configure: Any, server: LocalServer, limits: dict[str, Any]
) -> None:
    """A host's first fetch downloads robots.txt in the host's slot (the article's turn)
    and is sent back for the host's next turn, uncounted, the robots.txt kept in the
    database. At that turn, in a process that never saw the host (its memory of
    robots.txt forgotten), the page is fetched without asking for robots.txt again, an
    interval after it. (Before: robots.txt and the page 2 ms apart.)"""
    from worker.core.db import init_db

    init_db(configure(**limits))
    server.routes["/robots.txt"] = ROBOTS
    server.routes["/news/a"] = Reply(body=PAGE)
    article_id = discovered_article(server.url("/news/a"))

    first = _fetch(article_id)
    assert not first.advanced and first.retry_in is not None
    assert isinstance(first.cause, RobotsKept)  # a turn, with the robots.txt to keep
    assert first.retry_in <= INTERVAL  # the host's next turn
    assert server.hits["/robots.txt"] == 1 and server.hits["/news/a"] == 0
    waiting = load_article(article_id)
    assert waiting.state == ArticleState.discovered
    assert waiting.attempts == 0 and waiting.step_starts == 0  # a turn is no failure
    kept = _stored_robots(server.url("/"))
    assert kept is not None and kept.status == 200 and "/private/" in kept.body

    forget_robots_failures()  # the retry may come to another process
    time.sleep(first.retry_in)  # the retry's countdown
    assert _fetch(article_id).advanced
    assert server.hits["/robots.txt"] == 1 and server.hits["/news/a"] == 1
    assert load_article(article_id).state == ArticleState.fetched
    assert _gap(server, "/robots.txt", "/news/a") >= INTERVAL - SLACK, server.arrivals


def test_robots_txt_of_a_busy_host_waits_for_the_polls_turn(
    configure: Any, server: LocalServer
) -> None:
    """robots.txt is not requested outside a turn: while the host is busy (an article's
    page just took its slot), a poll that must download robots.txt waits for its turn
    before asking for it. (Before: robots.txt at once, then the poll waited.)"""
    from tasks.polls import poll_feeds
    from worker.core.db import init_db, unit_of_work
    from worker.feeds.polling import claim_due_feeds
    from worker.feeds.subscriptions import add_feeds
    from worker.testing.content import rss

    settings = configure(HOST_MIN_INTERVAL=60, HOST_MAX_CONCURRENCY=2)
    init_db(settings)
    server.routes["/robots.txt"] = ROBOTS
    server.routes["/news/a"] = Reply(body=PAGE)
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), []), content_type="application/rss+xml"
    )
    cached_robots(server.url("/"))
    article_id = discovered_article(server.url("/news/a"))
    assert _fetch(article_id).advanced  # robots.txt cached: the page at once
    # robots.txt to download again (expired, or another process's new host)
    forget_robots_failures()
    with unit_of_work() as s:
        s.delete(s.get(RobotsTxt, origin_of(server.url("/"))))
        add_feeds(s, [(server.url("/feed.xml"), None, [])], settings)
    with unit_of_work() as s:
        ((feed_id, token),) = claim_due_feeds(s, settings)

    assert poll_feeds([[feed_id, token]]) == 0
    assert server.hits.get("/robots.txt", 0) == 0  # not asked outside the host's turn
    assert server.hits.get("/feed.xml", 0) == 0


def test_a_hosts_first_poll_follows_its_robots_txt_by_the_interval(
    configure: Any, server: LocalServer, limits: dict[str, Any]
) -> None:
    """A feed's first poll downloads robots.txt in its turn, and its message polls the
    feed at the host's next turn (held, a moment ahead): the server sees the feed an
    interval after robots.txt, and the robots.txt is kept in the database although the
    first poll's transaction rolled back."""
    from tasks.polls import poll_feeds
    from worker.core.db import unit_of_work

    settings = configure(**limits)
    feed_id, token = _claimed_feed(settings, server)

    assert poll_feeds([[feed_id, token]]) == 0
    assert server.hits["/robots.txt"] == 1 and server.hits["/feed.xml"] == 1
    assert _gap(server, "/robots.txt", "/feed.xml") >= INTERVAL - SLACK, server.arrivals
    kept = _stored_robots(server.url("/"))
    assert kept is not None and kept.status == 200 and "/private/" in kept.body
    from schemas.models import Feed

    with unit_of_work() as s:
        feed = s.get(Feed, feed_id)
        assert feed is not None and feed.last_status == 200 and feed.polls_total == 1


def test_a_poll_sent_back_after_robots_txt_keeps_it(configure: Any, server: LocalServer) -> None:
    """An interval longer than a message holds a poll for: the poll that downloaded
    robots.txt is sent back for the host's next turn in a message of its own, with the
    robots.txt kept in the database, not downloaded again by the poll at that turn."""
    from tasks.polls import poll_feeds
    from tests.test_dispatch import _queued_polls
    from worker.network.politeness import LocalHostLimiter
    from worker.pipeline import resources

    settings = configure(HOST_MIN_INTERVAL=60, HOST_MAX_CONCURRENCY=2)
    feed_id, token = _claimed_feed(settings, server)

    assert poll_feeds([[feed_id, token]]) == 0
    assert server.hits["/robots.txt"] == 1 and server.hits.get("/feed.xml", 0) == 0
    assert [args for _, args in _queued_polls()] == [[[[feed_id, token]]]]  # sent back
    assert _stored_robots(server.url("/")) is not None  # kept

    forget_robots_failures()  # the message may come to another process
    limiter = resources.host_limiter()
    assert isinstance(limiter, LocalHostLimiter)
    limiter.offset = 60.0  # its turn
    assert poll_feeds([[feed_id, token]]) == 0
    assert server.hits["/robots.txt"] == 1 and server.hits["/feed.xml"] == 1


def test_an_unreachable_robots_txt_still_closes_the_host(
    configure: Any, server: LocalServer
) -> None:
    """robots.txt answering 503, asked in the host's slot: the fetch is a counted
    transient attempt with the real cause (RobotsUnavailable, not a turn), and the page
    is not requested."""
    from worker.core.db import init_db

    init_db(configure(HOST_MIN_INTERVAL=INTERVAL, HOST_MAX_CONCURRENCY=2))
    server.routes["/robots.txt"] = Reply(503, b"down")
    server.routes["/news/a"] = Reply(body=PAGE)
    article_id = discovered_article(server.url("/news/a"))

    outcome = _fetch(article_id)
    assert isinstance(outcome.cause, RobotsUnavailable)
    assert outcome.retry_in is not None and outcome.retry_in > 60  # robots.txt's own wait
    assert server.hits["/robots.txt"] == 1 and server.hits["/news/a"] == 0
    article = load_article(article_id)
    assert article.state == ArticleState.discovered and article.attempts == 1
    assert "robots.txt of 127.0.0.1 unreachable: HTTP 503" in (article.failure_reason or "")


def test_feeds_discover_waits_for_its_hosts_turns(configure: Any, server: LocalServer) -> None:
    """`feeds discover` is a command, not a worker thread: robots.txt, the site's page
    and the feed it links are requests of one host, each waited for at the host's pace
    (before: the page followed robots.txt at once, and the linked feed, asked while the
    host was busy, was skipped as if it were no feed: nothing found)."""
    from worker.core.db import init_db, unit_of_work
    from worker.feeds.subscriptions import discover_feeds
    from worker.network.http import HttpClient
    from worker.network.politeness import LocalHostLimiter
    from worker.testing.content import rss

    settings = configure(HOST_MIN_INTERVAL=INTERVAL, HOST_MAX_CONCURRENCY=2)
    init_db(settings)
    server.routes["/robots.txt"] = ROBOTS
    server.routes["/"] = Reply(
        body=b'<html><head><link rel="alternate" type="application/rss+xml" '
        b'href="/feed.xml"></head><body>A harbour town</body></html>'
    )
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), [(server.url("/n/1"), "One", utcnow())], title="Harbour"),
        content_type="application/rss+xml",
    )
    http = HttpClient(settings)
    try:
        with unit_of_work() as s:
            found = discover_feeds(s, http, LocalHostLimiter(settings), server.url("/"), settings)
    finally:
        http.close()
    assert [(f.url, f.found_by) for f in found] == [(server.url("/feed.xml"), "link")]
    assert [path for _, path in server.arrivals] == ["/robots.txt", "/", "/feed.xml"]
    assert _gap(server, "/robots.txt", "/") >= INTERVAL - SLACK, server.arrivals
    assert _gap(server, "/", "/feed.xml") >= INTERVAL - SLACK, server.arrivals
