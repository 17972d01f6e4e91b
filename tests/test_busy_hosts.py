"""A host that cannot be reached, or is busy, must not stall everything else.

* An article whose host's robots.txt cannot be read (a resolver that does not answer,
  a refused connection, a 5xx) waits, counted, and ends quarantined with the real cause
  after ``max_attempts`` checks of robots.txt, instead of waiting uncounted for ever
  (which kept ``run --until-idle`` from ever ending).
* A host name that does not exist (the resolver's NXDOMAIN, a name under ``.invalid``)
  is no wait at all: its article is quarantined at once with the cause, and a feed on
  it fails its poll with it; nothing about its robots.txt is cached.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from schemas.models import ArticleState
from schemas.types import utcnow
from tests.support.db import discovered_article, load_article
from worker.network.robots import ROBOTS_ERROR_TTL, forget_robots_failures
from worker.testing.server import Reply


@pytest.fixture(autouse=True)
def _fresh_robots_memory() -> None:
    forget_robots_failures()


def _resolver_says(
    monkeypatch: pytest.MonkeyPatch, host: str, code: int, why: str
) -> Callable[[], int]:
    """``getaddrinfo`` answers ``host`` with the error ``code`` (every other name as
    before); returns how often it was asked about ``host``."""
    real = socket.getaddrinfo
    asked = [0]

    def getaddrinfo(name: Any, *args: Any, **kwargs: Any) -> Any:
        if name == host:
            asked[0] += 1
            raise socket.gaierror(code, why)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lambda: asked[0]


@pytest.mark.parametrize("cause", ["dns", "http503"])
def test_an_article_on_an_unreachable_host_ends_quarantined_with_the_cause(
    configure: Any, server: Any, cause: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import Retry

    from tasks.articles import fetch_article
    from worker.core.db import init_db

    settings = configure(MAX_ATTEMPTS=3)
    init_db(settings)
    if cause == "dns":
        # the resolver gives no answer (EAI_AGAIN): a transient failure, retried
        host = "news.unanswered.example"
        _resolver_says(monkeypatch, host, socket.EAI_AGAIN, "Temporary failure in name resolution")
        url, why = f"http://{host}/a", f"cannot resolve {host}"
    else:
        server.routes["/robots.txt"] = Reply(503, b"down", content_type="text/plain")
        url, why = server.url("/news/a"), "HTTP 503"
    aid = discovered_article(url)

    for attempt in (1, 2):
        with pytest.raises(Retry):
            fetch_article(aid)
        article = load_article(aid)
        assert article.state == ArticleState.discovered
        assert article.attempts == attempt and article.step_starts == 0
        # Recorded on the article while it waits: `claimwire status` and exports say why.
        reason = article.failure_reason or ""
        assert reason.startswith("tasks.fetching.fetch_article: robots.txt of "), reason
        assert why in reason, reason
        # The retry comes when robots.txt is asked again (not sooner: each attempt is one
        # check of robots.txt), and the sweep's mark is moved there.
        held = (article.state_changed_at - utcnow()).total_seconds()
        assert ROBOTS_ERROR_TTL - 5 < held <= ROBOTS_ERROR_TTL + 1
        forget_robots_failures()  # as if ROBOTS_ERROR_TTL had passed

    assert fetch_article(aid) is False  # no retry: the article has ended
    article = load_article(aid)
    assert article.state == ArticleState.quarantined
    assert article.failed_state == ArticleState.discovered and article.attempts == 3
    assert why in (article.failure_reason or "")
    if cause == "http503":
        assert server.hits["/robots.txt"] == 3  # one check per attempt
        assert server.hits["/news/a"] == 0  # RFC 9309: never fetched meanwhile


@pytest.mark.parametrize("how", ["nxdomain", "invalid"])
def test_an_article_on_a_host_that_does_not_exist_is_quarantined_at_once(
    configure: Any, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolver answered that the name does not exist (or it is under ``.invalid``,
    which never resolves): asking again in 5 minutes gets the same answer, so the
    article is not retried on a timer (five rounds of robots.txt, 20-25 minutes of
    `run --until-idle`): quarantined at once with the cause, for `claimwire replay`."""
    from sqlmodel import select

    from schemas.models import RobotsTxt
    from tasks.articles import fetch_article
    from worker.core.db import init_db, unit_of_work

    init_db(configure(MAX_ATTEMPTS=5))
    asked: Callable[[], int] = lambda: 0  # noqa: E731
    if how == "nxdomain":
        host = "news.gone.example"
        asked = _resolver_says(monkeypatch, host, socket.EAI_NONAME, "Name or service not known")
        why = f"host not found: {host} (Name or service not known)"
    else:
        host = "news.nowhere.invalid"
        why = f"host not found: {host} (a name under .invalid never resolves)"
    aid = discovered_article(f"http://{host}/a")

    assert fetch_article(aid) is False  # no retry
    article = load_article(aid)
    assert article.state == ArticleState.quarantined
    assert article.failed_state == ArticleState.discovered and article.attempts == 1
    assert article.failure_reason == f"tasks.fetching.fetch_article: {why}"
    assert article.step_starts == 0
    if how == "nxdomain":
        assert asked() == 1  # robots.txt's request asked; nothing after it
    with unit_of_work() as s:  # nothing cached: a name that appears later is asked then
        assert s.exec(select(RobotsTxt)).all() == []


