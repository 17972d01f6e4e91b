"""Backfills with real processes: PostgreSQL, Redis, Celery workers and beat as the
documented production commands.

* A sitemap backfill (an index, gzip and news sitemaps) of 60 URLs whose worker is
  SIGKILLed halfway finishes after a restart: every URL processed (claims included),
  pages finished before the kill never fetched again, only the pages in flight at
  the kill fetched twice, no row duplicated.
* With a large backfill in flight, a live feed's articles finish while the backfill
  holds a page: one worker consumes io, cpu and backfill, the backfill never has more
  than ``backfill_concurrency`` pages requested, and the backfill queue never holds
  more than that many item messages.

"Halfway" and "in flight" are made by the site, not by timing: it answers a given
number of pages and holds the next requests until the test lets them go.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import claimwire, cli_env
from tests.support.procs import processes
from tests.test_backfill_helpers import DAY0, serve_articles, serve_sitemaps
from worker.testing.content import STORIES, serve_site
from worker.testing.procs import celery_beat, celery_worker, wait_until, worker_env
from worker.testing.server import LocalServer, Reply

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def _q(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return list(conn.execute(sql, args or None).fetchall())


def _one(url: str, sql: str, *args: Any) -> int:
    rows = _q(url, sql, *args)
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _env(tmp_path: Path, pg_url: str, redis_url: str, **overrides: str) -> dict[str, str]:
    settings = {
        "EXTRACT_CLAIMS": "false",
        "DISPATCH_INTERVAL": "0.5",
        "SWEEP_INTERVAL": "3600",
        "LOG_LEVEL": "INFO",
        **overrides,
    }
    base = cli_env(tmp_path, **settings)
    return worker_env(base, pg_url, redis_url)


# A page held by the site must not time out in the worker meanwhile (a timeout is a
# retry: one more request of the same page).
HOLD_TIMEOUTS = {"READ_TIMEOUT": "150", "TOTAL_TIMEOUT": "180"}


def _await_statement(
    proc: subprocess.Popen[str], app: str, like: str, pg_url: str, timeout: float
) -> None:
    """Wait until a connection of ``app`` runs a statement ``ILIKE like``; fail at once,
    with its output, if ``proc`` has ended."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(pg_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                _out, err = proc.communicate()
                raise AssertionError(f"{app} ended ({proc.returncode}) first: {err[-3000:]}")
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                " AND query ILIKE %s",
                (app, like),
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.001)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {app} to run {like}")


