"""Polls that meet hostile or huge feeds (issue 18): a feed of 70,000 entries is taken
bounded, with a recorded poll, on PostgreSQL (psycopg refuses more than 65,535 bind
parameters in one statement); a statement the database refuses is the poll's error,
counted and shown, never an outage retried for ever; entries whose link is not http(s)
are refused with their reason in the poll's record and in `feeds show`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, text
from sqlmodel import col, select

from schemas.models import Article, Feed, FeedPoll, Sighting
from schemas.types import utcnow
from tests.conftest import claimwire, cli_env
from worker.core.db import init_db, unit_of_work
from worker.feeds.subscriptions import add_feeds
from worker.testing.server import Reply

RSS = "application/rss+xml"


def bare_rss(links: list[str]) -> bytes:
    """The smallest valid RSS with one item per link (a 70,000-entry feed stays small)."""
    items = "".join(f"<item><link>{link}</link></item>" for link in links)
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Huge</title>'
        f"<link>http://example.invalid/</link><description>d</description>{items}"
        "</channel></rss>"
    ).encode()


def _add_and_lease(settings: Any, url: str) -> tuple[int, str]:
    from worker.feeds.polling import claim_due_feeds, make_due

    with unit_of_work() as s:
        add_feeds(s, [(url, None, [])], settings)
    with unit_of_work() as s:
        feed = s.exec(select(Feed).where(Feed.url == url)).one()
        assert feed.id is not None
        make_due(s, [feed.id])
    with unit_of_work() as s:
        ((feed_id, token),) = claim_due_feeds(s, settings)
    return feed_id, token


def _polls(feed_id: int) -> list[FeedPoll]:
    with unit_of_work() as s:
        return list(s.exec(select(FeedPoll).where(FeedPoll.feed_id == feed_id)).all())


def _count(model: Any) -> int:
    with unit_of_work() as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


@pytest.mark.postgres
def test_a_feed_of_70000_entries_is_taken_bounded_with_a_recorded_poll(
    configure: Any, pg_url: str, server: Any
) -> None:
    """The poll takes the first CLAIMWIRE_MAX_ENTRIES_PER_POLL entries, refuses the rest
    with the reason in its record, and is done: one poll, no retry, a healthy feed."""
    from tasks import polls as poll_tasks

    settings = configure(database_url=pg_url, max_response_bytes=20_000_000)
    init_db(settings)
    links = [server.url(f"/n/{i}") for i in range(70_000)]
    server.routes["/huge.xml"] = Reply(body=bare_rss(links), content_type=RSS)
    feed_id, token = _add_and_lease(settings, server.url("/huge.xml"))

    result = poll_tasks.poll_feeds.apply(args=([[feed_id, token]],))
    assert result.successful(), result.traceback
    assert result.result == settings.max_entries_per_poll == 2_000
    assert server.hits["/huge.xml"] == 1, "polled once, not retried"
    (poll,) = _polls(feed_id)
    assert poll.outcome == "ok" and poll.error is None
    assert (poll.entries_seen, poll.entries_new, poll.entries_rejected) == (70_000, 2_000, 68_000)
    assert poll.rejected is not None
    assert "68000 over the limit of 2000 entries per poll" in poll.rejected
    with unit_of_work() as s:
        feed = s.get(Feed, feed_id)
        assert feed is not None and feed.consecutive_failures == 0 and feed.lease_until is None
        # the feed's first entries are the ones taken
        taken = set(s.exec(select(Article.url)).all())
    assert taken == set(links[:2_000])


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_record_entries_looks_articles_up_in_bounded_chunks(
    configure: Any, db: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every entry gets its sighting, whatever the chunking of the lookup (here 7 hashes
    per statement; in service 5,000, under both databases' bind-parameter limits)."""
    from worker.feeds import polling
    from worker.feeds.parsing import Entry, ParsedFeed

    extra = {"database_url": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    settings = configure(**extra)
    init_db(settings)
    monkeypatch.setattr(polling, "LOOKUP_CHUNK", 7)
    with unit_of_work() as s:
        add_feeds(s, [("https://huge.example/feed.xml", None, [])], settings)
    entries = [Entry(link=f"https://huge.example/n/{i}") for i in range(50)]
    with unit_of_work() as s:
        feed = s.exec(select(Feed)).one()
        assert (
            len(polling.record_entries(s, feed, ParsedFeed(entries=entries[:20]), utcnow())) == 20
        )
    with unit_of_work() as s:
        feed = s.exec(select(Feed)).one()
        assert len(polling.record_entries(s, feed, ParsedFeed(entries=entries), utcnow())) == 30
    assert _count(Article) == _count(Sighting) == 50


def _refused_statement(session: Any) -> None:
    """A real statement the driver refuses: 70,000 bind parameters."""
    n = 70_000
    marks = ",".join("%s" for _ in range(n))
    session.connection().exec_driver_sql(f"SELECT 1 WHERE 1 IN ({marks})", tuple(range(n)))


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_refused_statement_is_an_error_of_the_item_not_an_outage(
    configure: Any, db: str, request: pytest.FixtureRequest
) -> None:
    from worker.pipeline.attempts import is_environment_error

    extra = {"database_url": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    init_db(configure(**extra))
    caught: list[BaseException] = []
    try:
        with unit_of_work() as s:
            if db == "sqlite":  # SQLite's own limit is higher (250,000 here)
                marks = ",".join("?" for _ in range(300_000))
                s.connection().exec_driver_sql(
                    f"SELECT 1 WHERE 1 IN ({marks})", tuple([1] * 300_000)
                )
            else:
                _refused_statement(s)
    except Exception as exc:
        caught.append(exc)
    assert caught, "the statement was refused"
    assert not is_environment_error(caught[0]), repr(caught[0])
    with unit_of_work() as s:  # the connection is fine: the database was never down
        assert s.execute(text("SELECT 1")).scalar() == 1


@pytest.mark.postgres
def test_a_poll_that_meets_a_refused_statement_is_recorded_counted_and_not_retried(
    configure: Any, pg_url: str, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks import polls as poll_tasks
    from worker.feeds import polling

    settings = configure(database_url=pg_url)
    init_db(settings)
    server.routes["/f.xml"] = Reply(body=bare_rss([server.url("/n/1")]), content_type=RSS)
    feed_id, token = _add_and_lease(settings, server.url("/f.xml"))
    calls: list[int] = []

    def refused(session: Any, *args: Any) -> list[int]:
        calls.append(1)
        _refused_statement(session)
        return []

    monkeypatch.setattr(polling, "record_entries", refused)
    result = poll_tasks.poll_feeds.apply(args=([[feed_id, token]],))
    assert result.successful(), result.traceback
    assert calls == [1], "not retried: it would fail the same way every time"
    (poll,) = _polls(feed_id)
    assert poll.outcome == "error"
    assert poll.error is not None and "number of parameters" in poll.error
    with unit_of_work() as s:
        feed = s.get(Feed, feed_id)
        assert feed is not None
        assert feed.consecutive_failures == 1 and feed.permanent_failures == 1
        assert feed.state == "failing" and feed.lease_until is None
        assert feed.last_error is not None and "number of parameters" in feed.last_error
    assert _count(Article) == 0  # the poll's own writes were rolled back


def test_a_step_that_meets_a_refused_statement_counts_an_attempt(
    configure: Any, pg_url: str
) -> None:
    """The article's step: counted (then quarantined after max_attempts) with the
    reason, not retried uncounted as an outage."""
    from dataclasses import replace

    from schemas.models import ArticleState
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import step_named

    init_db(configure(database_url=pg_url, max_attempts=2))
    with unit_of_work() as s:
        a = Article(
            url="https://news.example/a",
            url_hash="a",
            host="news.example",
            state=ArticleState.extracted,
            state_changed_at=utcnow(),
        )
        s.add(a)
        s.flush()
        aid = a.id
    assert aid is not None

    def refused(session: Any, article_id: int, settings: Any) -> Any:
        _refused_statement(session)

    dedup = replace(step_named("dedup"), run=refused)
    first = run_step(dedup, aid)
    assert first.retry_in is not None
    second = run_step(dedup, aid, retries=1)
    assert second.retry_in is None and second.state == "quarantined"
    with unit_of_work() as s:
        art = s.get(Article, aid)
        assert art is not None and art.state == ArticleState.quarantined
        assert art.failure_reason is not None and "number of parameters" in art.failure_reason


def test_entries_whose_link_is_not_http_are_refused_with_the_reason(
    configure: Any, server: Any, tmp_path: Any
) -> None:
    from tasks import polls as poll_tasks

    settings = configure()
    init_db(settings)
    links = [server.url("/n/1"), "file:///etc/passwd", "javascript:alert(1)", server.url("/n/2")]
    server.routes["/f.xml"] = Reply(body=bare_rss(links), content_type=RSS)
    feed_id, token = _add_and_lease(settings, server.url("/f.xml"))
    assert poll_tasks.poll_feeds([[feed_id, token]]) == 2
    (poll,) = _polls(feed_id)
    assert (poll.outcome, poll.entries_seen, poll.entries_new, poll.entries_rejected) == (
        "ok",
        4,
        2,
        2,
    )
    # (feedparser writes file:///etc/passwd as file://etc/passwd)
    assert poll.rejected is not None
    assert poll.rejected.startswith("2 not an absolute http(s) URL ('file://"), poll.rejected
    assert "etc/passwd', 'javascript:alert(1)')" in poll.rejected, poll.rejected
    with unit_of_work() as s:
        urls = set(s.exec(select(Article.url).order_by(col(Article.id))).all())
    assert urls == {server.url("/n/1"), server.url("/n/2")}

    env = cli_env(tmp_path)
    shown = claimwire(["feeds", "show", str(feed_id), "--json"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    (last,) = json.loads(shown.stdout)["polls"]
    assert last["entries_rejected"] == 2 and "etc/passwd" in last["rejected"]
    table = claimwire(["feeds", "show", str(feed_id)], env, tmp_path)
    assert table.returncode == 0, table.stderr
    flat = " ".join(table.stdout.split())
    assert "2 refused: 2 not an absolute http(s) URL" in flat, table.stdout