def test_a_feed_on_a_host_that_does_not_exist_fails_its_poll_with_the_cause(
    configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its poll fails at once with the cause as the last error (a fact: when it is
    polled again is its ``next_poll_at``, shown as "in 1h" where it is read), and the
    feed keeps its later polls."""
    from tests.test_politeness import due_in_minutes
    from tests.test_polling import Poller

    host = "feeds.gone.example"
    _resolver_says(monkeypatch, host, socket.EAI_NONAME, "Name or service not known")
    p = Poller(configure())
    try:
        (fid,) = p.add(f"http://{host}/rss.xml")
        result = p.poll_now(fid)
        assert result.outcome == "error"
        feed = p.feed(fid)
        assert feed.last_error == f"host not found: {host} (Name or service not known)"
        assert result.error == feed.last_error
        assert feed.state == "failing" and feed.lease_until is None
        assert feed.permanent_failures == 1 and feed.transient_failures == 0
        assert due_in_minutes(feed.next_poll_at) >= 50  # polled again, at its backoff
    finally:
        p.close()


def test_a_busy_host_is_still_waited_for_uncounted(configure: Any, server: Any) -> None:
    """The contrast: a host that is only busy (our own limit, Retry-After) says when it
    is free, so its articles wait without counting an attempt."""
    from celery.exceptions import Retry

    from tasks.articles import fetch_article
    from worker.core.db import init_db
    from worker.pipeline import resources

    init_db(configure())
    aid = discovered_article(server.url("/news/b"))
    server.routes["/robots.txt"] = Reply(body=b"User-agent: *\nDisallow:\n")
    resources.host_limiter().back_off("127.0.0.1", 120)
    with pytest.raises(Retry):
        fetch_article(aid)
    article = load_article(aid)
    assert article.state == ArticleState.discovered
    assert article.attempts == 0 and article.failure_reason is None
    assert server.hits["/news/b"] == 0


# ------------------------------------------------------------------- a busy host


def _states(database_url: str) -> list[tuple[str, str, Any, int]]:
    """(host, state, fetched_at, attempts) of every article."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text("SELECT host, state, fetched_at, attempts FROM article")
            ).all()
    finally:
        engine.dispose()
    return [(r[0], r[1], r[2], int(r[3])) for r in rows]


def _serve_feed(server: Any, prefix: str, n: int) -> str:
    from worker.testing.content import BASE_DAY, rss

    links = []
    for i in range(n):
        path = f"{prefix}/story-{i}"
        server.routes[path] = Reply(body=f"<html><body><p>Story {i}</p></body></html>".encode())
        links.append((server.url(path), f"Story {i}", BASE_DAY + timedelta(hours=i)))
    server.routes[f"{prefix}/feed.xml"] = Reply(
        body=rss(server.url("/"), links), content_type="application/rss+xml"
    )
    return server.url(f"{prefix}/feed.xml")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_a_feed_on_an_idle_host_is_not_held_up_by_another_hosts_backlog(
    tmp_path: Any, pg_url: str, redis_url: str
) -> None:
    """One io worker as documented (``-Q io``, threads), the scheduler, real Redis and
    PostgreSQL. A host serving one request per second gets a backlog of 40 articles;
    then a feed on another host is added. It must be polled and its 5 articles fetched
    while the busy host's backlog is still being worked off: the scheduler's tasks no
    longer queue behind the fetches (their own queue, which an io worker consumes too),
    and a fetch of the busy host no longer holds a worker thread for up to 10 s."""
    from tests.conftest import claimwire, cli_env
    from tests.support.procs import processes
    from worker.testing.procs import celery_beat, celery_worker, wait_until, worker_env
    from worker.testing.server import LocalServer

    busy, idle = LocalServer("127.0.0.1").start(), LocalServer("127.0.0.2").start()
    try:
        busy_feed, idle_feed = _serve_feed(busy, "/b", 40), _serve_feed(idle, "/i", 5)
        env = cli_env(
            tmp_path,
            DATABASE_URL=pg_url,
            BROKER_URL=redis_url,
            DISPATCH_INTERVAL="1",
            HOST_MIN_INTERVAL="1",
            HOST_MAX_CONCURRENCY="1",
        )
        assert claimwire(["init"], env, tmp_path).returncode == 0
        assert claimwire(["feeds", "add", busy_feed], env, tmp_path).returncode == 0
        wenv = worker_env(env, pg_url, redis_url)
        worker = celery_worker("io", wenv, tmp_path, queues="io", concurrency=4)
        with processes(worker, celery_beat("beat", wenv, tmp_path)):

            def fetched(host: str) -> list[tuple[str, str, Any, int]]:
                return [r for r in _states(pg_url) if r[0] == host and r[2] is not None]

            # The backlog is there: the busy feed was polled and its fetches have begun.
            wait_until(lambda: len(fetched("127.0.0.1")) >= 3, 120, what="busy host fetches")
            assert claimwire(["feeds", "add", idle_feed], env, tmp_path).returncode == 0
            wait_until(lambda: len(fetched("127.0.0.2")) == 5, 120, what="idle host fetched")
            left = [r for r in _states(pg_url) if r[0] == "127.0.0.1" and r[1] == "discovered"]
            assert left, "the idle host's articles waited for the whole busy backlog"
            wait_until(lambda: len(fetched("127.0.0.1")) == 40, 180, what="busy backlog done")
        rows = _states(pg_url)
        last_idle = max(r[2] for r in rows if r[0] == "127.0.0.2")
        busy_times = sorted(r[2] for r in rows if r[0] == "127.0.0.1")
        assert last_idle < busy_times[-1]
        # Waiting for a busy host is not a failure: nothing counted, nothing quarantined.
        assert all(r[3] == 0 and r[1] != "quarantined" for r in rows), rows
        assert busy.hits["/b/feed.xml"] >= 1 and idle.hits["/i/feed.xml"] >= 1
    finally:
        busy.stop()
        idle.stop()
