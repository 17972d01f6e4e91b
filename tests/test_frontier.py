"""The crawl frontier (issue 16): work is picked by its host's readiness, not by queue
order. A fetch or a poll whose host is not free never waits in a worker thread: it is
given a turn on the host's timeline and sent back for then, while work on free hosts
goes ahead; turns are kept in order and at the host's pace."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from schemas.models import ArticleState
from schemas.types import utcnow
from tests.support.db import cached_robots, discovered_article, load_article
from worker.feeds.polling import TURN_BUCKET, Lease, plan_polls, turn_key
from worker.network.politeness import TURN_LEAD, LocalHostLimiter
from worker.network.robots import forget_robots_failures
from worker.testing.server import LocalServer, Reply

PAGE = b"<html><body><article><p>" + b"Some words of news. " * 40 + b"</p></article></body></html>"


@pytest.fixture(autouse=True)
def _fresh_robots_memory() -> None:
    forget_robots_failures()


def _site(server: Any, n: int) -> list[str]:
    """``n`` pages of ``server``, and its robots.txt already cached (these tests are
    about the turns of the pages and feeds: robots.txt, downloaded in the host's slot,
    would take the first turn; tests/test_robots_slot.py is about that)."""
    server.routes["/robots.txt"] = Reply(
        body=b"User-agent: *\nDisallow:\n", content_type="text/plain"
    )
    cached_robots(server.url("/"))
    for i in range(n):
        server.routes[f"/n/{i}"] = Reply(body=PAGE.replace(b"Some", f"Story {i}".encode()))
    return [server.url(f"/n/{i}") for i in range(n)]


def _feed_of_three(server: Any, settings: Any) -> tuple[int, str]:
    """A new database with one feed listing three pages of ``server``, claimed for a
    poll: its id and lease token."""
    from worker.core.db import init_db, unit_of_work
    from worker.feeds.polling import claim_due_feeds
    from worker.feeds.subscriptions import add_feeds
    from worker.testing.content import rss

    init_db(settings)
    urls = _site(server, 3)
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), [(u, f"Story {i}", utcnow()) for i, u in enumerate(urls)]),
        content_type="application/rss+xml",
    )
    with unit_of_work() as s:
        add_feeds(s, [(server.url("/feed.xml"), None, [])], settings)
    with unit_of_work() as s:
        ((feed_id, token),) = claim_due_feeds(s, settings)
    return feed_id, token


def test_a_fetch_sent_back_for_its_turn_writes_only_its_sweep_hold(
    configure: Any, server: Any
) -> None:
    """A fetch whose host is not free is sent back for its turn before its start is
    committed: the one write is its sweep mark held until the turn (no start committed
    and taken back, two write transactions that waited for SQLite's write lock). At its
    turn it runs, counting no attempt and no death."""
    from sqlalchemy import event

    from worker.core.db import get_engine, init_db
    from worker.pipeline import resources
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import FIRST as FETCH

    init_db(configure(HOST_MIN_INTERVAL=60, HOST_MAX_CONCURRENCY=2))
    first, second = (discovered_article(url) for url in _site(server, 2))
    limiter = resources.host_limiter()
    assert isinstance(limiter, LocalHostLimiter)
    assert run_step(FETCH, first, follow_up=False).advanced
    writes: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith("SELECT"):
            writes.append(" ".join(statement.split()))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        waiting = run_step(FETCH, second, follow_up=False)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert waiting.retry_in is not None and not waiting.advanced
    assert server.hits["/n/1"] == 0
    assert len(writes) == 1, writes  # the hold, nothing else
    assert writes[0].startswith("UPDATE article SET state_changed_at"), writes
    article = load_article(second)
    assert article.step_starts == 0 and article.attempts == 0
    held = (article.state_changed_at - utcnow()).total_seconds()
    assert 30 < held <= 61  # held to its turn, 60 s after the first fetch (less the time since)
    limiter.offset = 60.0
    assert run_step(FETCH, second, follow_up=False).advanced
    article = load_article(second)
    assert article.state == ArticleState.fetched
    assert article.attempts == 0 and article.step_starts == 0


def test_a_fetch_on_a_busy_host_gets_a_turn_instead_of_a_thread(
    configure: Any, server: Any
) -> None:
    """Interval 60 s: the first fetch of a host goes at once; the next ones are not
    waited for but sent back for their turns (60 s, 120 s), uncounted, with the sweep
    held until then; an article of another host goes at once meanwhile. At its turn an
    article takes the slot kept for it, a newcomer cannot jump the line, and an article
    asking before its turn keeps it."""
    from worker.core.db import init_db
    from worker.pipeline import resources
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import FIRST as FETCH

    init_db(configure(HOST_MIN_INTERVAL=60, HOST_MAX_CONCURRENCY=2))
    ids = [discovered_article(url) for url in _site(server, 4)]
    other = LocalServer("127.0.0.2").start()
    try:
        other_id = discovered_article(_site(other, 1)[0])
        limiter = resources.host_limiter()
        assert isinstance(limiter, LocalHostLimiter)

        def fetch(aid: int) -> Any:
            return run_step(FETCH, aid, follow_up=False)

        # Turns count from the first fetch's start: a wait read later is shorter by the
        # time since then (``since()``, an upper bound of it, however loaded the machine).
        t0 = time.monotonic()

        def since() -> float:
            return time.monotonic() - t0 + 0.1

        assert fetch(ids[0]).advanced
        LEAD = TURN_LEAD  # each retry is due a moment before its turn
        first, second = fetch(ids[1]), fetch(ids[2])
        assert not first.advanced and not second.advanced
        assert first.retry_in is not None and 60 - LEAD - since() < first.retry_in <= 60.1 - LEAD
        assert (
            second.retry_in is not None and 120 - LEAD - since() < second.retry_in <= 120.1 - LEAD
        )
        assert server.hits["/n/1"] == server.hits["/n/2"] == 0
        held = (load_article(ids[1]).state_changed_at - utcnow()).total_seconds()
        assert 60 - since() - 1 < held <= 61  # no second copy from the sweep meanwhile
        assert fetch(other_id).advanced  # another host is free: no waiting behind this one

        limiter.offset = 60.0  # article 1's turn
        newcomer = fetch(ids[3])  # no turn yet: behind the two waiting
        assert (
            newcomer.retry_in is not None
            and 120 - LEAD - since() < newcomer.retry_in <= 120.1 - LEAD
        )
        assert fetch(ids[1]).advanced  # its turn: the slot was kept for it
        early = fetch(ids[2])  # asks again before its turn: keeps it
        assert early.retry_in is not None and 60 - LEAD - since() < early.retry_in <= 60.1 - LEAD
        limiter.offset = 120.0
        assert fetch(ids[2]).advanced
        limiter.offset = 180.0
        assert fetch(ids[3]).advanced
        for aid in [*ids, other_id]:
            article = load_article(aid)
            assert article.state == ArticleState.fetched
            assert article.attempts == 0 and article.step_starts == 0
        assert all(server.hits[f"/n/{i}"] == 1 for i in range(4))
    finally:
        other.stop()


def test_a_turn_moves_when_the_request_before_it_started_late(configure: Any) -> None:
    """Turns 1 s apart; the first one's request starts 0.8 s late: the second, on time,
    must not start 0.2 s after it (the interval holds for requests, not for turns)."""
    limiter = LocalHostLimiter(configure(HOST_MIN_INTERVAL=1, HOST_MAX_CONCURRENCY=2), max_wait=0)
    host = "late.example"
    with limiter.slot(host):
        pass
    waits = [limiter.reserve(host, k) for k in ("a", "b")]
    assert waits[0] == pytest.approx(1.0, abs=0.05) and waits[1] == pytest.approx(2.0, abs=0.05)
    limiter.offset = 1.8  # "a" comes late
    with limiter.slot(host, "a"):
        pass
    limiter.offset = 2.0  # "b" on time: 0.2 s after "a" started
    with pytest.raises(Exception) as busy, limiter.slot(host, "b"):
        pass
    assert 0.7 < busy.value.retry_after <= 0.81  # one interval after "a" started
    limiter.offset = 2.8
    with limiter.slot(host, "b"):
        pass


def test_a_back_off_sends_waiting_turns_after_it(configure: Any) -> None:
    """A host answering Retry-After: 30 backs off every turn reserved before then."""
    limiter = LocalHostLimiter(configure(HOST_MIN_INTERVAL=1, HOST_MAX_CONCURRENCY=2), max_wait=0)
    host = "slow.example"
    with limiter.slot(host):
        pass
    assert limiter.reserve(host, "a") == pytest.approx(1.0, abs=0.05)
    limiter.back_off(host, 30)
    limiter.offset = 1.0
    with pytest.raises(Exception) as busy, limiter.slot(host, "a"):
        pass
    assert busy.value.retry_after >= 29.0 - 0.05


def test_the_dispatcher_spaces_one_hosts_feeds_by_its_turns(configure: Any) -> None:
    """40 feeds of one host, 3 of another and 1 of a third, claimed together: the other
    hosts' feeds go at once, the 40 are sent for 40 different seconds, one per interval,
    in messages of feeds whose turns are close; a feed further ahead than the horizon is
    given back (keeping its turn); planning a feed again gives it the same turn."""
    settings = configure(HOST_MIN_INTERVAL=1, HOST_MAX_CONCURRENCY=2, POLL_FEEDS_PER_MESSAGE=10)
    limiter = LocalHostLimiter(settings)
    hosts = {i: "big.example" for i in range(40)}
    hosts.update({40: "small.example", 41: "small.example", 42: "small.example", 43: "one.example"})
    leases = [Lease(i, f"t{i}") for i in itertools.chain(range(43, -1, -1))]
    plan = plan_polls(leases, hosts, limiter, settings, horizon=30)
    sent: dict[int, float] = {}
    for countdown, args in plan.messages:
        assert len(args) <= 10
        for feed_id, token in args:
            assert feed_id not in sent and token == f"t{feed_id}"
            sent[feed_id] = countdown
    assert set(plan.later) == set(range(9))  # big.example's turns past 30 s (the last planned)
    assert set(sent) == set(range(9, 44))
    assert sent[43] == pytest.approx(0, abs=0.3)  # the third host: at once
    small = sorted(sent[i] for i in (40, 41, 42))
    assert small == pytest.approx([0, 1, 2], abs=0.3)
    big = sorted(sent[i] for i in range(9, 40))
    assert big == pytest.approx([float(k) for k in range(31)], abs=0.3)
    # each big feed's message is due no earlier than a moment (TURN_LEAD) before its
    # turn: its thread waits the rest in the limiter
    for i in range(9, 40):
        turn = limiter._turns["big.example"][turn_key(i)] - time.monotonic()
        assert sent[i] >= turn - TURN_LEAD - 0.01
    # asked again (re-claimed), a feed keeps its turn
    again = plan_polls([Lease(0, "t0")], hosts, limiter, settings, horizon=3600)
    assert again.messages[0][0] == pytest.approx(plan.later[0], abs=0.3)


def test_many_free_hosts_get_their_first_turns_spread_over_one_interval(
    configure: Any,
) -> None:
    """64 hosts with 3 feeds each, all free, planned together: their first turns are
    spread evenly over one interval (not 64 polls at the same instant, then again every
    second), each host's turns stay one interval apart, and every message carries
    feeds whose turns are spread over its bucket (every n-th turn of the bucket's n
    messages), due a moment before its first: its thread, which polls them one after
    another, meets each at its turn instead of starting its last ones late by the polls
    before them (fails on the messages of consecutive turns due at their last)."""
    settings = configure(HOST_MIN_INTERVAL=1, HOST_MAX_CONCURRENCY=2, POLL_FEEDS_PER_MESSAGE=10)
    limiter = LocalHostLimiter(settings)
    hosts = {i: f"h{i % 64}.example" for i in range(192)}
    plan = plan_polls([Lease(i, f"t{i}") for i in range(192)], hosts, limiter, settings)
    assert plan.later == {}
    now = time.monotonic()
    turns = {i: limiter._turns[hosts[i]][turn_key(i)] - now for i in range(192)}
    first = sorted(turns[i] for i in range(64))
    assert first[0] == pytest.approx(0, abs=0.1) and first[-1] < 1.0
    gaps = [b - a for a, b in itertools.pairwise(first)]
    assert max(gaps) < 2 / 64  # evenly: about 1/64 s apart
    for h in range(64):
        line = sorted(turns[i] for i in range(h, 192, 64))
        assert [b - a for a, b in itertools.pairwise(line)] == pytest.approx([1, 1], abs=0.01)
    sent = sorted(i for _, args in plan.messages for i, _ in args)
    assert sent == list(range(192))
    for countdown, args in plan.messages:
        assert len(args) <= 10
        own = [turns[i] for i, _ in args]
        assert own == sorted(own) and max(own) - min(own) < TURN_BUCKET
        assert countdown == pytest.approx(max(0.0, min(own) - TURN_LEAD), abs=0.05)
    # 16 turns a bucket (64 hosts over 1 s, 1/64 s apart) in two messages: each takes
    # every other turn, spread over the bucket, not 8 turns in a row
    for _, args in plan.messages:
        own = [turns[i] for i, _ in args]
        assert len(own) >= 2
        assert min(b - a for a, b in itertools.pairwise(own)) > 1.5 / 64
        if len(own) >= 6:
            assert max(own) - min(own) > TURN_BUCKET / 2


@pytest.mark.redis
def test_status_shows_the_frontier(
    configure: Any, server: Any, redis_url: str, tmp_path: Any
) -> None:
    """`claimwire status` names the hosts with fetches waiting, the largest backlog
    first, with when each one's next and last turns come and the turns reserved."""
    from tests.conftest import claimwire, cli_env
    from worker.core.db import init_db
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import FIRST as FETCH
    from worker.reports.status import frontier

    init_db(configure(HOST_MIN_INTERVAL=60, HOST_MAX_CONCURRENCY=2, BROKER_URL=redis_url))
    ids = [discovered_article(url) for url in _site(server, 5)]
    other = LocalServer("127.0.0.2").start()
    try:
        lone = discovered_article(_site(other, 2)[0])
        t0 = time.monotonic()  # the turns count from the first fetch's start
        for aid in [*ids, lone]:
            run_step(FETCH, aid, follow_up=False)
        from worker.core.db import unit_of_work
        from worker.core.settings import get_settings

        with unit_of_work() as s:
            f = frontier(s, get_settings())
        assert f["hosts_waiting"] == 1 and f["articles_waiting"] == 4
        (busy,) = f["largest_backlogs"]
        assert busy["host"] == "127.0.0.1" and busy["waiting"] == 4
        late = time.monotonic() - t0 + 1  # how much later than that these were read, at most
        assert 60 - late < busy["next_turn_in"] <= 61 and 240 - late < busy["last_turn_in"] <= 241
        assert busy["turns_reserved"] == 4 and 60 - late < busy["free_in"] <= 241

        env = cli_env(tmp_path, BROKER_URL=redis_url)
        r = claimwire(["status"], env, tmp_path, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "frontier: 1 host(s) with fetches waiting (4 articles)" in r.stdout, r.stdout
        assert "127.0.0.1: 4 waiting, next turn in" in r.stdout, r.stdout
    finally:
        other.stop()


def test_two_consumers_of_the_embedded_broker_never_take_one_message(tmp_path: Any) -> None:
    """`claimwire run` and its CPU worker processes consume one queue folder: each
    message is taken by exactly one of them (an atomic rename), none lost."""
    import threading

    from kombu import Connection

    folders = {k: tmp_path / k for k in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir()
    options = {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "store_processed": False,
    }

    def connection() -> Any:
        return Connection(
            "filesystem://", transport="worker.embedded.broker:Transport", transport_options=options
        )

    with connection() as conn:
        queue = conn.SimpleQueue("cpu")
        for i in range(300):
            queue.put({"n": i})
        queue.close()
    taken: list[list[int]] = [[], [], []]
    # Declaring the queue binds it under the control folder's lock, one consumer at a
    # time: all three start taking only once each has its queue, and each pauses after a
    # message as a worker would, so that the race for the next one is real.
    ready = threading.Barrier(3, timeout=60)

    def consume(k: int) -> None:
        with connection() as conn:
            q = conn.SimpleQueue("cpu")
            ready.wait()
            try:
                while True:
                    try:
                        message = q.get(block=False)
                    except q.Empty:
                        return
                    taken[k].append(message.payload["n"])
                    message.ack()
                    time.sleep(0.001)
            finally:
                q.close()

    threads = [threading.Thread(target=consume, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    every = [n for part in taken for n in part]
    assert sorted(every) == list(range(300))  # each once: none lost, none twice
    assert sum(1 for part in taken if part) >= 2  # they did take turns
    assert not list(folders["processed"].iterdir())


def test_a_poll_whose_turn_moved_is_sent_back_for_it_not_deferred(
    configure: Any, server: Any
) -> None:
    """Two feeds of one host get turns 60 s apart; the first one's poll runs late (at the
    second one's turn), so the second one's turn moves 60 s on: its poll is sent back
    for the new turn under the same lease (like a fetch), not deferred to the
    dispatcher, and nothing of it is written."""
    from sqlmodel import select

    from schemas.models import Feed, FeedPoll
    from tasks.polls import poll_feeds
    from tests.test_dispatch import _queued_polls
    from worker.core.db import init_db, unit_of_work
    from worker.pipeline import resources

    settings = configure(HOST_MIN_INTERVAL=60, HOST_MAX_CONCURRENCY=2)
    init_db(settings)
    leases, hosts = _two_empty_feeds_on_one_host(server, settings)
    limiter = resources.host_limiter()
    assert isinstance(limiter, LocalHostLimiter)
    plan = plan_polls(leases, hosts, limiter, settings)
    assert sorted(round(c) for c, _ in plan.messages) == [0, 60]
    (first, token_a), (second, token_b) = leases
    _queued_polls()  # (nothing was sent: the plan only)
    limiter.offset = 60.0  # the first feed's poll runs late, at the second one's turn
    t0 = time.monotonic()  # the first poll's request starts after this
    assert poll_feeds([[first, token_a]]) == 0
    assert server.hits["/a.xml"] == 1
    assert poll_feeds([[second, token_b]]) == 0
    assert server.hits["/b.xml"] == 0  # not now: one interval after the first one started
    queued = _queued_polls()
    assert [args for _, args in queued] == [[[[second, token_b]]]]
    with unit_of_work() as s:
        feed = s.get(Feed, second)
        assert feed is not None and feed.lease_until is not None  # still its lease
        assert s.exec(select(FeedPoll).where(FeedPoll.feed_id == second)).all() == []
    turn = limiter._turns[hosts[second]][turn_key(second)] - time.monotonic() - limiter.offset
    assert 60 - (time.monotonic() - t0) - 0.1 < turn <= 60.1  # the turn it was sent back for


def test_a_messages_polls_sent_back_for_near_turns_go_back_in_one_message(
    configure: Any, server: Any
) -> None:
    """Two feeds of one message whose turns on their host both moved further than a
    message holds a feed for (the request before them started 3 s late): they are sent
    back in one message, due at the first one's turn (each was a message of its own),
    and nothing of them is written. That message polls the first at its turn and holds
    the second for its own, an interval later."""
    from sqlmodel import select

    from schemas.models import FeedPoll
    from tasks.polls import HOLD_WITHIN, poll_feeds
    from worker.core.db import init_db, unit_of_work
    from worker.pipeline import resources

    settings = configure(HOST_MIN_INTERVAL=1, HOST_MAX_CONCURRENCY=2)
    init_db(settings)
    leases, hosts = _two_empty_feeds_on_one_host(server, settings)
    (first, token_a), (second, token_b) = leases
    host = hosts[first]
    limiter = resources.host_limiter()
    assert isinstance(limiter, LocalHostLimiter)
    now = time.monotonic()
    # both turns are now; the host's request before them started late: free in 3 s
    limiter._turns[host] = {turn_key(first): now, turn_key(second): now}
    limiter._line[host] = now
    limiter._next[host] = now + 3.0
    _queued_io()
    assert poll_feeds([[first, token_a], [second, token_b]]) == 0
    assert server.hits["/a.xml"] == server.hits["/b.xml"] == 0
    queued = _queued_io()
    assert len(queued) == 1, queued  # one message for both
    _task, args, ahead = queued[0]
    assert args == [[[first, token_a], [second, token_b]]]
    moved = {k: at - time.monotonic() for k, at in limiter._turns[host].items()}
    assert moved[turn_key(second)] - moved[turn_key(first)] == pytest.approx(1.0, abs=0.01)
    assert moved[turn_key(second)] - moved[turn_key(first)] <= HOLD_WITHIN
    assert ahead == pytest.approx(moved[turn_key(first)] - TURN_LEAD, abs=0.5)
    with unit_of_work() as s:
        assert s.exec(select(FeedPoll)).all() == []  # nothing written
    # the message, come at the first turn: both polled, each at its own turn
    limiter.offset = moved[turn_key(first)]
    assert poll_feeds(args[0]) == 0
    assert server.hits["/a.xml"] == server.hits["/b.xml"] == 1
    assert _queued_io() == []
    with unit_of_work() as s:
        assert len(s.exec(select(FeedPoll)).all()) == 2


def _queued_io() -> list[tuple[str, list[Any], float]]:
    """(task, args, seconds until its ETA, 0 without one) of every message in the io
    queue of the embedded broker, taken out of it."""
    from datetime import datetime

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
                eta = message.headers.get("eta")
                ahead = (datetime.fromisoformat(eta) - utcnow()).total_seconds() if eta else 0.0
                got.append((message.headers["task"], args, ahead))
        finally:
            queue.close()
    return got


def test_a_polls_new_articles_are_sent_for_their_turns_and_each_fetched_by_one_message(
    configure: Any, server: Any
) -> None:
    """A poll that finds 3 new articles of its host reserves their turns (one interval
    apart, after the poll's own request) and sends each fetch held back until its turn,
    with the article's sweep mark held until then. At its turn each fetch runs from that
    one message (no message sent back for a turn that was already known); a fetch asked
    before its turn is sent back without a write (its mark already holds the sweep)."""
    from sqlalchemy import event

    from tasks.polls import poll_feeds
    from worker.core.db import get_engine
    from worker.pipeline import resources
    from worker.pipeline.attempts import run_step
    from worker.pipeline.steps import FIRST as FETCH

    settings = configure(HOST_MIN_INTERVAL=60, HOST_MAX_CONCURRENCY=2)
    feed_id, token = _feed_of_three(server, settings)
    limiter = resources.host_limiter()
    assert isinstance(limiter, LocalHostLimiter)
    t0 = time.monotonic()  # the poll's request starts after this
    assert poll_feeds([[feed_id, token]]) == 3
    since = time.monotonic() - t0 + 0.1
    fetches = sorted(_queued_io(), key=lambda m: m[2])
    assert [task for task, _, _ in fetches] == [FETCH.task_name] * 3
    ids = [args[0] for _, args, _ in fetches]
    for k, (aid, (_, _, ahead)) in enumerate(zip(ids, fetches, strict=True), start=1):
        turn = 60 * k - TURN_LEAD  # one interval after the poll's request, and so on
        assert turn - since - 1 < ahead <= turn + 0.1, (k, ahead)
        held = (load_article(aid).state_changed_at - utcnow()).total_seconds()
        assert turn - since - 1 < held <= turn + 0.1, (k, held)
        assert load_article(aid).state == ArticleState.discovered
    assert sum(server.hits.get(f"/n/{i}", 0) for i in range(3)) == 0

    writes: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith("SELECT"):
            writes.append(" ".join(statement.split()))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        early = run_step(FETCH, ids[1], follow_up=False)  # 60 s before its turn
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert early.retry_in is not None and not early.advanced
    assert writes == []  # its mark holds the sweep until its turn already
    for k, aid in enumerate(ids, start=1):
        limiter.offset = 60.0 * k  # its turn (the message comes a moment before it)
        assert run_step(FETCH, aid, follow_up=False).advanced, k
        article = load_article(aid)
        assert article.state == ArticleState.fetched
        assert article.attempts == 0 and article.step_starts == 0
    assert all(server.hits[f"/n/{i}"] == 1 for i in range(3))


def test_the_embedded_run_holds_its_fetches_in_process_until_their_turns(
    configure: Any, server: Any
) -> None:
    """In the embedded run's `run` process (a thread pool's worker on the embedded
    broker), a poll's new articles' fetches and a fetch sent back for its host's turn
    are held in the process and sent at their turns, without a countdown: sent at once
    with countdowns, they waited in the broker's queue, read in the order sent, and came
    together long after their turns when the process was behind, one host's fetches
    sent back again and again (issue 16). Each is sent once, in the order of its turn."""
    from celery.signals import worker_init

    from tasks.articles import fetch_article
    from tasks.polls import poll_feeds
    from worker.pipeline import attempts, resources
    from worker.pipeline.steps import FIRST as FETCH

    settings = configure(HOST_MIN_INTERVAL=3, HOST_MAX_CONCURRENCY=2)
    feed_id, token = _feed_of_three(server, settings)
    limiter = resources.host_limiter()
    assert isinstance(limiter, LocalHostLimiter)
    # the `run` process's worker starts: a thread pool on the embedded broker
    worker_init.send(sender=type("Worker", (), {"pool_cls": "threads"})())
    try:
        assert poll_feeds([[feed_id, token]]) == 3
        got: list[tuple[str, list[Any], float]] = []
        seen: dict[int, float] = {}  # article: when its message was found in the queue

        def take() -> None:
            found = _queued_io()
            got.extend(found)
            seen.update((args[0], time.monotonic()) for _, args, _ in found)

        take()
        # a fourth article of the host, its fetch before its turn: sent back, held
        extra = discovered_article(server.url("/n/9"))
        server.routes["/n/9"] = Reply(body=PAGE)
        fetch_article.push_request(
            args=[extra], kwargs={}, retries=0, is_eager=False, called_directly=False
        )
        try:
            assert fetch_article.run(extra) is False
        finally:
            fetch_article.pop_request()
        deadline = time.monotonic() + 60
        while len(got) < 4 and time.monotonic() < deadline:
            take()
            time.sleep(0.05)
    finally:
        if (held := getattr(attempts, "HELD", None)) is not None:
            held.enabled = False
    assert [task for task, _, _ in got] == [FETCH.task_name] * 4
    assert [ahead for _, _, ahead in got] == [0.0] * 4  # sent at the turn: no countdown
    ids = [args[0] for _, args, _ in got]
    assert sorted(ids) == sorted({*ids}) and extra in ids  # each sent once
    turns = limiter._turns[load_article(extra).host]
    assert ids == sorted(ids, key=lambda aid: turns[f"article:{aid}"])  # in turn order
    for aid in ids:  # none in the queue before its turn (less the lead)
        assert seen[aid] >= turns[f"article:{aid}"] - limiter.offset - TURN_LEAD - 0.01
    assert server.hits.get("/n/9", 0) == 0  # nothing fetched before its turn


def test_a_stopping_run_process_sends_its_held_fetches_with_their_countdowns() -> None:
    """The fetches a `run` process holds until their turns are sent when it stops (its
    worker's ``worker_shutting_down``), each held back by the broker for the rest of its
    countdown, in the order of their turns: the next run takes them from the broker, as
    it would have taken messages sent with their countdowns."""
    from tasks.articles import _send_held_fetches
    from worker.pipeline.attempts import HELD

    sent: list[tuple[str, float | None]] = []
    HELD.hold(600, lambda countdown: sent.append(("late", countdown)))
    HELD.hold(300, lambda countdown: sent.append(("soon", countdown)))
    assert HELD.pending() == 2
    assert _send_held_fetches() == 2
    assert HELD.pending() == 0
    assert [name for name, _ in sent] == ["soon", "late"]
    assert sent[0][1] == pytest.approx(300, abs=5) and sent[1][1] == pytest.approx(600, abs=5)


def test_a_polls_new_article_is_fetched_before_the_polls_waiting_on_its_host(
    configure: Any, server: Any
) -> None:
    """Three feeds of one host planned together get turns now, +60 s and +120 s. The
    first poll finds a new article: its fetch is sent for the second poll's turn
    (+60 s), not after the host's line (+180 s), and that poll goes to the end of the
    line (+180 s); the third keeps its turn. The host's turns are the same instants,
    one interval apart."""
    from tasks.polls import poll_feeds
    from worker.core.db import init_db, unit_of_work
    from worker.feeds.polling import claim_due_feeds, feed_hosts
    from worker.feeds.subscriptions import add_feeds
    from worker.pipeline import resources
    from worker.pipeline.steps import FIRST as FETCH
    from worker.testing.content import rss

    settings = configure(HOST_MIN_INTERVAL=60, HOST_MAX_CONCURRENCY=2)
    init_db(settings)
    (url,) = _site(server, 1)
    server.routes["/news.xml"] = Reply(
        body=rss(server.url("/"), [(url, "Story 0", utcnow())]),
        content_type="application/rss+xml",
    )
    for name in ("/a.xml", "/b.xml"):
        server.routes[name] = Reply(
            body=rss(server.url("/"), []), content_type="application/rss+xml"
        )
    with unit_of_work() as s:
        add_feeds(
            s, [(server.url(p), None, []) for p in ("/news.xml", "/a.xml", "/b.xml")], settings
        )
    with unit_of_work() as s:
        leases = sorted(claim_due_feeds(s, settings))
        hosts = feed_hosts(s, [lease.feed_id for lease in leases])
    limiter = resources.host_limiter()
    assert isinstance(limiter, LocalHostLimiter)
    plan = plan_polls(leases, hosts, limiter, settings)
    (host,) = set(hosts.values())
    first, second, third = (lease.feed_id for lease in leases)

    def turns() -> dict[str, float]:  # absolute, on the limiter's clock
        return dict(limiter._turns[host])

    before = turns()
    t0 = time.monotonic()
    assert before[turn_key(second)] - t0 == pytest.approx(60, abs=1)
    assert before[turn_key(third)] - t0 == pytest.approx(120, abs=1)
    assert plan.messages[0][0] == pytest.approx(0, abs=0.3)
    assert poll_feeds([[first, leases[0].token]]) == 1
    sent = time.monotonic()
    ((task, args, ahead),) = _queued_io()
    assert task == FETCH.task_name
    after = turns()
    # the second poll's turn, and the message is due a moment before it
    assert after[f"article:{args[0]}"] == before[turn_key(second)]
    due = after[f"article:{args[0]}"] - TURN_LEAD - sent
    assert due - 1 < ahead <= due + (sent - t0) + 0.1
    assert after[turn_key(second)] == pytest.approx(before[turn_key(third)] + 60, abs=0.01)
    assert after[turn_key(third)] == before[turn_key(third)]
    assert load_article(args[0]).state == ArticleState.discovered


def test_a_poll_that_brought_a_backlog_queues_its_fetches_after_the_polls(
    configure: Any,
) -> None:
    """A poll that brought more than ``AHEAD_AT_MOST`` new articles (a first poll)
    queues their fetches at the end of the host's line, behind the polls waiting there,
    which keep their turns; one that brought a few puts them ahead of those polls."""
    from worker.core.db import init_db, unit_of_work
    from worker.feeds.polling import AHEAD_AT_MOST, send_fetches
    from worker.pipeline import resources
    from worker.pipeline.steps import FIRST as FETCH

    settings = configure(HOST_MIN_INTERVAL=60, HOST_MAX_CONCURRENCY=2)
    init_db(settings)
    limiter = resources.host_limiter()
    assert isinstance(limiter, LocalHostLimiter)
    host = "backlog.example"
    limiter.reserve_many([(host, turn_key(i)) for i in range(3)])
    with limiter.slot(host, turn_key(0)):  # the first poll, at its turn
        pass
    polls = {k: at for k, at in limiter._turns[host].items()}
    many = list(range(100, 101 + AHEAD_AT_MOST))
    with unit_of_work() as s:
        send_fetches(s, [(a, host) for a in many], limiter, settings, FETCH.task_name)
    assert len(_queued_io()) == len(many)
    turns = limiter._turns[host]
    assert {k: turns[k] for k in polls} == polls  # the polls keep their turns
    assert min(turns[f"article:{a}"] for a in many) > max(polls.values())
    with unit_of_work() as s:
        send_fetches(s, [(200, host)], limiter, settings, FETCH.task_name)
    assert len(_queued_io()) == 1
    assert turns["article:200"] == polls[turn_key(1)]  # ahead of the polls
    assert turns[turn_key(1)] > max(turns[f"article:{a}"] for a in many)


def _two_empty_feeds_on_one_host(server: Any, settings: Any) -> tuple[list[Any], dict[int, str]]:
    """Two empty feeds of the test server (/a.xml, /b.xml), added and claimed due: their
    leases, sorted, and each feed's host."""
    from tests.test_dispatch import _empty_feeds_claimed
    from worker.core.db import unit_of_work
    from worker.feeds.polling import feed_hosts

    server.routes["/robots.txt"] = Reply(
        body=b"User-agent: *\nDisallow:\n", content_type="text/plain"
    )
    leases = _empty_feeds_claimed(server, settings, "ab")
    cached_robots(server.url("/"))  # (as _site: the polls' turns are the subject)
    with unit_of_work() as s:
        return leases, feed_hosts(s, [x.feed_id for x in leases])


class _Pool:
    """A Celery worker's pool as the io worker's in-process runs use it: what it was
    given to run, and when."""

    def __init__(self) -> None:
        self.given: list[tuple[float, Any, tuple[Any, ...], Any]] = []

    def apply_async(self, target: Any, args: tuple[Any, ...], callback: Any) -> None:
        self.given.append((time.monotonic(), target, args, callback))


def _redis_io_messages(redis_url: str) -> int:
    """Messages in the Redis broker's ``io`` queue (its priority lists included)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    return sum(int(client.llen(key)) for key in client.keys("io*"))


@pytest.fixture()
def io_worker() -> Any:
    """The production io worker's start (a thread pool on Redis: ``worker_init``), with
    a :class:`_Pool`, once the test's settings name Redis; its in-process runs switched
    off again after the test."""
    from celery.signals import worker_init

    from tasks.articles import RERUNS
    from worker.pipeline.attempts import HELD

    pool = _Pool()

    def start() -> _Pool:
        worker_init.send(sender=type("Worker", (), {"pool_cls": "threads", "pool": pool})())
        assert RERUNS.active and not HELD.enabled
        return pool

    try:
        yield start
    finally:
        RERUNS.worker = None
        RERUNS.stopping = False
        HELD.enabled = False


def test_the_io_worker_runs_a_fetch_sent_back_for_its_turn_again_in_its_pool(
    configure: Any, server: Any, redis_url: str, io_worker: Any
) -> None:
    """On Redis, the io worker holds a fetch sent back for its host's turn and gives it
    to its own pool at the turn, where it runs again (the same look, the same slot):
    no message is sent back for it. Sent back with a countdown, each such fetch was a
    message the io worker published, read back at once, held in its memory anyway and
    acknowledged (issue 16: 4.6–5.6 fetch messages a page in production)."""
    from tasks.articles import fetch_article
    from worker.core.db import init_db
    from worker.network.politeness import RedisHostLimiter
    from worker.pipeline import resources

    init_db(configure(HOST_MIN_INTERVAL=2, HOST_MAX_CONCURRENCY=2, BROKER_URL=redis_url))
    pool = io_worker()
    (url,) = _site(server, 1)
    aid = discovered_article(url)
    limiter = resources.host_limiter()
    assert isinstance(limiter, RedisHostLimiter)
    with limiter.slot(load_article(aid).host):  # a request of the host starts now
        pass
    t0 = time.monotonic()
    fetch_article.push_request(
        args=[aid], kwargs={}, retries=0, is_eager=False, called_directly=False
    )
    try:
        assert fetch_article.run(aid) is False  # its turn is 2 s ahead: sent back
    finally:
        fetch_article.pop_request()
    assert _redis_io_messages(redis_url) == 0  # held in the process, not sent
    assert server.hits.get("/n/0", 0) == 0
    deadline = time.monotonic() + 30
    while not pool.given and time.monotonic() < deadline:
        time.sleep(0.05)
    ((at, target, args, callback),) = pool.given
    assert at - t0 >= 2 - TURN_LEAD - 0.05  # given to the pool at its turn, not before
    callback(target(*args))  # the pool runs it
    article = load_article(aid)
    assert article.state == ArticleState.fetched
    assert article.attempts == 0 and article.step_starts == 0
    assert server.hits["/n/0"] == 1
    assert _redis_io_messages(redis_url) == 0  # fetched from that one message


def test_a_stopping_io_worker_sends_the_fetches_it_holds_or_queued_in_its_pool(
    configure: Any, server: Any, redis_url: str, io_worker: Any
) -> None:
    """A stopping io worker (``worker_shutting_down``) sends what it holds for the
    broker to keep: a fetch held until its turn with the rest of its countdown, and one
    given to its pool and not started (a stopping pool drops its queue) at once; that
    one, if the pool still starts it, does nothing."""
    from tasks.articles import RERUNS, _send_held_fetches
    from worker.core.db import init_db
    from worker.pipeline.attempts import HELD
    from worker.pipeline.steps import FIRST as FETCH

    init_db(configure(BROKER_URL=redis_url))
    pool = io_worker()
    first, second = (discovered_article(url) for url in _site(server, 2))
    RERUNS.at_turn(FETCH, first, 1, None)  # its turn came: given to the pool
    HELD.hold(300, lambda countdown: RERUNS.at_turn(FETCH, second, 1, countdown))
    assert len(pool.given) == 1 and HELD.pending() == 1
    assert _send_held_fetches() == 2
    assert HELD.pending() == 0
    assert _redis_io_messages(redis_url) == 2
    _at, target, args, callback = pool.given[0]
    callback(target(*args))  # started after the stop began: nothing
    assert load_article(first).state == ArticleState.discovered
    assert server.hits.get("/n/0", 0) == 0
