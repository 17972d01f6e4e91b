"""A redirect hop is a request of its own on its host's timeline (issue 16): a redirect
to the same host is not followed inside the first request's turn, and a hop to another
host counts against that host's limits. A hop whose host is not free is made at the
host's turn, from where the chain stopped, as Scrapy's redirect middleware hands a
redirect back to its scheduler as a new request."""

from __future__ import annotations

import time
from typing import Any

from schemas.models import ArticleState
from tests.support.db import cached_robots, discovered_article, load_article
from worker.network.politeness import TURN_LEAD, LocalHostLimiter
from worker.network.robots import forget_robots_failures
from worker.testing.server import LocalServer, Reply

PAGE = b"<html><body><article><p>" + b"Some words of news. " * 40 + b"</p></article></body></html>"
ROBOTS = Reply(body=b"User-agent: *\nDisallow:\n", content_type="text/plain")


def _fetch(article_id: int) -> Any:
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import FIRST as FETCH

    return run_step(FETCH, article_id, follow_up=False)


def _limiter() -> LocalHostLimiter:
    from worker.pipeline import resources

    limiter = resources.host_limiter()
    assert isinstance(limiter, LocalHostLimiter)
    return limiter


def test_a_redirect_to_the_same_host_waits_for_the_hosts_interval(
    configure: Any, server: LocalServer
) -> None:
    """Interval 1 s: the server sees the redirect's target requested a whole interval
    after the URL that redirected, not in the same turn (it was 1 ms after). The hop
    is sent back for its turn, uncounted, and the fetch goes on from it: the first URL
    is not requested again."""
    from worker.core.db import init_db

    forget_robots_failures()
    init_db(configure(HOST_MIN_INTERVAL=1, HOST_MAX_CONCURRENCY=2))
    server.routes["/robots.txt"] = ROBOTS
    cached_robots(server.url("/"))  # (robots.txt's own turn: tests/test_robots_slot.py)
    server.routes["/old"] = Reply(301, headers={"Location": "/new"})
    server.routes["/new"] = Reply(body=PAGE)
    article_id = discovered_article(server.url("/old"))

    first = _fetch(article_id)
    assert not first.advanced and first.retry_in is not None
    assert first.retry_in <= 1.0 - TURN_LEAD + 0.01  # for the host's next turn
    assert server.hits["/old"] == 1 and server.hits["/new"] == 0
    waiting = load_article(article_id)
    assert waiting.state == ArticleState.discovered
    assert waiting.final_url == server.url("/new") and waiting.redirects == 1
    assert waiting.http_status == 301
    assert waiting.attempts == 0 and waiting.step_starts == 0  # a turn is no failure

    time.sleep(first.retry_in)  # the retry's countdown
    assert _fetch(article_id).advanced
    assert server.hits["/old"] == 1 and server.hits["/new"] == 1
    fetched = load_article(article_id)
    assert fetched.state == ArticleState.fetched and fetched.final_url == server.url("/new")
    assert fetched.redirects == 0 and fetched.http_status == 200
    arrived = {path: at for at, path in server.arrivals if path in ("/old", "/new")}
    # The limiter starts the two requests >= 1 s apart; an arrival is later than its
    # start by the time the request takes to leave (milliseconds here).
    assert arrived["/new"] - arrived["/old"] >= 0.9, arrived


def test_a_hop_to_another_host_takes_a_slot_there(configure: Any, server: LocalServer) -> None:
    """Interval 60 s: a redirect to a free host is followed at once, and is that host's
    request: the next fetch of that host is sent back for its turn."""
    from worker.core.db import init_db

    forget_robots_failures()
    init_db(configure(HOST_MIN_INTERVAL=60, HOST_MAX_CONCURRENCY=2))
    other = LocalServer("127.0.0.2").start()
    try:
        for site in (server, other):
            site.routes["/robots.txt"] = ROBOTS
            cached_robots(site.url("/"))
        server.routes["/moved"] = Reply(302, headers={"Location": other.url("/story")})
        other.routes["/story"] = Reply(body=PAGE)
        other.routes["/next"] = Reply(body=PAGE.replace(b"Some", b"Next"))
        moved = discovered_article(server.url("/moved"))
        following = discovered_article(other.url("/next"))

        assert _fetch(moved).advanced  # the other host was free: followed in the same step
        assert load_article(moved).final_url == other.url("/story")
        waits = _fetch(following)
        assert not waits.advanced and waits.retry_in is not None
        assert waits.retry_in > 50  # the hop started the other host's interval
        assert other.hits["/next"] == 0
    finally:
        other.stop()


def test_redirect_loops_and_the_hop_limit_hold_across_turns(
    configure: Any, server: LocalServer
) -> None:
    """A chain resumed at a hop keeps its count (CLAIMWIRE_MAX_REDIRECTS) and knows the
    URL it started from: neither a loop nor an endless chain of same-host redirects
    outlives the turns between its hops."""
    from worker.core.db import init_db

    forget_robots_failures()
    init_db(configure(HOST_MIN_INTERVAL=60, HOST_MAX_CONCURRENCY=2, MAX_REDIRECTS=2))
    server.routes["/robots.txt"] = ROBOTS
    cached_robots(server.url("/"))
    server.routes["/a"] = Reply(302, headers={"Location": "/b"})
    server.routes["/b"] = Reply(301, headers={"Location": "/a"})
    for i in range(10):
        server.routes[f"/r{i}"] = Reply(307, headers={"Location": f"/r{i + 1}"})
    loop = discovered_article(server.url("/a"))
    chain = discovered_article(server.url("/r0"))
    limiter = _limiter()

    turn = 0.0
    for _ in range(5):
        for article_id in (loop, chain):
            _fetch(article_id)
        turn += 120.0  # both hops' turns are within two intervals
        limiter.offset = turn
    looped, capped = load_article(loop), load_article(chain)
    assert looped.state == ArticleState.failed and "redirect loop" in (looped.failure_reason or "")
    assert server.hits["/a"] == 1 and server.hits["/b"] == 1
    assert capped.state == ArticleState.failed
    assert "more than 2 redirects" in (capped.failure_reason or "")
    assert [server.hits[f"/r{i}"] for i in range(4)] == [1, 1, 1, 0]  # the URL + 2 hops
    assert looped.attempts == 0 and capped.attempts == 0
