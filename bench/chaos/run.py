"""Chaos run: the production topology under random faults, then an audit.

Starts a private PostgreSQL cluster and a private Redis (free ports, temporary
directories), local sites on several loopback addresses serving a few hundred invented
feeds and articles, several Celery workers (``-Q io,cpu --pool threads``) and
``celery beat``. For ``--duration`` seconds it kills and restarts, at random, workers
(SIGKILL), the scheduler, Redis (restart without persistence, a longer outage that
retries meet, or FLUSHDB) and
PostgreSQL (fast or immediate shutdown, or every connection terminated). Then it lets
the system settle and compares the database with what the sites served:

* lost: an article a feed served that is not in the database, or that ended failed or
  skipped (every page is served fine, so only ``processed`` is right);
* duplicated: an article, sighting or claim stored twice;
* stuck: an article still in a pending state after the settle time;
* with claims on, articles whose stored claims differ from a clean extraction of their
  stored text (a claim lost or doubled by a re-run step).

All three must be zero and nothing quarantined (every page is healthy); the exit
status is 1 otherwise. Loopback only; bounded time; everything it started is stopped
and removed at the end.

Usage, from the repository root (``bench`` is found there; claimwire is the installed
package):

    .venv/bin/python -m bench.chaos.run --feeds 100 --per-feed 4 --duration 120
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.testing.checks import claims_mismatch, integrity
from worker.testing.content import distinct_stories, serve_site
from worker.testing.procs import (
    PostgresServer,
    Proc,
    RedisServer,
    celery_beat,
    celery_worker,
    terminate_backends,
    wait_until,
    worker_env,
)
from worker.testing.server import LocalServer, Reply

PENDING = ("discovered", "fetched", "extracted", "deduplicated")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--feeds", type=int, default=100)
    ap.add_argument("--per-feed", type=int, default=4)
    ap.add_argument("--hosts", type=int, default=4, help="loopback addresses 127.0.0.1..N")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--duration", type=float, default=120, help="seconds of chaos")
    ap.add_argument("--settle", type=float, default=240, help="max seconds to finish after")
    ap.add_argument("--min-gap", type=float, default=3.0)
    ap.add_argument("--max-gap", type=float, default=8.0)
    ap.add_argument("--page-delay", type=float, default=0.4, help="max seconds per page")
    ap.add_argument("--claims", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json", type=Path, help="write the result here too")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--loglevel", default="WARNING", help="worker log level (INFO: task times)")
    args = ap.parse_args(argv)
    rnd = random.Random(args.seed)
    load_start = os.getloadavg()

    work = Path(tempfile.mkdtemp(prefix="claimwire-chaos-"))
    log(f"work directory {work}")
    servers = [LocalServer(host=f"127.0.0.{h + 1}").start() for h in range(args.hosts)]
    pg = PostgresServer(work / "pg").init().start()
    redis = RedisServer(work / "redis").start()
    procs: list[Proc] = []
    started = time.monotonic()
    try:
        db = pg.create_database("chaos")
        served: set[str] = set()
        feed_urls: list[str] = []
        for f in range(args.feeds):
            srv = servers[f % len(servers)]
            stories = distinct_stories(args.per_feed, seed=1000 + f)
            feed_urls.append(serve_site(srv, prefix=f"/f{f}", stories=stories))
            for slug, *_ in stories:
                path = f"/f{f}/news/{slug}"
                route = srv.routes[path]
                assert isinstance(route, Reply)
                route.delay = rnd.uniform(0, args.page_delay)
                served.add(srv.url(path))

        base = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMWIRE_")}
        env = worker_env(
            base,
            db,
            redis.url(),
            DATA_DIR=str(work / "data"),
            ALLOW_PRIVATE_NETWORKS="true",
            HOST_MIN_INTERVAL="0",
            HOST_MAX_CONCURRENCY="16",
            DISPATCH_INTERVAL="2",
            DISPATCH_BATCH_SIZE="50",
            SWEEP_INTERVAL="5",
            STALE_AFTER="10",
            POLL_LEASE_SECONDS="30",
            POLL_MIN_INTERVAL="3600",
            POLL_INITIAL_INTERVAL="3600",
            CONNECT_TIMEOUT="5",
            READ_TIMEOUT="10",
            TOTAL_TIMEOUT="20",
            EXTRACT_CLAIMS="true" if args.claims else "false",
        )
        import subprocess

        def cli(*a: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "worker.cli", *a],
                env=env,
                cwd=work,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )

        for cmd in (["init"], ["feeds", "add", *feed_urls]):
            r = cli(*cmd)
            if r.returncode != 0:
                raise RuntimeError(f"claimwire {cmd[0]} failed: {r.stderr}")

        workers = [
            celery_worker(f"w{i}", env, work, concurrency=args.concurrency, loglevel=args.loglevel)
            for i in range(args.workers)
        ]
        beat = celery_beat("beat", env, work)
        procs = [*workers, beat]
        for p in procs:
            p.start()

        faults: dict[str, int] = {}
        chaos_end = time.monotonic() + args.duration
        log(f"{len(served)} articles in {args.feeds} feeds; chaos for {args.duration:.0f}s")
        while time.monotonic() < chaos_end:
            time.sleep(rnd.uniform(args.min_gap, args.max_gap))
            if time.monotonic() >= chaos_end:
                break
            fault = rnd.choices(
                [
                    "kill_worker",
                    "kill_beat",
                    "restart_redis",
                    "redis_down_long",
                    "flush_redis",
                    "restart_pg_fast",
                    "restart_pg_crash",
                    "terminate_backends",
                ],
                weights=[5, 1, 2, 1, 1, 1, 1, 1],
            )[0]
            faults[fault] = faults.get(fault, 0) + 1
            down = rnd.uniform(0.5, 3.0)
            f0 = integrity(db) if pg.running() else None
            log(
                f"fault {fault} (down {down:.1f}s); processed so far: "
                f"{f0.by_state.get('processed', 0) if f0 else '?'}"
            )
            if fault == "kill_worker":
                w = rnd.choice(workers)
                w.kill(signal.SIGKILL)
                time.sleep(down)
                w.start()
            elif fault == "kill_beat":
                beat.kill(signal.SIGKILL)
                time.sleep(down)
                beat.start()
            elif fault == "restart_redis":
                redis.restart(down_for=down)
            elif fault == "redis_down_long":
                # long enough for steps to meet it and for their retries to fail too
                redis.restart(down_for=down + 6.0)
            elif fault == "flush_redis":
                redis.flushdb()
            elif fault == "restart_pg_fast":
                pg.restart(down_for=down, mode="fast")
            elif fault == "restart_pg_crash":
                pg.restart(down_for=down, mode="immediate")
            elif fault == "terminate_backends":
                terminate_backends(db)
        chaos_seconds = time.monotonic() - started
        log(f"chaos over: {faults}; settling")
        for p in procs:  # whatever died for other reasons comes back too
            if not p.alive():
                p.start()

        def settled() -> bool:
            f = integrity(db)
            return f.pending == 0 and f.articles >= len(served)

        settle_start = time.monotonic()
        try:
            wait_until(settled, args.settle, 2.0, "the pipeline to settle")
        except TimeoutError:
            log("did not settle in time")
        settle_seconds = time.monotonic() - settle_start

        facts = integrity(db)
        mismatched = claims_mismatch(db) if args.claims else []
        import psycopg

        with psycopg.connect(db) as conn:
            stored = {str(u): str(s) for u, s in conn.execute("SELECT url, state FROM article")}
            polled = int(
                conn.execute(
                    "SELECT count(*) FROM feed WHERE last_success_at IS NOT NULL"
                ).fetchone()[0]  # type: ignore[index]
            )
        # lost: never stored, or given up on (failed/skipped) although the site served it
        # fine; stuck: still pending; quarantined: counted on its own.
        lost = sorted(
            u for u in served if stored.get(u) not in ("processed", "quarantined", *PENDING)
        )
        extra = sorted(u for u in stored if u not in served)
        # worker deaths counted by the steps that ran again after one (worker logs)
        import re

        deaths = [
            int(n)
            for w in workers
            for n in re.findall(r"step_rerun_after_death\s.*?deaths=(\d+)", w.log())
        ]
        logs = "\n".join(w.log() for w in workers)
        result: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
            "command": "python -m bench.chaos.run " + " ".join(argv or sys.argv[1:]),
            "feeds": args.feeds,
            "feeds_polled": polled,
            "articles_served": len(served),
            "articles_stored": facts.articles,
            "by_state": facts.by_state,
            "claims": facts.claims,
            "articles_whose_claims_differ_from_a_clean_extraction": len(mismatched),
            "faults": faults,
            "chaos_seconds": round(chaos_seconds, 1),
            "settle_seconds": round(settle_seconds, 1),
            "worker_starts": sum(w.starts for w in workers),
            "load_average_start": [round(x, 1) for x in load_start],
            "load_average_end": [round(x, 1) for x in os.getloadavg()],
            "lost": len(lost),
            "duplicated": facts.duplicated,
            "stuck": facts.stuck,
            "quarantined": facts.by_state.get("quarantined", 0),
            "steps_rerun_after_a_worker_death": len(deaths),
            "most_deaths_of_one_step": max(deaths, default=0),
            # suspects sent as soon as the one before settled (INFO logs only)
            "suspects_sent_on_settle": logs.count("next_suspect_sent"),
            # retries that met the broker down: one line each, left to the sweep...
            "retries_left_to_sweep": logs.count("retry_not_sent_broker_down"),
            # ...never Celery's reject with chained tracebacks
            "retries_rejected_by_celery": logs.count("requeue=False"),
            "unexpected_urls": len(extra),
        }
        print(json.dumps(result, indent=2))
        if lost:
            log(f"first lost: {lost[:5]} states {[stored.get(u) for u in lost[:5]]}")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        ok = (
            result["lost"] == 0
            and result["duplicated"] == 0
            and result["stuck"] == 0
            and result["quarantined"] == 0  # every page is healthy: none may be given up on
            and result["retries_rejected_by_celery"] == 0
            and not mismatched
        )
        log("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        for p in procs:
            p.stop(timeout=10)
        redis.stop()
        pg.destroy()
        for srv in servers:
            srv.stop()
        if not getattr(locals().get("args"), "keep", False):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
