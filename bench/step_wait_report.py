"""Sum up what ``bench/step_wait/sitecustomize.py`` wrote: per task, where its wall time
went (CPU, waiting for a core, asleep: of which SQL, and the wait for SQLite's write
lock), how long the write lock was held and with how much CPU; per kind of process,
its lifetime, CPU and the cores it used; the CPU processes' time between two messages
(idle), split by whether the ``cpu`` queue had messages waiting then.

    .venv/bin/python -m bench.step_wait_report /tmp/wait.jsonl [--pages 150]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
from collections import defaultdict
from pathlib import Path


def kind(argv: list[str]) -> str:
    text = " ".join(argv)
    if "cpu_pool" in text:
        return "cpu processes"
    if "worker/cli" in text or "worker.cli" in text or "claimwire" in text:
        return "run process"
    return text[:40]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("file", type=Path)
    ap.add_argument("--pages", type=int, default=0, help="also print ms a page")
    ap.add_argument("--bin", type=float, default=5.0, help="seconds a line of the timeline")
    args = ap.parse_args(argv)
    rows = [json.loads(line) for line in args.file.read_text().splitlines() if line.strip()]
    tasks: dict[str, list[float]] = defaultdict(lambda: [0.0] * 12)
    openers: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    procs: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, float("inf"), 0.0])
    sends: list[float] = []
    starts: list[float] = []
    for row in rows:
        for name, values in row["tasks"].items():
            t = tasks[name]
            for i, v in enumerate(values):
                t[i] += v
        for name, seen in row["openers"].items():
            for statement, values in seen.items():
                o = openers[name][statement]
                for i, v in enumerate(values):
                    o[i] += v
        p = procs[kind(row["argv"])]
        p[0] += 1
        p[1] += row["ended"] - row["started"]
        p[2] += row["cpu"]
        p[3] = min(p[3], row["started"])
        p[4] = max(p[4], row["ended"])
        sends.extend(t for t, _ in row["sends"])
        if kind(row["argv"]) == "cpu processes":
            starts.extend(s[0] for s in row["spans"])
    n_pages = args.pages or 0
    print("per task: messages; a message's wall = CPU + waiting for a core + asleep (ms)")
    for name, t in sorted(tasks.items(), key=lambda kv: -kv[1][1]):
        n = t[0] or 1
        asleep = t[1] - t[2] - t[3]
        print(
            f"  {name}: {int(t[0])}; wall {1000 * t[1] / n:.1f} = CPU {1000 * t[2] / n:.1f}"
            f" + core {1000 * t[3] / n:.1f} + asleep {1000 * asleep / n:.1f}"
            f" (SQL {1000 * t[5] / n:.1f} of it); write transactions {t[6] / n:.2f}: "
            f"lock wait {1000 * t[7] / n:.1f}, held {1000 * t[8] / n:.1f} "
            f"(CPU {1000 * t[9] / n:.1f}), commit {1000 * t[10] / n:.1f} "
            f"(asleep {1000 * t[11] / n:.1f})"
        )
        for statement, (k, wait, held) in sorted(openers[name].items(), key=lambda kv: -kv[1][2])[
            :4
        ]:
            print(
                f"      opened by {statement!r}: {k / n:.2f} a message, "
                f"wait {1000 * wait / max(k, 1):.1f} ms, held {1000 * held / max(k, 1):.1f} ms"
            )
    first = min(p[3] for p in procs.values())
    last = max(p[4] for p in procs.values())
    wall = last - first
    total_cpu = sum(p[2] for p in procs.values())
    print(f"processes: {wall:.1f} s from the first start to the last end")
    for name, (n, life, cpu, _, _) in sorted(procs.items()):
        per_page = f", {1000 * cpu / n_pages:.1f} ms a page" if n_pages else ""
        print(
            f"  {name} ({int(n)}): lived {life:.1f} s, CPU {cpu:.1f} s{per_page}, "
            f"{cpu / life:.2f} cores while alive"
        )
    print(f"  all: CPU {total_cpu:.1f} s in {wall:.1f} s: {total_cpu / wall:.2f} cores")
    # the CPU processes' time between two messages, by whether the cpu queue held a
    # message then (sent and not yet started by anyone)
    sends.sort()
    starts.sort()

    def waiting(at: float) -> int:
        return bisect.bisect_right(sends, at) - bisect.bisect_right(starts, at)

    idle_busy = idle_empty = before_first = after_last = 0.0
    gaps: list[float] = []
    in_steps = 0.0
    for row in rows:
        if kind(row["argv"]) != "cpu processes" or not row["spans"]:
            continue
        spans = sorted(row["spans"])
        before_first += spans[0][0] - row["started"]
        after_last += row["ended"] - spans[-1][1]
        for a, b in itertools.pairwise(spans):
            gap = b[0] - a[1]
            gaps.append(gap)
            if waiting(a[1] + 0.001) > 0:
                idle_busy += gap
            else:
                idle_empty += gap
        in_steps += sum(s[1] - s[0] for s in spans)
    if gaps:
        gaps.sort()
        print(
            f"cpu processes: in steps {in_steps:.1f} s; before their first message "
            f"{before_first:.1f} s, after their last {after_last:.1f} s; between two "
            f"messages {sum(gaps):.1f} s ({len(gaps)} gaps, median "
            f"{1000 * gaps[len(gaps) // 2]:.1f} ms, p90 {1000 * gaps[9 * len(gaps) // 10]:.1f} ms):"
            f" {idle_busy:.1f} s with messages waiting in the cpu queue, "
            f"{idle_empty:.1f} s with none"
        )
    timeline(rows, first, last, args.bin)
    return 0


def timeline(rows: list[dict], first: float, last: float, width: float) -> None:  # type: ignore[type-arg]
    """Per ``width`` seconds: cores used by the run process, by the CPU processes, by
    the whole machine (everyone's work), and the CPU processes in a step."""
    n = int((last - first) / width) + 1
    used: dict[str, list[float]] = defaultdict(lambda: [0.0] * n)
    machine = [0.0] * n
    machine_seen = [False] * n
    stepping = [0.0] * n
    for row in rows:
        k = kind(row["argv"])
        samples = row.get("samples", [])
        for (t0, c0, b0, _), (_, c1, b1, _) in itertools.pairwise(samples):
            i = min(n - 1, max(0, int((t0 - first) / width)))
            used[k][i] += c1 - c0
            if k == "run process":
                machine[i] += b1 - b0
                machine_seen[i] = True
        if k == "cpu processes":
            for a, b, _ in row["spans"]:
                t = a
                while t < b:
                    i = min(n - 1, max(0, int((t - first) / width)))
                    end = min(b, first + (i + 1) * width)
                    stepping[i] += end - t
                    t = end
    print(
        f"timeline ({width:g} s a line): cores used by the run process, the CPU "
        "processes, the whole machine; CPU processes in a step"
    )
    for i in range(n):
        whole = f"{machine[i] / width:.2f}" if machine_seen[i] else "  - "
        print(
            f"  {i * width:6.0f} s  run {used['run process'][i] / width:.2f}  cpu "
            f"{used['cpu processes'][i] / width:.2f}  machine {whole}  "
            f"stepping {stepping[i] / width:.2f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
