"""The report of ``bench/fetch_causes``'s log: fetch messages and in-process runs by
cause, how late the messages ran after their ETAs, the fetch tasks' thread CPU.

    .venv/bin/python -m bench.fetch_causes_report /tmp/fetches.jsonl --pages 1124
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def _q(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def report(path: Path, pages: int) -> list[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    messages = [r for r in rows if not r.get("in")]
    runs = [r for r in rows if r.get("in")]
    n = max(1, pages)
    out = [
        f"fetch messages {len(messages)} ({len(messages) / n:.2f} a page), runs without a "
        f"message {len(runs)}; looks in all {len(rows)} ({len(rows) / n:.2f} a page)",
        "messages by cause (first send / sent back before): "
        + ", ".join(
            f"{cause} {sum(1 for r in messages if r['cause'] == cause and not r['r'])} / "
            f"{sum(1 for r in messages if r['cause'] == cause and r['r'])}"
            for cause in sorted({r["cause"] for r in messages})
        ),
        "runs without a message by cause: "
        + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r["cause"] for r in runs).items())),
    ]
    late = sorted(r["t"] - r["eta"] for r in messages if r.get("eta"))
    out.append(
        f"messages run after their ETA (s), {len(late)} with one: p10 / p50 / p90 / max "
        f"{_q(late, 0.1):.2f} / {_q(late, 0.5):.2f} / {_q(late, 0.9):.2f} / "
        f"{late[-1] if late else float('nan'):.2f}"
    )
    for cause in ("look", "slot"):
        waits = sorted(r["wait"] for r in rows if r["cause"] == cause)
        if waits:
            out.append(
                f"sent back by the {cause}: to a turn p10 / p50 / p90 "
                f"{_q(waits, 0.1):.2f} / {_q(waits, 0.5):.2f} / {_q(waits, 0.9):.2f} s ahead"
            )
    out.append(f"the fetch tasks' thread CPU {sum(r['cpu'] for r in rows):.1f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("log", type=Path)
    ap.add_argument("--pages", type=int, default=1124)
    args = ap.parse_args(argv)
    for line in report(args.log, args.pages):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
