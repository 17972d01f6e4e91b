"""Extraction alone vs fetch+extract+store through the queue, page by page, same pages.

Usage, from the repository root (``bench`` is found there; claimwire is the installed
package):

    .venv/bin/python -m bench.pipeline_speed [--pages 100] [--redis URL] [--pg URL]

Pages: Mozilla Readability's test pages in ../shared (read from there, served from memory
by a local HTTP server; nothing is copied into the repository).

The production topology: Redis as the broker, PostgreSQL as the database, and one real
``celery -A worker.celery_app worker -Q io,cpu --pool threads -c 1`` process (claims off,
so the steps are fetch -> extract -> dedup -> done). For every page, in turn:

1. **extraction alone**: ``decode_html`` + ``extract_page`` of the page's bytes in this
   process (what ``claimwire extract`` does);
2. **through the queue**: a discovered article for the page's local URL is inserted, its
   fetch task is sent, and the latency is ``processed_at`` (written by the worker when the
   last step commits) minus the moment the task was sent. It includes the broker round
   trips, robots.txt (cached after the first page), the host limiter in Redis, the HTTP
   download, archiving (zstd), the database writes of three steps, and dedup.

Pages go one at a time, so there is no queueing behind other pages, and the two
measures of one page are taken seconds apart: on a shared, noisy machine the per-page
difference and the ratio of medians are more trustworthy than the absolute numbers.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT.parent / "shared" / "corpora" / "extraction" / "readability-test-pages" / "pages"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument(
        "--redis", default="redis://127.0.0.1:6379/13", help="a database of its own: flushed first"
    )
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    import psycopg
    import redis

    from worker.testing.procs import celery_worker, worker_env
    from worker.testing.server import LocalServer, Reply

    dirs = sorted(p for p in PAGES.iterdir() if (p / "source.html.gz").exists())[: args.pages]
    bodies = {d.name: gzip.decompress((d / "source.html.gz").read_bytes()) for d in dirs}

    redis.Redis.from_url(args.redis).flushdb()
    dbname = f"cw_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    db_url = args.pg.rsplit("/", 1)[0] + f"/{dbname}"
    server = LocalServer().start()
    for name, body in bodies.items():
        server.routes[f"/p/{name}"] = Reply(body=body)
    tmp = Path(tempfile.mkdtemp(prefix="cw-speed-"))
    settings_env = {
        "CLAIMWIRE_DATA_DIR": str(tmp / "data"),
        "CLAIMWIRE_DATABASE_URL": db_url,
        "CLAIMWIRE_BROKER_URL": args.redis,
        "CLAIMWIRE_ALLOW_PRIVATE_NETWORKS": "true",
        "CLAIMWIRE_HOST_MIN_INTERVAL": "0",
        "CLAIMWIRE_HOST_MAX_CONCURRENCY": "8",
        "CLAIMWIRE_EXTRACT_CLAIMS": "false",
        "CLAIMWIRE_LOG_LEVEL": "WARNING",
    }
    for key in [k for k in os.environ if k.startswith("CLAIMWIRE_")]:
        del os.environ[key]
    os.environ.update(settings_env)

    from schemas.models import Article
    from tasks.articles import fetch_article
    from worker.celery_app import app, celery_config
    from worker.core.db import dispose_engines, init_db, unit_of_work
    from worker.core.settings import get_settings, reset_settings
    from worker.network.urls import host_of, url_hash
    from worker.pages.charset import decode_html
    from worker.pages.extractor import extract_page

    reset_settings()
    app.conf.update(celery_config(get_settings()))
    init_db()
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMWIRE_")}
    env = worker_env({**base, **settings_env}, db_url, args.redis, LOG_LEVEL="WARNING")
    worker = celery_worker("speed", env, tmp, concurrency=1, loglevel="WARNING").start()

    def through_queue(url: str) -> tuple[float, float, float, float]:
        with unit_of_work() as s:
            a = Article(url=url, url_hash=url_hash(url), host=host_of(url))
            s.add(a)
            s.flush()
            aid = a.id
        sent = datetime.now(UTC)
        fetch_article.delay(aid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with unit_of_work() as s:
                row = s.get(Article, aid)
                assert row is not None
                if row.state == "processed":
                    assert row.fetched_at and row.extracted_at and row.processed_at
                    return (
                        (row.processed_at - sent).total_seconds() * 1000,
                        (row.fetched_at - sent).total_seconds() * 1000,
                        (row.extracted_at - row.fetched_at).total_seconds() * 1000,
                        (row.processed_at - row.extracted_at).total_seconds() * 1000,
                    )
                if row.state in ("failed", "skipped", "quarantined"):
                    raise RuntimeError(f"{url}: {row.state} {row.failure_reason}")
            time.sleep(0.005)
        raise RuntimeError(f"{url}: not processed within 120 s; see {worker.log_path}")

    alone: list[float] = []
    queue: list[float] = []
    parts: list[tuple[float, float, float]] = []
    load_before = os.getloadavg()
    started = time.perf_counter()
    try:
        names = list(bodies)
        for i, name in enumerate(names[: args.warmup]):
            through_queue(server.url(f"/p/{name}?warmup={i}"))
        for name in names:
            t = time.perf_counter()
            html, _ = decode_html(bodies[name], "text/html")
            extract_page(html, server.url(f"/p/{name}"))
            alone.append((time.perf_counter() - t) * 1000)
            total, to_fetched, fetched_to_extracted, extracted_to_done = through_queue(
                server.url(f"/p/{name}")
            )
            queue.append(total)
            parts.append((to_fetched, fetched_to_extracted, extracted_to_done))
    finally:
        worker.stop()
        server.stop()
        dispose_engines()
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    diff = [q - a for q, a in zip(queue, alone, strict=True)]

    def line(label: str, xs: list[float]) -> str:
        return f"| {label} | {statistics.median(xs):.1f} | {pct(xs, 0.95):.1f} |"

    print(
        f"pages: {len(bodies)} (readability test pages, served locally), one at a time; "
        f"worker: 1 thread, Redis + PostgreSQL; wall {wall:.0f}s; "
        f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} "
        f"on {os.cpu_count()} cores"
    )
    print()
    print("| measure (ms per page) | median | p95 |")
    print("|---|---|---|")
    print(line("extraction alone (decode + trafilatura + metadata)", alone))
    print(line("fetch + extract + store through the queue (sent -> processed)", queue))
    for i, label in enumerate(
        (
            "  of which: sent -> fetched (queue, robots, limiter, HTTP, archive)",
            "  of which: fetched -> extracted (queue, archive read, extraction)",
            "  of which: extracted -> processed (queue, dedup, claims step)",
        )
    ):
        print(line(label, [p[i] for p in parts]))
    print(line("pipeline minus extraction alone, per page", diff))
    print()
    print(
        f"overhead of the pipeline over bare extraction: median "
        f"{statistics.median(diff):.1f} ms per page; ratio of medians "
        f"{statistics.median(queue) / statistics.median(alone):.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
