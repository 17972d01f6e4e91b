"""The dispatcher task: one poll message per claimed feed, and feeds given back at
once when the broker refuses the messages."""

from __future__ import annotations

from typing import Any

import pytest
from kombu.exceptions import OperationalError as BrokerError
from sqlmodel import select

from schemas.models import Feed
from worker.db import init_db, unit_of_work
from worker.feeds import add_feeds
from worker.polling import count_due, make_due


def _due_feeds(settings: Any, n: int) -> None:
    init_db(settings)
    urls = [(f"http://127.0.0.1:9/feed-{i}.xml", None, []) for i in range(n)]
    with unit_of_work() as s:
        add_feeds(s, urls, settings)
    with unit_of_work() as s:
        make_due(s, None)


def _leased() -> int:
    with unit_of_work() as s:
        return len(s.exec(select(Feed).where(Feed.lease_until != None)).all())  # noqa: E711


def test_dispatch_queues_one_poll_per_due_feed(configure: Any) -> None:
    settings = configure(dispatch_batch_size=2)
    _due_feeds(settings, 3)
    from tasks.maintenance import dispatch_due_feeds

    assert dispatch_due_feeds() == 3  # two batches: 2 + 1
    assert _leased() == 3
    queued = [p for p in (settings.broker_dir / "queue").iterdir() if p.is_file()]
    assert len(queued) == 3


def test_broker_failure_gives_the_feeds_back(
    configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = configure()
    _due_feeds(settings, 3)
    from tasks import maintenance

    def broker_down(*_: Any, **__: Any) -> Any:
        raise BrokerError("connection refused")

    monkeypatch.setattr(maintenance.app, "producer_or_acquire", broker_down)
    assert maintenance.dispatch_due_feeds() == 0
    assert _leased() == 0
    with unit_of_work() as s:
        assert count_due(s) == 3  # the next run claims them again, no lease to wait out
