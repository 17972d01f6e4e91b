"""A retry never waits in Redis longer than its visibility timeout allows (Redis would
deliver the waiting message a second time): a longer wait (a host's back-off, a
``Retry-After`` of hours) is scheduled at the cap, and the database holds the rest — the
article's sweep mark moves to the real end of the wait, the early retry meets the wait
again without counting, and the sweep sends the step once it is due."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from celery.exceptions import Retry

from schemas.models import Article, ArticleState
from schemas.types import utcnow
from tests.support.db import load_article
from worker.testing.server import LocalServer, Reply

WAIT = 5 * 3600.0  # longer than any countdown may be


@pytest.fixture()
def setup(configure: Any, redis_url: str, tmp_path: Any) -> Any:
    settings = configure(broker_url=redis_url, database_url=f"sqlite:///{tmp_path / 'cw.db'}")
    from worker.core.db import init_db

    init_db(settings)
    return settings


def _article(url: str) -> int:
    from worker.core.db import unit_of_work

    with unit_of_work() as s:
        a = Article(
            url=url,
            url_hash=url,
            host=urlsplit(url).netloc,
            state=ArticleState.discovered,
            state_changed_at=utcnow() - timedelta(hours=1),
        )
        s.add(a)
        s.flush()
        assert a.id is not None
        return a.id


def _run_as_worker(task: Any, aid: int, redis_url: str, retries: int = 0) -> float:
    """Run the task as a worker does (not eagerly): its retry is published to Redis.
    Returns the retry's countdown in seconds: of the ``Retry`` raised, or, for a step
    sent back for its host's turn (no error: the retry is sent and the task returns),
    of the message it published."""
    task.push_request(
        id=f"t-{aid}-{retries}",
        args=[aid],
        kwargs={},
        retries=retries,
        is_eager=False,
        called_directly=False,
        delivery_info={"routing_key": "io", "exchange": ""},
    )
    try:
        try:
            assert task.run(aid) is False
        except Retry as raised:
            assert raised.when is not None
            return float(raised.when)
    finally:
        task.pop_request()
    return (max(_queued_etas(redis_url)) - utcnow()).total_seconds()


def _queued_etas(redis_url: str) -> list[datetime]:
    import redis

    client = redis.Redis.from_url(redis_url)
    etas = []
    for raw in client.lrange("io", 0, -1):
        eta = json.loads(raw)["headers"]["eta"]
        etas.append(datetime.fromisoformat(eta).astimezone(UTC))
    return etas


def _swept(aid: int, settings: Any, now: datetime) -> bool:
    from worker.core.db import unit_of_work
    from worker.pipeline.sweep import stale_articles

    with unit_of_work() as s:
        return aid in [i for i, _ in stale_articles(s, settings, now=now)]


def test_cap_is_below_the_visibility_timeout(setup: Any) -> None:
    from worker.celery_app import celery_config
    from worker.core.queues import max_countdown

    visibility = celery_config(setup.model_copy(update={"broker_url": "redis://x/0"}))[
        "broker_transport_options"
    ]["visibility_timeout"]
    cap = max_countdown(setup)
    assert cap + setup.task_time_limit < visibility
    assert cap >= 60


def test_a_host_wait_longer_than_the_cap_is_scheduled_at_the_cap_and_swept_when_due(
    setup: Any, server: LocalServer, redis_url: str
) -> None:
    from tasks.articles import fetch_article
    from worker.core.queues import max_countdown
    from worker.pipeline import resources

    cap = max_countdown(setup)
    server.routes["/news/a"] = Reply(body=b"<html><body><p>hello</p></body></html>")
    aid = _article(server.url("/news/a"))
    resources.host_limiter().back_off(urlsplit(server.url("/")).netloc, WAIT)

    before = utcnow()
    when = _run_as_worker(fetch_article, aid, redis_url)
    assert 0 < when <= cap
    etas = _queued_etas(redis_url)
    assert len(etas) == 1
    assert etas[0] <= utcnow() + timedelta(seconds=cap)

    a = load_article(aid)
    assert a.state == ArticleState.discovered and a.attempts == 0 and a.step_starts == 0
    due = before + timedelta(seconds=WAIT)
    assert a.state_changed_at >= due - timedelta(seconds=5), "the mark holds the whole wait"
    assert server.hits.get("/news/a", 0) == 0

    # The retry, at the cap: the host still waits; again not counted, again capped, and
    # the mark does not move back.
    when = _run_as_worker(fetch_article, aid, redis_url, retries=1)
    assert when <= cap
    again = load_article(aid)
    assert again.attempts == 0 and again.state_changed_at >= a.state_changed_at

    # The database picks it up when due: not while it waits, once the wait is over (by
    # stale_after, if no retry took it first).
    assert not _swept(aid, setup, now=utcnow() + timedelta(seconds=cap))
    assert not _swept(aid, setup, now=due)
    assert _swept(aid, setup, now=due + timedelta(seconds=setup.stale_after + 10))


def test_a_retry_after_of_hours_counts_once_and_waits_in_the_database(
    setup: Any, server: LocalServer, redis_url: str
) -> None:
    from tasks.articles import fetch_article
    from worker.core.queues import max_countdown

    cap = max_countdown(setup)
    server.routes["/news/b"] = Reply(status=429, headers={"Retry-After": str(int(WAIT))})
    aid = _article(server.url("/news/b"))

    before = utcnow()
    when = _run_as_worker(fetch_article, aid, redis_url)
    assert 0 < when <= cap
    assert all(eta <= utcnow() + timedelta(seconds=cap) for eta in _queued_etas(redis_url))
    a = load_article(aid)
    assert a.state == ArticleState.discovered and a.attempts == 1
    assert a.state_changed_at >= before + timedelta(seconds=WAIT - 5)
    assert server.hits["/news/b"] == 1

    # The early retry meets the host's back-off (set for the whole Retry-After): it does
    # not ask the server again and counts nothing.
    when = _run_as_worker(fetch_article, aid, redis_url, retries=1)
    assert when <= cap
    assert server.hits["/news/b"] == 1
    assert load_article(aid).attempts == 1
    assert not _swept(aid, setup, now=before + timedelta(seconds=WAIT - 60))
    assert _swept(aid, setup, now=before + timedelta(seconds=WAIT + setup.stale_after + 10))
