"""Extraction alone vs fetch+extract+store through the queue, on the same pages.

    .venv/bin/python -m bench.pipeline_speed [--pages N] [--concurrency 1]

Pages: Mozilla Readability's test pages in ../shared (read from there, served from
memory by a local HTTP server; nothing is copied into the repository).

* extraction alone: `decode_html` + `extract_page` per page, in this process;
* through the queue: the pages listed in a local feed, `claimwire run --until-idle`
  (embedded broker, SQLite, claims off, one worker thread so steps run one at a time),
  and the per-page cost taken as the gaps between consecutive `extracted_at` times.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT.parent / "shared" / "corpora" / "extraction" / "readability-test-pages" / "pages"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=1)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.support.content import rss
    from tests.support.server import LocalServer, Reply
    from worker.charset import decode_html
    from worker.extraction import extract_page

    dirs = sorted(p for p in PAGES.iterdir() if (p / "source.html.gz").exists())[: args.pages]
    bodies = {d.name: gzip.decompress((d / "source.html.gz").read_bytes()) for d in dirs}

    alone = []
    for name, body in bodies.items():
        t = time.perf_counter()
        html, _ = decode_html(body, "text/html")
        extract_page(html, f"http://127.0.0.1/p/{name}")
        alone.append((time.perf_counter() - t) * 1000)

    server = LocalServer().start()
    day = datetime(2026, 1, 1, tzinfo=UTC)
    items = []
    for i, (name, body) in enumerate(bodies.items()):
        server.routes[f"/p/{name}"] = Reply(body=body)
        items.append((server.url(f"/p/{name}"), name, day + timedelta(minutes=i)))
    server.routes["/feed.xml"] = Reply(
        body=rss(server.url("/"), items), content_type="application/rss+xml"
    )
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMWIRE_")}
        env.update(
            CLAIMWIRE_DATA_DIR=f"{tmp}/data",
            CLAIMWIRE_ALLOW_PRIVATE_NETWORKS="true",
            CLAIMWIRE_HOST_MIN_INTERVAL="0",
            CLAIMWIRE_HOST_MAX_CONCURRENCY="64",
            CLAIMWIRE_EXTRACT_CLAIMS="false",
            CLAIMWIRE_WORKER_CONCURRENCY=str(args.concurrency),
        )
        cli = [sys.executable, "-m", "worker.cli"]
        subprocess.run(
            [*cli, "feeds", "add", server.url("/feed.xml")],
            env=env,
            cwd=tmp,
            check=True,
            capture_output=True,
        )
        t = time.perf_counter()
        subprocess.run(
            [*cli, "run", "--until-idle"], env=env, cwd=tmp, check=True, capture_output=True
        )
        wall = time.perf_counter() - t
        os.environ["CLAIMWIRE_DATA_DIR"] = f"{tmp}/data"
        from sqlmodel import col, select

        from schemas.models import Article
        from worker.db import unit_of_work

        with unit_of_work() as s:
            times = sorted(
                t
                for t in s.exec(
                    select(Article.extracted_at).where(col(Article.extracted_at).is_not(None))
                ).all()
                if t
            )
    server.stop()
    gaps = [(b - a).total_seconds() * 1000 for a, b in itertools.pairwise(times)]
    print(
        f"pages: {len(bodies)}; extracted through the queue: {len(times)}; "
        f"worker threads: {args.concurrency}"
    )
    print("| measure | median ms | p95 ms |")
    print("|---|---|---|")
    print(
        f"| extraction alone (decode + trafilatura) | {statistics.median(alone):.1f} "
        f"| {pct(alone, 0.95):.1f} |"
    )
    if gaps:
        print(
            f"| fetch + archive + extract + store, through the queue (gap between "
            f"completions) | {statistics.median(gaps):.1f} | {pct(gaps, 0.95):.1f} |"
        )
        print(
            f"\noverhead of the pipeline over bare extraction (medians): "
            f"{statistics.median(gaps) / statistics.median(alone):.2f}x; whole run "
            f"{wall:.1f}s including start-up and polling"
        )


if __name__ == "__main__":
    main()
