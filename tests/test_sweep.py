"""The recovery sweep against a real Redis broker: it re-sends stuck articles, but
leaves a backlogged queue alone (its articles are waiting their turn there, and
re-sending them would pile duplicates onto the backlog), nor an article whose step
waits for its own scheduled retry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from schemas.models import Article, ArticleState
from schemas.types import utcnow
from tests.support.db import discovered_article


def _articles(n: int, state: ArticleState, tag: str) -> list[Article]:
    old = utcnow() - timedelta(hours=1)
    return [
        Article(
            url=f"https://news.example/{tag}/{i}",
            url_hash=f"{tag}-{i}",
            host="news.example",
            state=state,
            discovered_at=old,
            state_changed_at=old,
        )
        for i in range(n)
    ]


def test_sweep_resends_stuck_articles_but_not_into_a_backlogged_queue(
    configure: Any, redis_url: str
) -> None:
    import redis

    settings = configure(broker_url=redis_url, sweep_backlog_limit=5, stale_after=60)
    from tasks.schedule import sweep
    from worker.core.db import init_db, unit_of_work

    init_db(settings)
    with unit_of_work() as s:
        s.add_all(
            _articles(3, ArticleState.discovered, "d") + _articles(4, ArticleState.fetched, "f")
        )
    client = redis.Redis.from_url(redis_url)
    client.delete("io", "cpu")
    client.rpush("cpu", *[b"{}"] * 6)  # a backlog of 6 > 5 on the cpu queue

    assert sweep() == 3  # only the fetch steps (io queue) are re-sent
    assert client.llen("io") == 3 and client.llen("cpu") == 6
    with unit_of_work() as s:
        waiting = s.exec(select(Article).where(Article.state == ArticleState.fetched)).all()
        # not claimed: still stale, so they go as soon as the backlog drains
        assert all(a.state_changed_at < utcnow() - timedelta(minutes=30) for a in waiting)

    client.delete("cpu")
    assert sweep() == 4  # the cpu queue drained: the extract steps go now
    assert client.llen("cpu") == 4
    assert sweep() == 0  # and each article once per stale_after, not on every sweep
    client.delete("io", "cpu")


@pytest.fixture(params=["sqlite", "postgres"])
def db_settings(request: pytest.FixtureRequest, configure: Any) -> Any:
    overrides: dict[str, Any] = {"stale_after": 60}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    settings = configure(**overrides)
    from worker.core.db import init_db

    init_db(settings)
    return settings


def test_a_step_waiting_for_its_host_is_not_sent_again_by_the_sweep(
    db_settings: Any, server: Any
) -> None:
    """A fetch that finds its host unavailable (robots.txt answers 503: nothing on the
    host may be fetched for 300 s) schedules its own retry. The sweep must not send a
    second copy while that retry waits: every copy retries for as long as the host is
    down, so a copy per ``stale_after`` piled up endless retry chains. If the retry is
    lost, the sweep sends the step again once it is ``stale_after`` overdue; a restart
    of the embedded service (``older_than=0``) sends it at once."""
    from celery.exceptions import Retry

    from tasks.articles import fetch_article
    from tasks.schedule import sweep
    from worker.core.db import unit_of_work
    from worker.network.politeness import HostBusy
    from worker.pipeline.sweep import stale_articles
    from worker.testing.server import Reply

    server.routes["/robots.txt"] = Reply(503, b"down", content_type="text/plain")
    url = server.url("/news/a")
    aid = discovered_article(url, at=utcnow() - timedelta(hours=1))
    with pytest.raises(Retry) as retry:  # the retry is scheduled (on the embedded broker)
        fetch_article(aid)
    assert isinstance(retry.value.__cause__, HostBusy), retry.value.__cause__
    assert server.hits["/news/a"] == 0

    assert sweep() == 0, "the sweep sent a second copy while the step's retry waits"
    with unit_of_work() as s:
        row = s.get(Article, aid)
        assert row is not None and row.state == ArticleState.discovered
        # counted (a host that stays unreachable ends in quarantine), but not a death
        assert row.attempts == 1 and row.step_starts == 0
        # the retry is lost: the sweep takes over once it is stale_after overdue
        later = utcnow() + timedelta(seconds=300 + 1 + db_settings.stale_after + 1)
        assert stale_articles(s, db_settings, now=later) == [(aid, "discovered")]
    with unit_of_work() as s:
        assert stale_articles(s, db_settings, older_than=0) == [(aid, "discovered")]
