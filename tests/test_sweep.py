"""The recovery sweep against a real Redis broker: it re-sends stuck articles, but
leaves a backlogged queue alone (its articles are waiting their turn there, and
re-sending them would pile duplicates onto the backlog)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import select

from schemas.models import Article, ArticleState
from schemas.types import utcnow


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
    from tasks.maintenance import sweep
    from worker.db import init_db, unit_of_work

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
