"""Backfills with real processes: PostgreSQL, Redis, Celery workers and beat as the
documented production commands.

* A sitemap backfill (an index, gzip and news sitemaps) of 60 URLs whose worker is
  SIGKILLed halfway finishes after a restart: every URL processed, pages finished
  before the kill never fetched again, at most the pages in flight at the kill
  fetched twice, no row duplicated.
* With a large backfill queued, a live feed's articles finish while almost all of the
  backfill is still pending: one worker consumes io, cpu and backfill, and the
  backfill queue never holds more than ``backfill_concurrency`` item messages.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import claimwire, cli_env
from tests.support.content import STORIES, serve_site
from tests.support.procs import celery_beat, celery_worker, processes, wait_until, worker_env
from tests.test_backfill_helpers import DAY0, serve_articles, serve_sitemaps

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def _q(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return list(conn.execute(sql, args or None).fetchall())


def _one(url: str, sql: str, *args: Any) -> int:
    rows = _q(url, sql, *args)
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _env(tmp_path: Path, pg_url: str, redis_url: str, **overrides: str) -> dict[str, str]:
    base = cli_env(
        tmp_path,
        EXTRACT_CLAIMS="false",
        DISPATCH_INTERVAL="0.5",
        SWEEP_INTERVAL="3600",
        LOG_LEVEL="INFO",
        **overrides,
    )
    return worker_env(base, pg_url, redis_url)


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
    env = _env(tmp_path, pg_url, redis_url, BACKFILL_CONCURRENCY="6", STALE_AFTER="4")

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
        wait_until(lambda: done() >= 20, 60, 0.1, "20 items done")
        worker.kill()  # SIGKILL, mid-item
        processed_at_kill = {
            str(u).removeprefix(server.url(""))
            for (u,) in _q(pg_url, "SELECT url FROM article WHERE state = 'processed'")
        }
        assert 20 <= len(processed_at_kill) < 58
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
    assert sum(n - 1 for n in hits.values() if n) <= 6  # only pages in flight at the kill
    assert server.hits["/sm/recent.xml"] == 1 and server.hits["/sm/middle.xml.gz"] == 1
    assert server.hits["/sm/old.xml"] == 0
    assert _one(pg_url, "SELECT count(*) FROM article") == 60
    assert _one(pg_url, "SELECT count(DISTINCT url) FROM article") == 60
    assert _one(pg_url, "SELECT count(*) FROM article WHERE state = 'processed'") == 60
    assert _one(pg_url, "SELECT count(*) FROM jobitem WHERE state = 'done'") == 60
    assert _one(pg_url, "SELECT count(*) FROM jobitem") == 60

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
    for p in bulk.pages:
        server.routes[p].delay = 0.15  # type: ignore[union-attr]
    url_file = tmp_path / "urls.txt"
    url_file.write_text("\n".join(server.url(p) for p in bulk.pages))
    feed_url = serve_site(server)
    env = _env(tmp_path, pg_url, redis_url, BACKFILL_CONCURRENCY="1")

    r = claimwire(["backfill", "urls", str(url_file)], env, tmp_path)
    assert r.returncode == 0 and "job 1 queued (backfill urls, 200 URLs)" in r.stdout, r.stderr
    assert claimwire(["feeds", "add", feed_url], env, tmp_path).returncode == 0

    live = {f"/news/{slug}" for slug, *_ in STORIES}
    client = redis.Redis.from_url(redis_url)
    depth: list[int] = []

    def live_done() -> bool:
        depth.append(int(client.llen("backfill")))
        n = _one(
            pg_url, "SELECT count(*) FROM article WHERE url LIKE '%/news/%' AND state = 'processed'"
        )
        return n == len(live)

    worker = celery_worker("all", env, tmp_path, queues="io,cpu,backfill", concurrency=4)
    beat = celery_beat("beat", env, tmp_path)
    with processes(worker, beat):
        started = time.monotonic()
        wait_until(live_done, 40, 0.1, "the live feed's articles")
        live_latency = time.monotonic() - started
        backfill_done = _one(pg_url, "SELECT count(*) FROM jobitem WHERE state = 'done'")
        # the backfill moves on, one item at a time
        wait_until(
            lambda: (
                _one(pg_url, "SELECT count(*) FROM jobitem WHERE state = 'done'") > backfill_done
            ),
            20,
            0.2,
            "backfill progress",
        )

    assert all(server.hits[p] == 1 for p in live)
    # One backfill item at a time at ~0.15 s a page: most of the 200 are still pending
    # when the live articles are done (a backfill on the io queue would have put 200
    # fetches ahead of them).
    assert backfill_done < 60, (backfill_done, live_latency)
    assert max(depth) <= 1, max(depth)