class Gate:
    """Holds the site's answers to some pages: ``answer(path)`` says whether a request
    of ``path`` is answered at once; the others wait until :meth:`open`. Every request
    is logged, in the order the site received them, with whether it was held."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.log: list[tuple[str, bool]] = []

    def wrap(self, server: LocalServer, paths: list[str]) -> None:
        for path in paths:
            reply = server.routes[path]
            assert isinstance(reply, Reply)
            server.routes[path] = self._handler(path, reply)

    def _handler(self, path: str, reply: Reply) -> Any:
        def handler(_req: Any) -> Reply:
            with self.lock:
                hold = not self.opened.is_set() and not self.answer(path)
                self.log.append((path, hold))
            if hold:
                self.opened.wait(170)
            return reply

        return handler

    def open(self) -> None:
        with self.lock:
            self.opened.set()

    def seen(self, *, held: bool | None = None) -> list[str]:
        with self.lock:
            return [p for p, h in self.log if held is None or h == held]


def test_killed_backfill_resumes_and_processes_every_url_once(
    pg_url: str, redis_url: str, server, tmp_path: Path
) -> None:
    site = serve_articles(server, 80, "big", paragraphs=1)
    since = DAY0 + timedelta(days=20)
    serve_sitemaps(server, site, old_before=since)
    wanted = site.paths_between(since)
    assert len(wanted) == 60
    for p in site.pages:
        server.routes[p].delay = 0.01  # type: ignore[union-attr]
    # The site answers the first 20 article pages asked for; the next ones wait, so the
    # kill finds exactly 20 items done and the following ones in flight.
    answered: list[str] = []

    def first_20(path: str) -> bool:
        if len(answered) < 20:
            answered.append(path)
            return True
        return False

    gate = Gate(first_20)
    gate.wrap(server, site.pages)
    env = _env(
        tmp_path,
        pg_url,
        redis_url,
        BACKFILL_CONCURRENCY="6",
        STALE_AFTER="4",
        EXTRACT_CLAIMS="true",
        **HOLD_TIMEOUTS,
    )

    def done() -> int:
        return _one(pg_url, "SELECT count(*) FROM jobitem WHERE state <> 'pending'")

    assert claimwire(["init"], env, tmp_path).returncode == 0
    worker = celery_worker("bf", env, tmp_path, queues="io,backfill", concurrency=8)
    beat = celery_beat("beat", env, tmp_path)
    with processes(worker, beat):
        r = claimwire(
            ["backfill", "sitemap", server.url("/"), "--since", "2026-01-21"], env, tmp_path
        )
        assert r.returncode == 0 and "job 1 queued" in r.stdout, r.stderr
        wait_until(
            lambda: done() >= 20 and len(gate.seen(held=True)) >= 1,
            120,
            0.1,
            "20 items done and the next ones in flight",
        )
        worker.kill()  # SIGKILL, mid-item
        # A request the worker sent just before it died may still be in the server's
        # socket buffer, read by a server thread after the kill: it was in flight at the
        # kill too. Read the gate once its log has stopped growing.
        last: list[str] = []
        while (now := gate.seen()) != last:
            last = now
            time.sleep(0.5)
        in_flight_at_kill = set(gate.seen(held=True))
        processed_at_kill = {
            str(u).removeprefix(server.url(""))
            for (u,) in _q(pg_url, "SELECT url FROM article WHERE state = 'processed'")
        }
        gate.open()
        assert processed_at_kill == set(answered), (processed_at_kill, answered)
        assert done() == 20
        # mid-job: pages of other items in flight, at most backfill_concurrency of them
        assert 1 <= len(in_flight_at_kill) <= 6, in_flight_at_kill
        assert not in_flight_at_kill & processed_at_kill
        worker.start()
        wait_until(
            lambda: _one(pg_url, "SELECT count(*) FROM job WHERE state = 'done'") == 1,
            90,
            0.2,
            "the job to finish after the restart",
        )

    hits = {p: server.hits[p] for p in site.pages}
    assert {p for p, n in hits.items() if n} == wanted  # every URL, nothing outside the range
    assert all(hits[p] == 1 for p in processed_at_kill)  # finished work never redone
    # fetched again: only pages in flight at the kill, once each
    assert {p for p, n in hits.items() if n > 1} <= in_flight_at_kill, hits
    assert all(n <= 2 for n in hits.values()), hits
    assert server.hits["/sm/recent.xml"] == 1 and server.hits["/sm/middle.xml.gz"] == 1
    assert server.hits["/sm/old.xml"] == 0
    assert _one(pg_url, "SELECT count(*) FROM article") == 60
    assert _one(pg_url, "SELECT count(DISTINCT url) FROM article") == 60
    assert _one(pg_url, "SELECT count(*) FROM article WHERE state = 'processed'") == 60
    assert _one(pg_url, "SELECT count(*) FROM jobitem WHERE state = 'done'") == 60
    assert _one(pg_url, "SELECT count(*) FROM jobitem") == 60
    # processed exactly once: no duplicated article, sighting or claim, every article
    # through the claims step
    from worker.testing.checks import integrity

    facts = integrity(pg_url)
    assert facts.duplicated == 0 and facts.pending == 0, facts
    assert facts.claims >= 60 and facts.processed_without_claims_version == 0, facts
    assert _one(pg_url, "SELECT count(DISTINCT article_id) FROM claim") == 60

    r = claimwire(["jobs", "show", "1", "--json"], env, tmp_path)
    import json

    row = json.loads(r.stdout)
    assert (row["state"], row["discovered"], row["fetched"], row["done"]) == (
        "done",
        60,
        60,
        60,
    )


def test_live_feed_finishes_while_a_large_backfill_is_throttled(
    pg_url: str, redis_url: str, server, tmp_path: Path
) -> None:
    import redis

    bulk = serve_articles(server, 200, "bulk", paragraphs=1)
    url_file = tmp_path / "urls.txt"
    url_file.write_text("\n".join(server.url(p) for p in bulk.pages))
    feed_url = serve_site(server)
    live = {f"/news/{slug}" for slug, *_ in STORIES}
    # The site holds every backfill page until the live articles are done (and answers
    # the live pages at once): a backfill that took more than its one slot, or pages
    # sent ahead of the live ones, would show in the site's log, and would leave the
    # worker's threads waiting on held pages instead of the live articles.
    bulk_pages = set(bulk.pages)
    gate = Gate(lambda path: path not in bulk_pages)
    gate.wrap(server, [*bulk.pages, *sorted(live)])
    # The live recovery sweep runs every second here, and the job's articles look an
    # hour old to it: it must leave them to the job (a sweep that re-sent them to `io`
    # would un-throttle the backfill). An item's lease (`stale_after`) outlasts the time
    # the live articles take, however loaded the machine: an item whose lease ran out is
    # rightly handed out again, and would take the slot's second page.
    env = _env(
        tmp_path,
        pg_url,
        redis_url,
        BACKFILL_CONCURRENCY="1",
        SWEEP_INTERVAL="1",
        STALE_AFTER="150",
        **HOLD_TIMEOUTS,
    )

    r = claimwire(["backfill", "urls", str(url_file)], env, tmp_path)
    assert r.returncode == 0 and "job 1 queued (backfill urls, 200 URLs)" in r.stdout, r.stderr
    _q(
        pg_url,
        "UPDATE article SET state_changed_at = now() - interval '1 hour' "
        "WHERE url LIKE '%/bulk/%' RETURNING id",
    )
    client = redis.Redis.from_url(redis_url)
    depth: list[int] = []

    def live_done() -> bool:
        depth.append(int(client.llen("backfill")))
        n = _one(
            pg_url, "SELECT count(*) FROM article WHERE url LIKE '%/news/%' AND state = 'processed'"
        )
        return n == len(live)

    def backfill_spread() -> bool:  # a second backfill page asked for: no use waiting
        return len({p for p in gate.seen() if p in bulk_pages}) > 1

    worker = celery_worker("all", env, tmp_path, queues="io,cpu,backfill", concurrency=4)
    beat = celery_beat("beat", env, tmp_path)
    with processes(worker, beat):
        # The feed is added once the backfill is in flight (its first page held).
        wait_until(lambda: len(gate.seen(held=True)) >= 1, 60, 0.1, "the backfill's first page")
        assert claimwire(["feeds", "add", feed_url], env, tmp_path).returncode == 0
        wait_until(lambda: backfill_spread() or live_done(), 120, 0.1, "the live feed's articles")
        seen = gate.seen()
        backfill_done = _one(pg_url, "SELECT count(*) FROM jobitem WHERE state = 'done'")
        gate.open()
        # Until the live articles were done, the site saw one backfill page (its one
        # slot; asked again at most when its lease ran out), then every live page once.
        bulk_seen = [p for p in seen if p in bulk_pages]
        assert len(set(bulk_seen)) == 1, bulk_seen
        assert seen[0] in bulk_pages and sorted(p for p in seen if p in live) == sorted(live), seen
        # the backfill moves on, one item at a time
        wait_until(
            lambda: (
                _one(pg_url, "SELECT count(*) FROM jobitem WHERE state = 'done'") > backfill_done
            ),
            60,
            0.2,
            "backfill progress",
        )

    assert all(server.hits[p] == 1 for p in live)
    assert backfill_done == 0  # its page was still held
    assert max(depth) <= 1, max(depth)


def test_operations_called_by_other_systems_with_send_task_and_celery_call(
    pg_url: str, redis_url: str, server, tmp_path: Path
) -> None:
    """Another system starts jobs without claimwire's code: a bare Celery client
    ``send_task``s ``tasks.jobs.start_backfill_feed`` to the ``backfill`` queue, and the
    documented ``celery -A worker.celery_app call`` starts a URL backfill. A real
    worker (PostgreSQL, Redis) walks the RFC 5005 archive back to --since and runs every
    article through fetch, extraction, dedup and claims; ``claimwire jobs show 1
    --wait`` (Redis: it only watches) follows the job to its end."""
    import json
    import subprocess
    import threading

    from celery import Celery

    from tests.test_backfill_helpers import serve_atom_archive
    from worker.testing.checks import integrity
    from worker.testing.procs import CELERY
    from worker.testing.server import Reply

    site = serve_articles(server, 30, "atom", paragraphs=2)
    feed_url = serve_atom_archive(server, site, per_page=6)  # feed.xml, archive-4..1
    extra = serve_articles(server, 5, "extra", seed=5, paragraphs=2)
    since = DAY0 + timedelta(days=14)
    wanted = site.paths_between(since)
    # Article pages wait for the gate: the job cannot end before `jobs show --wait` runs.
    gate = threading.Event()

    def gated(reply: Reply) -> Any:
        def handler(_req: Any) -> Reply:
            gate.wait(170)
            return reply

        return handler

    # Not the subscription document's six: `feeds add` makes the feed due, and its live
    # poll fetches those at once, ahead of the job (live work first). Held at the gate,
    # they would hold the host's two slots, and the job's walk of the archive would wait
    # for them: whether the job ran within the minute below depended on which came first.
    live = set(sorted(site.pages, key=lambda p: site.dates[p], reverse=True)[:6])
    for p in site.pages:
        if p in live:
            continue
        route = server.routes[p]
        assert isinstance(route, Reply)
        server.routes[p] = gated(route)
    # a page held at the gate must not time out meanwhile (a second request of it)
    env = _env(
        tmp_path,
        pg_url,
        redis_url,
        EXTRACT_CLAIMS="true",
        BACKFILL_CONCURRENCY="3",
        **HOLD_TIMEOUTS,
    )
    assert claimwire(["init"], env, tmp_path).returncode == 0
    assert claimwire(["feeds", "add", feed_url], env, tmp_path).returncode == 0

    def jobs_in(state: str) -> int:
        return _one(pg_url, "SELECT count(*) FROM job WHERE state = %s", state)

    worker = celery_worker("all", env, tmp_path, queues="io,cpu,backfill", concurrency=4)
    beat = celery_beat("beat", env, tmp_path)
    with processes(worker, beat):
        other = Celery("someone-else", broker=redis_url)
        other.send_task(
            "tasks.jobs.start_backfill_feed",
            kwargs={"feeds": [feed_url], "since": since.date().isoformat()},
            queue="backfill",
        )
        wait_until(lambda: jobs_in("running") == 1, 60, 0.2, "job 1 to run")
        watch = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "jobs", "show", "1", "--wait"],
            env={**env, "PGAPPNAME": "cw-wait"},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # The gate opens once the command has read the job (running: no item can end
            # before the gate opens) and decided to wait: it reads the job's items
            # (`_rows` reads the job, then its items' progress) at its start and again
            # every second while it waits. Opening it at the command's first connection
            # (its schema check) let a fast job end before a slow start read it, and
            # `jobs show` then printed the finished job without waiting (seen once at
            # load 20). An idle connection's last statement is its COMMIT, so a read of
            # the items shows in `pg_stat_activity` only while its short transaction
            # runs, a few milliseconds a second: one connection looks for it every
            # millisecond or so (a new connection every 0.1 s missed it for a minute
            # under the full suite's load).
            _await_statement(watch, "cw-wait", "%jobitem%", pg_url, 150)
            gate.set()
            _out, err = watch.communicate(timeout=180)
        finally:
            gate.set()
            if watch.poll() is None:
                watch.kill()
        assert watch.returncode == 0, err[-3000:]
        n = len(wanted)
        assert f"job 1 done: {n} discovered, {n} fetched, {n} done, 0 skipped, 0 failed" in err

        call = subprocess.run(
            [
                *CELERY,
                "call",
                "tasks.jobs.start_backfill_urls",
                "--kwargs",
                json.dumps({"urls": [server.url(p) for p in extra.pages]}),
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert call.returncode == 0, call.stderr[-2000:]
        wait_until(lambda: jobs_in("done") == 2, 120, 0.2, "job 2 to finish")

    rows = {}
    for job_id in (1, 2):
        r = claimwire(["jobs", "show", str(job_id), "--json"], env, tmp_path)
        assert r.returncode == 0, r.stderr
        rows[job_id] = json.loads(r.stdout)
    assert rows[1]["kind"] == "backfill_feed" and rows[2]["kind"] == "backfill_urls"
    assert rows[1]["params"]["since"].startswith(since.date().isoformat())
    assert [rows[2][k] for k in ("state", "discovered", "fetched", "done")] == ["done", 5, 5, 5]

    # The archive was walked back to --since and no further: days 29-24, 23-18, 17-12
    # (crosses the bound); archive-2 and archive-1 never read.
    assert server.hits["/atom/archive-3.xml"] == 1
    assert server.hits["/atom/archive-2.xml"] == 0 and server.hits["/atom/archive-1.xml"] == 0
    fetched = {p for p in site.pages if server.hits[p]}
    assert fetched >= wanted  # every article of the range (the live poll takes the newest)
    assert all(server.hits[p] == 1 for p in [*fetched, *extra.pages])
    items = {
        str(u).removeprefix(server.url(""))
        for (u,) in _q(
            pg_url,
            "SELECT a.url FROM jobitem i JOIN article a ON a.id = i.article_id WHERE i.job_id = 1",
        )
    }
    assert items == wanted
    facts = integrity(pg_url)
    assert facts.duplicated == 0 and facts.pending == 0, facts
    assert facts.by_state == {"processed": facts.articles}, facts
    assert facts.claims > 0 and facts.processed_without_claims_version == 0, facts
