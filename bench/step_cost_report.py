"""Sum up what ``bench/step_cost/sitecustomize.py`` wrote: per task, the messages run,
CPU milliseconds per message and SQL statements per message; per kind of process (the
`run` process, the CPU processes), CPU seconds before the worker was ready and in all.

    .venv/bin/python -m bench.step_cost_report /tmp/steps.jsonl [--pages 150]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def kind(argv: list[str]) -> str:
    text = " ".join(argv)
    if "cpu_pool" in text:
        return "cpu processes"
    if "celery" in text and "-Q" in argv:  # the production topology's workers
        return f"celery worker -Q {argv[argv.index('-Q') + 1]}"
    if "worker.cli" in text or "claimwire" in text:
        return "run process"
    return text[:40]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("file", type=Path)
    ap.add_argument("--pages", type=int, default=0, help="also print CPU ms a page")
    args = ap.parse_args(argv)
    tasks: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    firsts: dict[str, float] = defaultdict(float)
    shapes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    procs: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for line in args.file.read_text().splitlines():
        row = json.loads(line)
        p = procs[kind(row["argv"])]
        p[0] += 1
        p[1] += row["cpu_ready"] or 0.0
        p[2] += row["cpu"]
        for name, spent in row.get("first", {}).items():
            firsts[name] += spent
        for name, seen in row.get("statements", {}).items():
            for shape, n in seen.items():
                shapes[name][shape] += n
        for name, (n, cpu, statements) in row["tasks"].items():
            t = tasks[name]
            t[0] += n
            t[1] += cpu
            t[2] += statements
    for name, (n, cpu, statements) in sorted(tasks.items()):
        per_page = f", {1000 * cpu / args.pages:.1f} ms a page" if args.pages else ""
        print(
            f"{name}: {int(n)} messages, {1000 * cpu / n:.1f} ms CPU and "
            f"{statements / n:.1f} SQL statements a message{per_page}; the first message "
            f"of each process {firsts[name]:.2f} s in all"
        )
        for shape, k in sorted(shapes[name].items(), key=lambda kv: -kv[1])[:25]:
            print(f"    {k / n:6.2f}  {shape}")
    for name, (n, ready, cpu) in sorted(procs.items()):
        per_page = f", {1000 * cpu / args.pages:.1f} ms a page" if args.pages else ""
        print(f"{name} ({int(n)}): CPU {ready:.2f} s until ready, {cpu:.2f} s in all{per_page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
