"""Faults with real processes: Celery workers and beat as subprocesses over a private
Redis and a private PostgreSQL cluster (both ours, on free ports, so we may kill and
restart them; the machine's shared servers are never touched).

The promise checked after every fault: each article a feed listed is in the database
once, processed once (no duplicate rows, sightings or claims), nothing stuck pending,
nothing half-written, and nothing quarantined that was not poison.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, need
from tests.support.procs import in_flight, processes
from worker.testing.checks import integrity
from worker.testing.content import distinct_stories, serve_site
from worker.testing.procs import (
    PostgresServer,
    Proc,
    RedisServer,
    celery_beat,
    celery_worker,
    wait_until,
    worker_env,
)
from worker.testing.server import LocalServer, Reply

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

PG_SECRET = "pg-S3cret-pw"
REDIS_SECRET = "redis-S3cret-pw"

# Fast recovery for tests: the sweep runs every 2 s and re-sends what waited 4 s.
FAULT_SETTINGS = {
    "ALLOW_PRIVATE_NETWORKS": "true",
    "HOST_MIN_INTERVAL": "0",
    "HOST_MAX_CONCURRENCY": "64",
    "DISPATCH_INTERVAL": "1",
    "SWEEP_INTERVAL": "2",
    "STALE_AFTER": "4",
    "POLL_LEASE_SECONDS": "15",
    "POLL_MIN_INTERVAL": "3600",
    "POLL_INITIAL_INTERVAL": "3600",
    "CONNECT_TIMEOUT": "5",
    "READ_TIMEOUT": "10",
    "TOTAL_TIMEOUT": "15",
    "EXTRACT_CLAIMS": "false",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PostgresServer]:
    need(PostgresServer.available(), "PostgreSQL server binaries (initdb, pg_ctl)")
    pg = PostgresServer().init().start()
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    need(RedisServer.available(), "redis-server")
    rd = RedisServer(tmp_path / "redis", password=REDIS_SECRET).start()
    try:
        yield rd
    finally:
        rd.stop()


class Rig:
    """One test's world: a database on our PostgreSQL, our Redis, a local site with
    feeds and pages, and helpers to start workers and check the result."""

    def __init__(
        self,
        tmp: Path,
        server: LocalServer,
        pg: PostgresServer,
        redis: RedisServer,
        feeds: int,
        per_feed: int,
        delay: float = 0.0,
        **overrides: str,
    ) -> None:
        self.tmp, self.server, self.pg, self.redis = tmp, server, pg, redis
        name = f"cw_fault_{uuid.uuid4().hex[:10]}"
        pg.create_database(name)
        self.db_plain = pg.url(name)
        self.db_url = pg.url(name, password=PG_SECRET)  # trust auth ignores it; logs must too
        self.feed_urls: list[str] = []
        self.page_paths: list[str] = []
        for f in range(feeds):
            stories = distinct_stories(per_feed, seed=100 + f)
            self.feed_urls.append(serve_site(server, prefix=f"/f{f}", stories=stories))
            for slug, *_ in stories:
                path = f"/f{f}/news/{slug}"
                self.page_paths.append(path)
                route = server.routes[path]
                assert isinstance(route, Reply)
                route.delay = delay
        base = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMWIRE_")}
        settings = {**FAULT_SETTINGS, "DATA_DIR": str(tmp / "data"), **overrides}
        # ROOT on the workers' path: the poison-page test runs tests.support.crash_app
        self.env = worker_env(base, self.db_url, redis.url(), pythonpath=[ROOT], **settings)
        self.procs: list[Proc] = []
        r = self.cli("init")
        assert r.returncode == 0, r.stderr
        r = self.cli("feeds", "add", *self.feed_urls)
        assert r.returncode == 0, r.stderr

    @property
    def expected(self) -> int:
        return len(self.page_paths)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "worker.cli", *args],
            env=self.env,
            cwd=self.tmp,
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def worker(self, name: str, **kw: Any) -> Proc:
        p = celery_worker(name, self.env, self.tmp, **kw)
        self.procs.append(p)
        return p

    def beat(self, name: str = "beat") -> Proc:
        p = celery_beat(name, self.env, self.tmp)
        self.procs.append(p)
        return p

    def facts(self) -> Any:
        return integrity(self.db_plain)

    def processed(self) -> int:
        return int(self.facts().by_state.get("processed", 0))

    def wait_done(self, timeout: float = 90, each: Callable[[], None] | None = None) -> None:
        """Wait until every article has left the pending states; ``each`` runs before
        every look (a test's supervisor restarting a worker that exited)."""

        def done() -> bool:
            if each is not None:
                each()
            f = self.facts()
            return bool(f.articles == self.expected and f.pending == 0)

        try:
            wait_until(done, timeout, 0.5, "every article to leave the pending states")
        except TimeoutError:
            # the pending rows themselves: their ids lead to their lines in the logs
            pending = self.sql(
                "SELECT id, state, step_starts, attempts, state_changed_at, now() "
                "FROM article WHERE state IN ('discovered','fetched','extracted',"
                "'deduplicated') ORDER BY id"
            )
            raise AssertionError(f"not done: {self.facts()}; pending: {pending}") from None

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.db_plain) as conn:
            return [tuple(r) for r in conn.execute(query)]

    def check_exactly_once(self, quarantined: int = 0) -> None:
        f = self.facts()
        assert f.articles == self.expected, f
        assert f.distinct_urls == f.articles, f"duplicate article rows: {f}"
        assert f.pending == 0, f"stuck articles: {f}"
        assert f.sightings_dup == 0 and f.claims_dup == 0, f
        assert f.by_state.get("processed", 0) == self.expected - quarantined, f
        assert f.by_state.get("quarantined", 0) == quarantined, f
        assert f.processed_without_claims_version == 0, f
        served = {self.server.url(p) for p in self.page_paths}
        stored = {r[0] for r in self.sql("SELECT url FROM article")}
        assert stored == served, (served - stored, stored - served)
        # nothing half-written: a step's columns are all there once its state is reached
        half = self.sql(
            "SELECT id, state FROM article a WHERE state IN "
            "('fetched','extracted','deduplicated','processed') AND (raw_sha256 IS NULL "
            "OR fetched_at IS NULL OR NOT EXISTS (SELECT 1 FROM rawpage r "
            "WHERE r.sha256 = a.raw_sha256)) OR state IN ('extracted','deduplicated',"
            "'processed') AND extracted_at IS NULL OR state = 'processed' AND "
            "processed_at IS NULL"
        )
        assert half == [], f"half-written articles: {half}"
        # every page was downloaded; none more than a few times
        for p in self.page_paths:
            assert self.server.hits[p] >= 1, p

    def logs(self) -> str:
        return "\n".join(p.log() for p in self.procs)


