"""The `run --until-idle` watcher's bounded count of pending work
(``worker.reports.status.pending_work_at_most``): ``min(pending_work, bound)``, whatever
mix of feeds and articles is pending."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select


def test_bounded_count_is_the_count_up_to_its_bound(configure) -> None:
    configure()
    from schemas.models import Article, ArticleState, Feed
    from schemas.types import utcnow
    from worker.core.db import init_db, unit_of_work
    from worker.reports.status import pending_work, pending_work_at_most

    init_db()
    now = utcnow()
    with unit_of_work() as s:
        assert pending_work(s) == 0
        assert pending_work_at_most(s, 50) == 0
        # two feeds due, one leased (in flight), one polled later (not pending)
        s.add(Feed(url="https://a.example/feed", next_poll_at=now - timedelta(minutes=1)))
        s.add(Feed(url="https://b.example/feed", next_poll_at=now - timedelta(minutes=1)))
        s.add(
            Feed(
                url="https://c.example/feed",
                next_poll_at=now - timedelta(minutes=1),
                lease_until=now + timedelta(minutes=5),
            )
        )
        s.add(Feed(url="https://d.example/feed", next_poll_at=now + timedelta(hours=1)))
        states = [ArticleState.discovered] * 3 + [ArticleState.extracted] * 2
        states += [ArticleState.processed, ArticleState.failed]
        for i, state in enumerate(states):
            s.add(
                Article(
                    url=f"https://a.example/n/{i}",
                    url_hash=f"h{i}",
                    host="a.example",
                    state=state,
                )
            )
    with unit_of_work() as s:
        total = pending_work(s)
        assert total == 2 + 1 + 5
        assert [pending_work_at_most(s, n) for n in (50, total, total - 1, 3, 1)] == [
            total,
            total,
            total - 1,
            3,
            1,
        ]
    with unit_of_work() as s:
        for a in s.exec(select(Article)).all():
            a.state = ArticleState.processed
        for f in s.exec(select(Feed)).all():
            f.next_poll_at = now + timedelta(hours=1)
            f.lease_until = None
    with unit_of_work() as s:
        assert pending_work(s) == 0
        assert pending_work_at_most(s, 50) == 0
