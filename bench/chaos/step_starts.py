"""What counting worker deaths costs: the start of every step is committed in its own
transaction before the step runs (``worker.pipeline.attempts.begin_step``) and taken back in
the step's transaction (``end_step``).

Measures, interleaved so that both see the same machine load, one article step's
database work without and with the count:

* ``bare``: the step's transaction as before: take the row lock, read the article, move
  its state (an UPDATE), commit;
* ``counted``: the same, preceded by the ``begin_step`` transaction and with the
  ``end_step`` UPDATE inside the step's transaction, each transaction on a connection
  of its own from the pool (the count before the step lock);
* ``locked``: what ``run_step`` does now: the same two transactions on one connection
  kept for the step, under the step's lock (``worker.pipeline.steplock``: taken in the
  start's statement on PostgreSQL, a lock file on SQLite) released after the commit.

Wall time (median, p95) and this process's CPU time (the server's is not in it) per
step.

On SQLite (a file in WAL mode, as ``claimwire run`` uses) and on PostgreSQL (a fresh
database on the given server). The difference is the price per step; an article goes
through four steps.

Usage, from the repository root (``bench`` is found there; claimwire is the installed
package):

    .venv/bin/python -m bench.chaos.step_starts --steps 2000 \\
        --postgres postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.timing import pct


def _setup(url: str | None, data_dir: Path, n: int) -> list[int]:
    from schemas.models import Article
    from worker.core.db import dispose_engines, init_db, unit_of_work
    from worker.core.settings import Settings, get_settings

    for k in [k for k in os.environ if k.startswith("CLAIMWIRE_")]:
        del os.environ[k]
    os.environ["CLAIMWIRE_DATA_DIR"] = str(data_dir)
    if url:
        os.environ["CLAIMWIRE_DATABASE_URL"] = url
    get_settings.cache_clear()
    dispose_engines()
    init_db(Settings())
    with unit_of_work() as s:
        rows = [
            Article(url=f"https://b.example/{i}", url_hash=f"h{i}", host="b.example")
            for i in range(n)
        ]
        s.add_all(rows)
        s.flush()
        return [a.id for a in rows if a.id is not None]


def _bare(aid: int) -> None:
    from sqlalchemy import update
    from sqlmodel import col

    from schemas.models import Article
    from worker.core.db import unit_of_work
    from worker.pipeline.attempts import lock_article

    with unit_of_work() as s:
        lock_article(s, aid)
        a = s.get(Article, aid)
        assert a is not None
        s.execute(update(Article).where(col(Article.id) == aid).values(state=a.state))


def _counted(aid: int) -> None:
    from sqlalchemy import update
    from sqlmodel import col

    from schemas.models import Article
    from worker.core.db import unit_of_work
    from worker.pipeline.attempts import begin_step, end_step, lock_article

    with unit_of_work() as s:
        begin_step(s, aid, "bench", 5)
    with unit_of_work() as s:
        lock_article(s, aid)
        a = s.get(Article, aid)
        assert a is not None
        s.execute(update(Article).where(col(Article.id) == aid).values(state=a.state))
        end_step(s, aid, advanced=True)


def _locked(aid: int) -> None:
    from sqlalchemy import update
    from sqlmodel import col

    from schemas.models import Article
    from worker.core.db import get_engine, unit_of_work
    from worker.pipeline.attempts import begin_step, end_step, lock_article
    from worker.pipeline.steplock import StepLock

    with StepLock(get_engine().connect(), aid) as hold:
        with unit_of_work(bind=hold.conn) as s:
            begin_step(s, aid, "bench", 5, lock=hold)
        with unit_of_work(bind=hold.conn, then=hold.release) as s:
            lock_article(s, aid)
            a = s.get(Article, aid)
            assert a is not None
            s.execute(update(Article).where(col(Article.id) == aid).values(state=a.state))
            end_step(s, aid, advanced=True)


def _run(name: str, ids: list[int]) -> None:
    variants: dict[str, Callable[[int], None]] = {
        "bare": _bare,
        "counted": _counted,
        "locked": _locked,
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, float] = dict.fromkeys(variants, 0.0)
    for i, aid in enumerate(ids):
        order = list(variants.items())
        order = order[i % 3 :] + order[: i % 3]  # each variant first, second, third in turn
        for key, fn in order:
            c0, t0 = time.process_time(), time.perf_counter()
            fn(aid)
            times[key].append((time.perf_counter() - t0) * 1000)
            cpu[key] += time.process_time() - c0
    med = {k: statistics.median(v) for k, v in times.items()}
    for key in variants:
        print(
            f"{name} {key}: median {med[key]:.3f} ms (p95 {pct(times[key], 0.95):.3f}), "
            f"CPU {cpu[key] / len(ids) * 1000:.3f} ms a step"
        )
    for key in ("counted", "locked"):
        print(
            f"{name} {key} - bare: {med[key] - med['bare']:+.3f} ms a step (median), "
            f"ratio {med[key] / med['bare']:.2f}; CPU "
            f"{(cpu[key] - cpu['bare']) / len(ids) * 1000:+.3f} ms a step"
        )
    print(
        f"{name} locked - counted: {med['locked'] - med['counted']:+.3f} ms a step (median), "
        f"CPU {(cpu['locked'] - cpu['counted']) / len(ids) * 1000:+.3f} ms a step"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--postgres", help="a server URL; a fresh database is made on it")
    args = ap.parse_args()
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="cw-steps-") as tmp:
        _run("sqlite", _setup(None, Path(tmp), args.steps))
    if args.postgres:
        import psycopg

        name = f"cw_bench_steps_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = args.postgres.rpartition("/")
        try:
            with tempfile.TemporaryDirectory(prefix="cw-steps-") as tmp:
                _run("postgresql", _setup(f"{base}/{name}", Path(tmp), args.steps))
        finally:
            from worker.core.db import dispose_engines

            dispose_engines()
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