@pytest.fixture()
def rig_factory(
    tmp_path: Path, server: LocalServer, own_pg: PostgresServer, own_redis: RedisServer
) -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(**kw: Any) -> Rig:
        rig = Rig(tmp_path, server, own_pg, own_redis, **kw)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        for p in rig.procs:
            p.stop(timeout=5)


def current_log(p: Proc) -> str:
    """The log of the running incarnation only (a killed one's tasks never finish)."""
    return p.log().rsplit("===== start", 1)[-1]


# ----------------------------------------------------------------------- 1. SIGKILL


def test_sigkill_workers_mid_fetch_extraction_and_claims(rig_factory: Any) -> None:
    """SIGKILL a worker while it holds a fetch (slow pages), an extraction and a claims
    task: the sweep re-sends what the dead worker held, nothing is doubled."""
    rig: Rig = rig_factory(feeds=3, per_feed=8, delay=1.5, EXTRACT_CLAIMS="true")
    workers = [rig.worker("w1"), rig.worker("w2")]
    caught: dict[str, int] = {}
    with processes(rig.beat(), *workers):
        for target in (
            "tasks.fetching.fetch_article",
            "tasks.processing.extract_article",
            "tasks.processing.claims_article",
        ):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and target not in caught:
                for w in workers:
                    busy = in_flight(current_log(w), target)
                    if busy:
                        w.kill()  # SIGKILL to the worker's whole process group
                        caught[target] = len(busy)
                        w.start()
                        break
                time.sleep(0.02)
        rig.wait_done(timeout=120)
    assert set(caught) == {
        "tasks.fetching.fetch_article",
        "tasks.processing.extract_article",
        "tasks.processing.claims_article",
    }, f"could not catch every kind of task in flight: {caught}"
    rig.check_exactly_once()
    assert rig.facts().claims > 0
    _check_claims_match_a_clean_extraction(rig)
    # each killed step left its start behind: counted as one death when it ran again,
    # cleared once it moved the article on, never near quarantine
    deaths = _deaths_seen(rig)
    assert deaths, "no killed step was counted as a death"
    assert max(deaths) <= len(caught), deaths
    assert rig.sql("SELECT max(step_starts), max(attempts) FROM article") == [(0, 0)]


