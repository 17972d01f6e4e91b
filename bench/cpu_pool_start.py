"""The embedded run's CPU worker processes from their start: this version against an
older commit, interleaved in one run (issue 16, branch ``warmcpu``).

Usage, from the repository root:

    .venv/bin/python -m bench.cpu_pool_start [--base d1412d5] [--rounds 2] [--pages 30]
        [--processes 3]

Each round runs both versions one after the other (the order swapped every round): a
fresh SQLite database and archive in ``/dev/shm`` holding the first ``--pages`` pages of
``bench.frontier_speed`` (read in place from ``../shared/corpora/extraction``) as
``fetched`` articles (``bench.extract_step.build``), an extraction message for each in
the embedded broker, then ``CpuPool(settings, processes)`` of that version started, as
``claimwire run`` starts it; the CPU steps (extract, dedup, claims, every setting at its
default) take every article to ``processed``, and the pool is stopped. Printed per run:
the seconds from the pool's start to the first article processed and to the last, and
the CPU seconds of the pool's processes in all (``RUSAGE_CHILDREN`` once they have
exited: the zygote and the workers it forked, or the workers started as interpreters of
their own). The older version is ``git archive``'d to ``/tmp`` (without its ``bench``) and put
first on ``PYTHONPATH``, in a process whose working directory is ``/tmp``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def drive(root: Path, pages: int, processes: int) -> dict[str, float]:
    """One run in this process, with whatever ``worker`` is first on the path."""
    from bench.extract_step import build
    from bench.frontier_speed import load_pages

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    ids = build(root, load_pages(pages))
    from worker.celery_app import app
    from worker.core.db import dispose_engines
    from worker.core.settings import get_settings, reset_settings
    from worker.embedded.cpu_pool import CpuPool
    from worker.pipeline.steps import step_named

    reset_settings()
    settings = get_settings()
    name = step_named("extract").task_name
    for article_id in ids:
        app.send_task(name, args=[article_id], queue="cpu")
    dispose_engines()  # nothing of this process's database left open
    db = sqlite3.connect(f"file:{root}/claimwire.db?mode=ro", uri=True)
    t0 = time.monotonic()
    pool = CpuPool(settings, processes).start()
    first = last = 0.0
    try:
        while True:
            (done,) = db.execute(
                "SELECT count(*) FROM article WHERE state IN ('processed', 'quarantined')"
            ).fetchone()
            now = time.monotonic() - t0
            if done and not first:
                first = now
            if done >= len(ids):
                last = now
                break
            if now > 1800:
                raise SystemExit(f"only {done} of {len(ids)} after {now:.0f} s")
            time.sleep(0.05)
    finally:
        pool.stop()
    (bad,) = db.execute("SELECT count(*) FROM article WHERE state <> 'processed'").fetchone()
    db.close()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(root, ignore_errors=True)
    return {
        "first": first,
        "last": last,
        "cpu": ru.ru_utime + ru.ru_stime,
        "not_processed": bad,
        "maxrss_mib": ru.ru_maxrss / 1024,
    }


def export(commit: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    shutil.rmtree(into / "bench")  # this repository's bench is used with either version
    return into


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", default="d1412d5", help="the older commit")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pages", type=int, default=30)
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--drive", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.drive:
        print(json.dumps(drive(args.drive, args.pages, args.processes)))
        return 0
    with tempfile.TemporaryDirectory(prefix="warmcpu-base-") as tmp:
        versions = {"base": export(args.base, Path(tmp) / "src"), "this": ROOT}
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMWIRE_")}
        results: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
        for r in range(args.rounds):
            order = ["base", "this"] if r % 2 == 0 else ["this", "base"]
            for name in order:
                load = os.getloadavg()[0]
                run = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.cpu_pool_start",
                        "--pages",
                        str(args.pages),
                        "--processes",
                        str(args.processes),
                        "--drive",
                        f"/dev/shm/warmcpu-bench-{name}-{r}",
                    ],
                    env={**env, "PYTHONPATH": f"{versions[name]}:{ROOT}"},
                    cwd="/tmp",
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if run.returncode != 0:
                    print(run.stderr[-3000:], file=sys.stderr)
                    return 1
                row = json.loads(run.stdout.strip().splitlines()[-1])
                row["load"] = load
                results[name].append(row)
                print(
                    f"round {r} {name}: first processed {row['first']:.1f} s, all "
                    f"{row['last']:.1f} s, CPU {row['cpu']:.1f} s, not processed "
                    f"{row['not_processed']}, max RSS {row['maxrss_mib']:.0f} MiB "
                    f"(load {load:.1f})",
                    flush=True,
                )
        for name, rows in results.items():
            n = len(rows)
            print(
                f"{name}: mean first processed {sum(r['first'] for r in rows) / n:.1f} s, "
                f"all {sum(r['last'] for r in rows) / n:.1f} s, "
                f"CPU {sum(r['cpu'] for r in rows) / n:.1f} s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
