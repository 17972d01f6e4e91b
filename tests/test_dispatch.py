"""The dispatcher task: every claimed feed queued once, a few feeds per message, and
feeds given back at once when the broker refuses the messages."""

from __future__ import annotations

from typing import Any

import pytest
from kombu.exceptions import OperationalError as BrokerError
from sqlmodel import select

from schemas.models import Feed
from worker.core.db import init_db, unit_of_work
from worker.feeds.polling import count_due, make_due
from worker.feeds.subscriptions import add_feeds


def _due_feeds(settings: Any, n: int) -> None:
    init_db(settings)
    # one host each: feeds of one host are sent for different turns (tests/test_frontier.py)
    urls = [(f"http://127.0.{i}.1:9/feed-{i}.xml", None, []) for i in range(n)]
    with unit_of_work() as s:
        add_feeds(s, urls, settings)
    with unit_of_work() as s:
        make_due(s, None)


def _leased() -> int:
    with unit_of_work() as s:
        return len(s.exec(select(Feed).where(Feed.lease_until != None)).all())  # noqa: E711


def _empty_feeds_claimed(server: Any, settings: Any, names: str) -> list[Any]:
    """Empty feeds of the test server, one a letter of ``names`` (/a.xml, ...), added
    and claimed due: their leases, sorted."""
    from worker.feeds.polling import claim_due_feeds
    from worker.testing.content import rss
    from worker.testing.server import Reply

    for name in names:
        server.routes[f"/{name}.xml"] = Reply(
            body=rss(server.url("/"), []), content_type="application/rss+xml"
        )
    with unit_of_work() as s:
        add_feeds(s, [(server.url(f"/{n}.xml"), None, []) for n in names], settings)
    with unit_of_work() as s:
        return sorted(claim_due_feeds(s, settings))


def _queued_polls() -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting in the io queue (the embedded broker)."""
    from worker.celery_app import app

    got = []
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue("io", no_ack=True)
        try:
            while True:
                try:
                    message = queue.get(block=False)
                except queue.Empty:
                    break
                args, _kwargs, _embed = message.decode()
                got.append((message.headers["task"], args))
        finally:
            queue.close()
    return got


def test_dispatch_queues_every_claimed_feed_once_a_few_per_message(configure: Any) -> None:
    settings = configure(dispatch_batch_size=3, poll_feeds_per_message=2)
    _due_feeds(settings, 5)
    from tasks.schedule import dispatch_due_feeds

    assert dispatch_due_feeds() == 5  # two claims: 3 + 2
    assert _leased() == 5
    queued = _queued_polls()
    assert {name for name, _ in queued} == {"tasks.polling.poll_feeds"}
    messages = [args[0] for _, args in queued]
    assert sorted(len(m) for m in messages) == [1, 2, 2]  # ceil(3/2) + ceil(2/2) messages
    with unit_of_work() as s:
        leases = {
            f.id: f.lease_until.isoformat()
            for f in s.exec(select(Feed)).all()
            if f.lease_until is not None
        }
    sent = [(feed_id, token) for m in messages for feed_id, token in m]
    assert sorted(sent) == sorted(leases.items())  # each feed once, with its own token


def test_a_message_takes_feeds_far_apart_in_the_claim_order() -> None:
    from worker.feeds.polling import Lease, poll_messages

    leases = [Lease(i, f"t{i}") for i in range(25)]
    messages = poll_messages(leases, 10)
    assert [len(m) for m in messages] == [9, 8, 8]
    assert [feed_id for feed_id, _ in messages[0]] == [0, 3, 6, 9, 12, 15, 18, 21, 24]
    assert sorted(i for m in messages for i, _ in m) == list(range(25))
    assert poll_messages(leases[:1], 10) == [[[0, "t0"]]]
    assert poll_messages([], 10) == []


def test_broker_failure_gives_the_feeds_back(
    configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = configure()
    _due_feeds(settings, 3)
    from tasks.schedule import dispatch_due_feeds
    from worker.celery_app import app

    def broker_down(*_: Any, **__: Any) -> Any:
        raise BrokerError("connection refused")

    monkeypatch.setattr(app, "producer_or_acquire", broker_down)
    assert dispatch_due_feeds() == 0
    assert _leased() == 0
    with unit_of_work() as s:
        assert count_due(s) == 3  # the next run claims them again, no lease to wait out


def test_a_message_that_could_outlive_its_time_limit_sends_the_rest_on(
    configure: Any, server: Any
) -> None:
    """With a time limit too short for a second poll (task_time_limit 60 s against two
    downloads of up to 20 s each and the limiter's wait), one message polls its first
    feed and queues the others in a new message, leases unchanged."""
    from tasks.polls import poll_feeds

    settings = configure(task_time_limit=60, total_timeout=20)
    init_db(settings)
    leases = _empty_feeds_claimed(server, settings, "abc")
    message = [[feed_id, token] for feed_id, token in leases]
    assert poll_feeds(message) == 0
    assert sum(server.hits.get(f"/{n}.xml", 0) for n in "abc") == 1
    assert _queued_polls() == [("tasks.polling.poll_feeds", [message[1:]])]
    assert _leased() == 2  # the two feeds not polled yet keep their leases