def _deaths_seen(rig: Rig) -> list[int]:
    """Deaths found by every step that ran again after its worker died (worker logs)."""
    import re

    return [int(n) for n in re.findall(r"step_rerun_after_death\s.*?deaths=(\d+)", rig.logs())]


def _check_claims_match_a_clean_extraction(rig: Rig) -> None:
    """The claims stored for each article are exactly what one clean extraction of its
    stored text gives: none lost, none doubled by re-run steps."""
    from worker.claims import extract_claims, load_nlp
    from worker.core.settings import Settings

    nlp = load_nlp(Settings().spacy_model)
    rows = rig.sql(
        "SELECT id, text FROM article WHERE state = 'processed' "
        "AND claims_status = 'extracted' ORDER BY id"
    )
    assert rows
    stored: dict[int, set[tuple[int, int, str]]] = {}
    for aid, start, end, verb in rig.sql('SELECT article_id, start, "end", verb FROM claim'):
        stored.setdefault(aid, set()).add((start, end, verb))
    for aid, text in rows:
        fresh = {(c.start, c.end, c.verb) for c in extract_claims(text, nlp)}
        assert stored.get(aid, set()) == fresh, f"article {aid}"


# ------------------------------------------------------------- 2. Redis flush/restart


KOMBU_EXIT = (
    "Unrecoverable error: AttributeError(\"'NoneType' object has no attribute 'hostname'\")"
)
"""How a Celery worker ends when its consumer, closing the channel of a lost Redis
connection, restores its unacknowledged messages through a transport already collected
(kombu's ``_connparams``; docs/reliability.md, celery/kombu#582, #970)."""


def test_redis_flush_and_restart_recovered_by_the_sweep(rig_factory: Any) -> None:
    """FLUSHDB of the broker (every queued message lost), then a Redis restart without
    persistence (the same, plus connections cut): the sweep re-sends from the
    database; workers and beat reconnect by themselves."""
    rig: Rig = rig_factory(feeds=2, per_feed=10, delay=0.4)
    workers = [rig.worker("w1", concurrency=2), rig.worker("w2", concurrency=2)]

    def supervise() -> None:
        # A worker holding unacknowledged messages when Redis goes can end on kombu's
        # known error (docs/reliability.md); compose's `restart: unless-stopped` starts
        # it again, and so does this test. Both exiting at once left the articles still
        # pending with no process to run the sweep.
        for worker in workers:
            if not worker.alive():
                worker.start()

    with processes(rig.beat(), *workers):
        wait_until(lambda: rig.facts().articles == rig.expected, 40, what="feeds polled")
        wait_until(lambda: rig.processed() >= 2, 40, 0.2, "a first article processed")
        assert rig.facts().pending > 0, "too late for the flush to hit queued work"
        rig.redis.flushdb()
        wait_until(lambda: rig.processed() >= rig.expected // 2, 60, 0.2, "half processed")
        if rig.facts().pending:
            rig.redis.restart(down_for=2.0)
        rig.wait_done(timeout=90, each=supervise)
    rig.check_exactly_once()
    for worker in workers:
        # every exit is kombu's known one, never another crash
        known = worker.log().count(KOMBU_EXIT)
        assert worker.starts - 1 <= known, (worker.name, worker.starts, known)
    _check_no_secret_printed(rig)


def test_redis_down_while_fetches_run_their_retries_left_to_the_sweep(rig_factory: Any) -> None:
    """Redis stops while fetches download (slow pages): each fetch then meets it (its
    host limiter lives there) and so does its retry, which cannot be sent. One warning
    line per retry names the outage, Celery never rejects a message with chained
    tracebacks (`reject requeue=False`), and once Redis is back the sweep re-sends the
    articles from the database: every one processed once."""
    rig: Rig = rig_factory(feeds=1, per_feed=6, delay=3.0)
    worker = rig.worker("w1", concurrency=3)

    def supervise() -> None:
        # Celery's consumer can end the whole worker when Redis is already down as it
        # restores its unacknowledged messages (kombu: "Unrecoverable error:
        # AttributeError ... 'hostname'"); docker-compose's `restart: unless-stopped`
        # starts it again, and so does this test (docs/reliability.md).
        if not worker.alive():
            worker.start()

    with processes(rig.beat(), worker):
        target = "tasks.fetching.fetch_article"
        wait_until(lambda: bool(in_flight(current_log(worker), target)), 60, 0.05, "a fetch")
        rig.redis.restart(down_for=8.0)  # the fetches in flight finish while it is down
        rig.wait_done(timeout=120, each=supervise)
    rig.check_exactly_once()
    assert worker.starts <= 2, "the worker exited more than once"
    logs = worker.log()
    assert "retry_not_sent_broker_down" in logs, "no retry met the outage"
    line = next(x for x in logs.splitlines() if "retry_not_sent_broker_down" in x)
    assert "task=tasks.fetching.fetch_article" in line and "left to the sweep" in line, line
    assert "requeue=False" not in logs
    assert rig.sql("SELECT max(attempts), max(step_starts) FROM article") == [(0, 0)]


def test_redis_flush_loses_no_fetch_waiting_for_its_hosts_turn(rig_factory: Any) -> None:
    """The crawl frontier (issue 16) keeps its turns in Redis: 16 articles of one host
    allowed one request per 0.5 s at a time wait for their turns (their fetches sent
    back with countdowns). FLUSHDB takes the turns, the host's timeline and the queued
    messages: the database still says what waits, and every article is fetched and
    processed exactly once, its host's requests still spaced (but for the one moment
    of the flush, which forgot when the last request started)."""
    import redis as redis_lib

    interval = 0.5
    rig: Rig = rig_factory(
        feeds=2, per_feed=8, HOST_MIN_INTERVAL=str(interval), HOST_MAX_CONCURRENCY="1"
    )
    client = redis_lib.Redis.from_url(rig.redis.url())
    with processes(rig.beat(), rig.worker("w1", concurrency=4), rig.worker("w2", concurrency=4)):
        wait_until(lambda: rig.facts().articles == rig.expected, 40, what="feeds polled")
        wait_until(
            lambda: int(client.zcard("cw:host:127.0.0.1:turns")) >= 4,
            40,
            0.05,
            "fetches waiting for their turns",
        )
        assert rig.facts().pending > 4
        rig.redis.flushdb()
        rig.wait_done(timeout=120)
    rig.check_exactly_once()
    pages = set(rig.page_paths)
    starts = sorted(t for t, path in rig.server.arrivals if path in pages)
    short = [b - a for a, b in itertools.pairwise(starts) if b - a < interval - 0.05]
    assert len(short) <= 1, short


def _check_no_secret_printed(rig: Rig) -> None:
    """Passwords of both URLs are masked in everything the CLI prints and never appear
    in any worker or scheduler log."""
    outputs = []
    for args in (["init"], ["status"], ["status", "--json"], ["config"]):
        r = rig.cli(*args)
        assert r.returncode == 0, r.stderr
        outputs.append(r.stdout + r.stderr)
    joined = "\n".join(outputs)
    assert "***" in joined
    for secret in (PG_SECRET, REDIS_SECRET):
        assert secret not in joined, f"password printed by the CLI: {secret}"
        assert secret not in rig.logs(), f"password in a worker log: {secret}"


# ------------------------------------------------------------- 3. PostgreSQL restart


def test_postgres_restart_while_workers_run(rig_factory: Any, own_pg: PostgresServer) -> None:
    """Our PostgreSQL stopped (fast shutdown: connections cut), down a few seconds,
    started; then crashed (immediate shutdown, recovery on start). Tasks retry without
    counting attempts, the pools reconnect, nothing is quarantined or half-written."""
    rig: Rig = rig_factory(feeds=2, per_feed=10, delay=0.3)
    with processes(rig.beat(), rig.worker("w1", concurrency=3), rig.worker("w2", concurrency=3)):
        wait_until(lambda: rig.processed() >= 2, 60, 0.2, "a first article processed")
        own_pg.restart(down_for=3.0, mode="fast")
        wait_until(lambda: rig.processed() >= rig.expected // 2, 90, 0.3, "half processed")
        if rig.facts().pending:
            own_pg.restart(down_for=2.0, mode="immediate")
        rig.wait_done(timeout=120)
    rig.check_exactly_once()
    attempts = rig.sql("SELECT coalesce(max(attempts), 0) FROM article")[0][0]
    assert attempts == 0, "a database outage must not count against articles"
    # A step cut off by the outage cannot take its start back while the database is
    # down: it counts as one death of that step until the step next ends. Two outages:
    # at most two per step, far from CLAIMWIRE_MAX_STEP_DEATHS (5).
    assert max(_deaths_seen(rig), default=0) <= 2, _deaths_seen(rig)
    assert rig.sql("SELECT max(step_starts) FROM article") == [(0,)]
    # whatever was logged during the outage never carries the database password
    _check_no_secret_printed(rig)


# ---------------------------------------------------------------- 4. two schedulers


def test_two_schedulers_poll_each_feed_once_per_interval(
    tmp_path: Path, server: LocalServer, own_pg: PostgresServer, own_redis: RedisServer
) -> None:
    """Two `celery beat` by mistake, each dispatching every half second, and two
    workers: every feed is still polled once per interval.

    Checked on counts and on the scheduler's own record, not on times seen by the site
    (a poll whose worker is descheduled reaches the site late, and the gap to the next
    one shrinks): every request the site got for a feed is a poll that committed (a
    feed handed out twice is fetched twice, and only one of the two polls may commit),
    and a feed's committed polls start at least the interval apart (a poll sets the
    feed's next poll to its own start plus the interval, and no scheduler may hand the
    feed out before then)."""
    interval = 4
    asked: dict[str, int] = {}  # requests of each feed, counted by the site
    lock = threading.Lock()
    rig = Rig(
        tmp_path,
        server,
        own_pg,
        own_redis,
        feeds=12,
        per_feed=1,
        DISPATCH_INTERVAL="0.5",
        POLL_MIN_INTERVAL=str(interval),
        POLL_INITIAL_INTERVAL=str(interval),
        POLL_JITTER="0",
        # robots.txt is fetched once per host; its concurrent first insert can fail a
        # poll (reported), which would only delay a feed by its lease here.
        RESPECT_ROBOTS="false",
    )
    paths = [f"/f{f}/feed.xml" for f in range(12)]
    for path in paths:
        reply = server.routes[path]
        assert isinstance(reply, Reply)

        def handler(_req: Any, path: str = path, reply: Reply = reply) -> Reply:
            with lock:
                asked[path] = asked.get(path, 0) + 1
            return reply

        server.routes[path] = handler

    def polls() -> dict[str, list[tuple[Any, str, int | None]]]:
        """Each feed's committed polls (start, outcome, HTTP status), in order."""
        found: dict[str, list[tuple[Any, str, int | None]]] = {p: [] for p in paths}
        for url, started, outcome, status in rig.sql(
            "SELECT f.url, p.started_at, p.outcome, p.http_status FROM feedpoll p "
            "JOIN feed f ON f.id = p.feed_id ORDER BY p.started_at, p.id"
        ):
            found[str(url).removeprefix(server.url(""))].append((started, outcome, status))
        return found

    beats = [rig.beat("beat1"), rig.beat("beat2")]
    try:
        with processes(*beats, rig.worker("w1"), rig.worker("w2")):
            wait_until(
                lambda: min(len(p) for p in polls().values()) >= 3,
                180,
                0.5,
                "three committed polls of every feed",
            )
            for beat in beats:  # no more dispatching; the polls sent still run
                beat.stop()
            # every poll handed out has committed or lost its lease (leases last 15 s)
            wait_until(
                lambda: rig.sql("SELECT count(*) FROM feed WHERE lease_until > now()") == [(0,)],
                60,
                0.2,
                "the polls in flight to end",
            )
            seen = polls()
    finally:
        for p in rig.procs:
            p.stop(timeout=5)
    for path in paths:
        fetched = [status for _, _, status in seen[path] if status is not None]
        assert asked.get(path, 0) == len(fetched), (path, asked.get(path), seen[path])
        starts = [started for started, _, _ in seen[path]]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
        assert all(gap >= interval for gap in gaps), (path, gaps, seen[path])
    for log in (rig.procs[0].log(), rig.procs[1].log()):
        assert "Sending due task dispatch-due-feeds" in log  # both schedulers did run


# ----------------------------------------------------------- 5. archive disk full


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return r.returncode == 0


def test_archive_full_then_space_returns(rig_factory: Any, tmp_path: Path) -> None:
    """The archive's disk is full (a small tmpfs filled up; without the privilege to
    mount, a directory that cannot be created): fetches fail with a clear error and
    retry without counting, articles stay pending, the service keeps running, and it
    catches up once space returns."""
    mnt = tmp_path / "archive-disk"
    mounted = _tmpfs(mnt, "1m")
    if mounted:
        archive = mnt / "archive"
        archive.mkdir()
        filler = mnt / "filler"
        with filler.open("wb") as fh:  # fill every block
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        expected_error = "No space left on device"
    else:
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a file where the archive's parent directory should be")
        archive = blocker / "archive"
        expected_error = "Not a directory"
    try:
        rig: Rig = rig_factory(feeds=1, per_feed=6, ARCHIVE_DIR=str(archive))
        worker = rig.worker("w1")
        with processes(rig.beat(), worker):
            wait_until(lambda: rig.facts().articles == rig.expected, 40, what="feed polled")
            wait_until(lambda: expected_error in worker.log(), 30, what="the archive error")
            time.sleep(5)  # several retries and sweeps while the disk is full
            f = rig.facts()
            assert f.by_state == {"discovered": rig.expected}, f
            assert rig.sql("SELECT max(attempts) FROM article")[0][0] == 0
            assert "cannot write to archive" in worker.log()
            status = json.loads(rig.cli("status", "--json").stdout)
            assert status["articles"]["discovered"] == rig.expected
            assert worker.alive()
            # space returns
            if mounted:
                filler.unlink()
            else:
                blocker.unlink()
            rig.wait_done(timeout=90)
            assert worker.alive() and worker.starts == 1, "the worker never stopped"
        rig.check_exactly_once()
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


# ------------------------------------------------------------- 6. poison messages


def test_poison_page_quarantined_visible_and_replayable(rig_factory: Any) -> None:
    """A page whose archived bytes are corrupt makes extraction raise every time: it is
    tried CLAIMWIRE_MAX_ATTEMPTS times, quarantined with its error, shown by
    `claimwire status`; the other articles flow on; `claimwire replay` (after the
    archive is repaired) finishes it."""
    rig: Rig = rig_factory(feeds=1, per_feed=5, MAX_ATTEMPTS="3")
    poison_path = rig.page_paths[2]
    route = rig.server.routes[poison_path]
    assert isinstance(route, Reply) and isinstance(route.body, bytes)
    sha = hashlib.sha256(route.body).hexdigest()
    archive = rig.tmp / "data" / "archive"
    corrupt = archive / sha[:2] / sha[2:4] / f"{sha}.zst"

    # Fetching only (an io worker), so that the archived copy can be damaged between
    # the fetch and the extraction: the archive repairs a damaged copy when the same
    # page is stored again, so it must be damaged after the last store.
    fetcher = rig.worker("w1", queues="io")
    with processes(rig.beat(), fetcher):
        wait_until(lambda: rig.facts().by_state == {"fetched": 5}, 60, what="five pages fetched")
        corrupt.write_bytes(b"these are not zstandard frames")
        with processes(rig.worker("w2", queues="cpu")):
            wait_until(
                lambda: rig.facts().by_state == {"processed": 4, "quarantined": 1},
                90,
                what="four processed, one quarantined",
            )
            (aid, attempts, failed_state, reason) = rig.sql(
                "SELECT id, attempts, failed_state, failure_reason FROM article "
                "WHERE state = 'quarantined'"
            )[0]
            assert attempts == 3 and failed_state == "fetched"
            assert "extract_article" in reason and "Zstd" in reason, reason

            status = rig.cli("status")
            assert status.returncode == 0
            assert (
                f"article {aid} quarantined" in status.stdout and "extract_article" in status.stdout
            )
            data = json.loads(rig.cli("status", "--json").stdout)
            assert data["articles"]["quarantined"] == 1
            assert data["recent_article_errors"][0]["id"] == aid

            # a replay that names a processed article does nothing at all, not half of it
            done = rig.sql("SELECT min(id) FROM article WHERE state = 'processed'")[0][0]
            r = rig.cli("replay", str(aid), str(done))
            assert r.returncode == 2 and f"article {done} is not quarantined" in r.stderr, r
            assert rig.facts().by_state.get("quarantined") == 1

            corrupt.unlink()  # the operator repairs the archive (here: drops the bad copy)
            r = rig.cli("replay")
            assert r.returncode == 0 and "1 article(s) sent back" in r.stdout, r
            rig.wait_done(timeout=60)
    rig.check_exactly_once()
    assert rig.server.hits[poison_path] == 2, "the replayed page is fetched once more"


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_page_that_kills_the_worker_quarantined_visible_and_replayable(
    rig_factory: Any, pool: str
) -> None:
    """A page whose extraction kills the worker process every time (SIGKILL to itself,
    as the OOM killer or a crash in a C library would): no exception ever reports it,
    yet each death is counted, because the step's start is committed before it runs.
    After CLAIMWIRE_MAX_STEP_DEATHS deaths the article is quarantined with the reason,
    shown by `claimwire status`; the other articles are all processed; `claimwire
    replay` with the crash gone finishes it.

    prefork: the pool's child dies and Celery re-queues its message at once
    (``reject_on_worker_lost``). threads (3 of them): the whole worker dies, with any
    step running next to the poison page, and the test restarts it, as a supervisor
    would; the messages stay unacknowledged in Redis for the visibility timeout (an
    hour) and it is the sweep that sends the steps again, those whose worker died one
    per run."""
    from tests.support.crash_app import MARKER

    rig: Rig = rig_factory(feeds=1, per_feed=6, MAX_STEP_DEATHS="3", MAX_ATTEMPTS="3")
    poison_path = rig.page_paths[2]
    route = rig.server.routes[poison_path]
    assert isinstance(route, Reply) and isinstance(route.body, bytes)
    route.body = route.body.replace(b"</body>", MARKER + b"</body>")
    assert MARKER in route.body
    flag, kills_log = rig.tmp / "crash-on", rig.tmp / "kills.log"
    flag.write_text("on")
    rig.env.update(CW_TEST_CRASH_FLAG=str(flag), CW_TEST_CRASH_LOG=str(kills_log))

    def kills() -> list[tuple[str, str]]:
        """(pid, article id) of every kill by the hook so far."""
        text = kills_log.read_text() if kills_log.exists() else ""
        return [(pid, aid) for pid, aid in (line.split() for line in text.splitlines())]

    cpu = rig.worker("cpu", queues="cpu", pool=pool, concurrency=2 if pool == "prefork" else 3)
    cpu.args[cpu.args.index("worker.celery_app")] = "tests.support.crash_app"

    def supervise() -> bool:
        if pool == "threads" and not cpu.alive():
            cpu.start()  # what systemd's Restart=always would do
        return False

    with processes(rig.beat(), rig.worker("io", queues="io"), cpu):
        wait_until(
            lambda: supervise() or rig.facts().by_state == {"processed": 5, "quarantined": 1},
            120,
            0.2,
            "five processed, one quarantined",
        )
        ((aid, failed_state, reason, attempts, starts),) = rig.sql(
            "SELECT id, failed_state, failure_reason, attempts, step_starts "
            "FROM article WHERE state = 'quarantined'"
        )
        assert rig.sql(f"SELECT url FROM article WHERE id = {aid}")[0][0].endswith(poison_path)
        # exactly three deaths, all during this article's extraction, each in a
        # different process; then quarantined without a fourth run
        assert [a for _, a in kills()] == [str(aid)] * 3, kills()
        assert len({pid for pid, _ in kills()}) == 3, kills()
        assert failed_state == "fetched" and attempts == 0 and starts == 0
        assert "extract_article" in reason and "worker process died 3 times" in reason, reason
        if pool == "prefork":
            assert cpu.starts == 1 and cpu.alive(), "only the pool's children died"
            # (billiard may notice a child's death late; the hook's log is the count)
            assert "exited with 'signal 9 (SIGKILL)'" in cpu.log()
            # no other article counts a death or an attempt
            others = rig.sql(
                f"SELECT id, state, step_starts, attempts, failure_reason FROM article "
                f"WHERE id <> {aid} AND (step_starts > 0 OR attempts > 0)"
            )
            assert others == [], others
        else:
            assert cpu.starts == 4, "the test restarted the worker after each death"
            # Steps that ran next to the poison page in its process died with it and
            # counted a death each; re-sent one per sweep, they did not meet it again
            # three times: all five are processed (checked above), none quarantined.
            assert rig.sql(f"SELECT max(attempts) FROM article WHERE id <> {aid}") == [(0,)]

        status = rig.cli("status")
        assert status.returncode == 0, status.stderr
        shown = " ".join(status.stdout.split())  # rich wraps long lines
        assert f"article {aid} quarantined: tasks.processing.extract_article" in shown
        assert "worker process died 3 times" in shown
        data = json.loads(rig.cli("status", "--json").stdout)
        assert data["articles"]["quarantined"] == 1
        assert data["recent_article_errors"][0]["id"] == aid

        time.sleep(6)  # longer than stale_after: the sweep must leave it alone
        supervise()
        assert len(kills()) == 3 and rig.facts().by_state.get("quarantined") == 1

        flag.unlink()  # the crash is fixed (a new extractor, more memory)
        r = rig.cli("replay", str(aid))
        assert r.returncode == 0 and "1 article(s) sent back" in r.stdout, r
        rig.wait_done(timeout=60)
    rig.check_exactly_once()
    assert len(kills()) == 3, "no kill after the hook was switched off"
    assert rig.server.hits[poison_path] == 1, "the archived page was readable: no refetch"
    assert rig.sql(f"SELECT step_starts, attempts FROM article WHERE id = {aid}") == [(0, 0)]


def test_faults_module_is_importable_without_services() -> None:
    """The harness itself imports cleanly (a syntax error would otherwise only show
    where the services exist)."""
    assert (ROOT / "tests" / "support" / "procs.py").exists()
