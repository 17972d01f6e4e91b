"""One full poll cycle of many feeds with the production topology.

Usage, from the repository root (``bench`` is found there; claimwire is the installed
package):

    .venv/bin/python -m bench.poll_cycle                 # 10,000 feeds on 1,000 hosts
    .venv/bin/python -m bench.poll_cycle --feeds 1000 --hosts 100

What it starts (and stops and removes at the end): a private PostgreSQL cluster (with
``pg_stat_statements``) and a private Redis on free ports, a site server process
(``bench/sites.py``), ``celery worker -Q io --pool threads`` processes, the ``cpu``
worker of ``docker-compose.yml`` (``-Q cpu --pool prefork -c 2``) and ``celery beat``,
all with the default settings except ``ALLOW_PRIVATE_NETWORKS`` (the sites are on
loopback).

* The site server listens on ``--hosts`` loopback addresses 127.77.x.y, one port.
  Feeds are assigned to hosts at random (``--seed``), so the dispatcher's order mixes
  hosts as a real feed list would. Each feed is RSS 2.0 with ``--per-feed`` items and
  an ETag; ``If-None-Match`` with the current ETag gets 304. Each item's link is a
  small generated article page on the feed's host (six paragraphs of invented text).
  ``/robots.txt`` allows everything.
* Cycle 1: the feeds are added (``worker.feeds.subscriptions.add_feeds``) and made
  due; it ends when every feed has been polled once. It fills the ETags and the
  robots.txt cache. Its articles (every item of every feed) are not fetched: the fetch
  step's task is routed to a queue of its own (``bench/poll_app.py``) that nobody
  consumes in cycle 1; the queue is emptied and the articles set aside (``skipped``).
* Then ``--changed`` of the feeds (10%) get a new version with ``--new-per-change`` new
  items, every counter is reset, the io workers are started again consuming the fetch
  queue too (in production it is ``io`` itself), and cycle 2 starts with ``make_due``
  for all feeds and the dispatcher task sent at once, as ``claimwire feeds poll --all``
  does (with ``--wait-for-tick``, beat's next tick instead). Beat also runs the real
  dispatcher on its default schedule. Cycle 2 is timed from ``make_due`` to the last
  poll committed and, unless ``--no-fetch``, to the last new article processed
  (fetched, extracted, deduplicated, claims).

Reported: cycle seconds, polls/s, poll outcomes and the server's 200/304 counts, the
dispatcher's cost (runs, ``claim_due_feeds`` calls and time, its statements in
``pg_stat_statements``), all database time per poll, Redis's commands per poll (``INFO
commandstats``: the limiter's scripts, the broker's), RSS per worker process, and the
load average of this shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import platform
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.sites import NOT_FOUND, ROBOTS, Respond, log, reply, start_sites
from bench.sites import host_address as host_address_of
from worker.testing.procs import (
    PostgresServer,
    Proc,
    RedisServer,
    celery_beat,
    celery_worker,
    worker_env,
)

FETCH_QUEUE = "bench-fetch"  # bench/poll_app.py
BENCH_APP = "bench.poll_app"
# The checkout holding bench/: the Celery processes import BENCH_APP from it (they run
# in a work directory of their own, and bench/ is not part of the installed package).
CHECKOUT = Path(__file__).resolve().parents[1]
# Counters of the feed server (shared memory).
C_FEED_200, C_FEED_304, C_ROBOTS, C_OTHER, C_CONNECTIONS, C_PAGE = range(6)
N_COUNTERS = 6


PREFIX = "127.77"


def host_address(k: int) -> str:
    return host_address_of(PREFIX, k)


def feed_body(i: int, version: int, base: str, per_feed: int, new_per_change: int) -> bytes:
    top = version * new_per_change + per_feed
    items = []
    for n in range(top - 1, top - 1 - per_feed, -1):
        link = f"{base}/a/{i}/{n}.html"
        items.append(
            f"<item><title>Story {n} of feed {i}</title><link>{link}</link>"
            f'<guid isPermaLink="true">{link}</guid>'
            f"<pubDate>Mon, {1 + n % 28:02d} Jun 2026 {n % 24:02d}:00:00 GMT</pubDate>"
            f"<description>Short summary of story {n} published by feed {i}.</description>"
            "</item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>Feed {i}</title><link>{base}/</link><description>bench feed</description>"
        + "".join(items)
        + "</channel></rss>\n"
    ).encode()


def page_body(i: int, n: int) -> bytes:
    """A small generated article page (``--fetch``): invented text, a few paragraphs,
    different for every story so that dedup sees no copies."""
    words = ["harbour", "council", "budget", "river", "school", "market", "bridge", "rail"]
    paras = "".join(
        f"<p>Paragraph {p} of story {n} from feed {i}: the {words[(i + p) % 8]} committee "
        f"met on day {n % 28 + 1} and the {words[(n + p) % 8]} plan number {i * 31 + p} was "
        f"discussed at length by {p + 3} members, who said the work would go on.</p>"
        for p in range(6)
    )
    return (
        f"<!doctype html><html><head><title>Story {n} of feed {i}</title></head><body>"
        f"<article><h1>Story {n} of feed {i}</h1>{paras}</article></body></html>"
    ).encode()


# Per host k, in ``arrivals`` (shared doubles): the first and the last request's arrival
# (time.time()) and the shortest gap between two of its requests; ``requests[k]`` counts
# them, and A_SHORT the gaps under SHORT_GAP. Every request counts (feeds, pages,
# robots.txt): politeness spaces them all.
A_FIRST, A_LAST, A_GAP, A_SHORT, A_FIELDS = 0, 1, 2, 3, 4
SHORT_GAP = 0.99  # seconds: a gap under the 1 s interval by more than the server's clock

# Every request of cycle 2 in order, as the server saw it (``RequestLog``): its arrival
# (time.time()), its host's number and what it asked: feed ``i`` is ``i``, a page of
# feed ``i`` is ``-1 - i``, robots.txt and anything else :data:`W_OTHER`.
W_OTHER = -(2**40)


class RequestLog:
    """Shared arrays (fork context) of the server's requests, up to ``cap``."""

    def __init__(self, ctx: Any, cap: int) -> None:
        self.cap = cap
        self.at = ctx.Array("d", cap, lock=False)
        self.host = ctx.Array("i", cap, lock=False)
        self.what = ctx.Array("q", cap, lock=False)
        self.n = ctx.Array("q", 1, lock=False)

    def add(self, at: float, host: int, what: int) -> None:
        n = self.n[0]
        if n < self.cap:
            self.at[n], self.host[n], self.what[n] = at, host, what
            self.n[0] = n + 1

    def clear(self) -> None:
        self.n[0] = 0

    def rows(self) -> list[tuple[float, int, int]]:
        return [(self.at[j], self.host[j], self.what[j]) for j in range(self.n[0])]


def _what(path: bytes) -> int:
    """A request's entry in :class:`RequestLog`: its feed's number, ``-1 - i`` for a page
    of feed ``i``, else :data:`W_OTHER`."""
    try:
        if path.startswith(b"/f/") and path.endswith(b".xml"):
            return int(path[3:-4])
        if path.startswith(b"/a/") and path.endswith(b".html"):
            return -1 - int(path[3:-5].split(b"/")[0])
    except ValueError:
        pass
    return W_OTHER


def feed_server(
    versions: Any,
    counters: Any,
    per_feed: int,
    new_per_change: int,
    arrivals: Any = None,
    requests: Any = None,
    host_index: dict[bytes, int] | None = None,
    request_log: RequestLog | None = None,
) -> Respond:
    """``/f/<i>.xml`` (ETag; 304 for the current one), ``/a/<i>/<n>.html`` pages and
    robots.txt. With ``arrivals``, ``requests`` and ``host_index`` (the ``Host`` header's
    address to the host's number), each request's arrival is recorded per host."""
    cache: dict[tuple[int, int], bytes] = {}

    def respond(path: bytes, host: bytes, headers: dict[bytes, bytes]) -> bytes:
        if host_index is not None:
            hk = host_index.get(host.rsplit(b":", 1)[0], -1)
            if hk >= 0:
                now = time.time()
                at = A_FIELDS * hk
                if requests[hk]:
                    gap = now - arrivals[at + A_LAST]
                    if requests[hk] == 1 or gap < arrivals[at + A_GAP]:
                        arrivals[at + A_GAP] = gap
                    if gap < SHORT_GAP:
                        arrivals[at + A_SHORT] += 1
                else:
                    arrivals[at + A_FIRST] = now
                arrivals[at + A_LAST] = now
                requests[hk] += 1
                if request_log is not None:
                    request_log.add(now, hk, _what(path))
        if path.startswith(b"/f/") and path.endswith(b".xml"):
            try:
                i = int(path[3:-4])
                version = versions[i]
            except (ValueError, IndexError):
                i, version = -1, 0
            if i >= 0:
                etag = f'"{i}-{version}"'.encode()
                if headers.get(b"if-none-match") == etag:
                    counters[C_FEED_304] += 1
                    return b"HTTP/1.1 304 Not Modified\r\nETag: " + etag + b"\r\n\r\n"
                body = cache.get((i, version))
                if body is None:
                    base = "http://" + host.decode()
                    body = cache[(i, version)] = feed_body(
                        i, version, base, per_feed, new_per_change
                    )
                counters[C_FEED_200] += 1
                return reply(
                    b"application/rss+xml; charset=utf-8", body, extra=b"ETag: " + etag + b"\r\n"
                )
        if path.startswith(b"/a/") and path.endswith(b".html"):
            try:
                i, n = (int(x) for x in path[3:-5].split(b"/"))
            except ValueError:
                i = n = -1
            if i >= 0:
                counters[C_PAGE] += 1
                return reply(b"text/html; charset=utf-8", page_body(i, n))
        if path == b"/robots.txt":
            counters[C_ROBOTS] += 1
            return reply(b"text/plain", ROBOTS)
        counters[C_OTHER] += 1
        return NOT_FOUND

    return respond


# ------------------------------------------------------------------------ processes


def proc_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (prefork pools have child processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of one process, in KiB."""
    found: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    except OSError:
        pass
    return found


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (and of their children they waited for)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / tick


def bench_worker(
    name: str, env: dict[str, str], work: Path, args: argparse.Namespace, queues: str = "io"
) -> Proc:
    p = celery_worker(
        name,
        env,
        work,
        queues=queues,
        pool=args.pool,
        concurrency=args.concurrency,
        loglevel="WARNING",
    )
    p.args[p.args.index("worker.celery_app")] = BENCH_APP
    return p


def bench_beat(env: dict[str, str], work: Path) -> Proc:
    p = celery_beat("beat", env, work)
    p.args[p.args.index("worker.celery_app")] = BENCH_APP
    return p


# ------------------------------------------------------------------------ the run


SENT_BACK = re.compile(r"poll_sent_back_for_turn\W.*?feed_id\W+(\d+)")
HELD = re.compile(r"poll_held_for_turn\W.*?feed_id\W+(\d+)")


def host_pace(arrivals: Any, requests: Any, n_hosts: int, since: float) -> dict[str, Any]:
    """Each host's requests as its server saw them in cycle 2 (``since``: ``make_due``'s
    time.time()): how many, the last one's arrival, the floor politeness allows for it
    (the first one's arrival plus one ``host_min_interval`` (1 s) per request after it),
    the slip (last minus floor: the lateness its requests added up, issue 16) and the
    shortest gap between two of a host's requests (and how many were under
    :data:`SHORT_GAP`)."""
    seen = [k for k in range(n_hosts) if requests[k] > 0]
    if not seen:
        return {}
    count = sorted(int(requests[k]) for k in seen)
    last = sorted(arrivals[A_FIELDS * k + A_LAST] - since for k in seen)
    floor = sorted(arrivals[A_FIELDS * k + A_FIRST] - since + requests[k] - 1 for k in seen)
    slip = sorted(
        arrivals[A_FIELDS * k + A_LAST] - arrivals[A_FIELDS * k + A_FIRST] - (requests[k] - 1) * 1.0
        for k in seen
    )
    gaps = [arrivals[A_FIELDS * k + A_GAP] for k in seen if requests[k] > 1]

    def q(xs: list[float]) -> list[float]:
        return [round(xs[min(len(xs) - 1, int(p * len(xs)))], 2) for p in (0.5, 0.9, 1.0)]

    return {
        "requests_a_host_p50_p90_max": q([float(c) for c in count]),
        "last_request_p50_p90_max": q(last),
        "floor_p50_p90_max": q(floor),
        "slip_p50_p90_max": q(slip),
        "slip_mean": round(sum(slip) / len(slip), 3),
        "shortest_gap": round(min(gaps), 4) if gaps else None,
        # gaps under SHORT_GAP, in all and the hosts that saw one
        "gaps_under_0_99s": int(sum(arrivals[A_FIELDS * k + A_SHORT] for k in seen)),
        "hosts_with_a_gap_under_0_99s": sum(1 for k in seen if arrivals[A_FIELDS * k + A_SHORT]),
    }


def _kind(what: int, back: dict[int, int], held: dict[int, int]) -> str:
    if what == W_OTHER:
        return "other"
    if what < 0:
        return "page"
    if back.get(what):
        return "poll sent back"
    if held.get(what):
        return "poll held in its message"
    return "poll as dispatched"


def host_slip(
    rows: list[tuple[float, int, int]],
    since: float,
    back: dict[int, int],
    held: dict[int, int],
    articles: dict[int, list[tuple[float, float]]],
    interval: float = 1.0,
) -> dict[str, Any]:
    """Where each host's slip (its last request minus its floor, :func:`host_pace`)
    entered, from the server's log of cycle 2's requests (``rows``: arrival, host,
    :func:`_what`). A host's requests are one ``interval`` apart at best, and a request
    that starts late moves every later one of its host (a late start is never made
    up): the slip is the sum of its requests' *increments*, ``max(0, gap - interval)``
    each, charged to the request that came late: a poll as the dispatcher sent it, a
    poll held in its message or sent back for a moved turn (``held``, ``back``: feed
    number -> times, from the io workers' logs), a new article's page. ``articles``:
    feed number -> its new articles' (fetched, processed) seconds after ``since``, for
    the CPU steps after a host's last fetch. Reported: the increments by kind and by
    10 s of the cycle, and the hosts that end last (their last request or their last
    article processed) and the busiest, each with its first request, floor, slip by
    kind and end."""
    by_host: dict[int, list[tuple[float, int]]] = {}
    for at, hk, what in rows:
        by_host.setdefault(hk, []).append((at - since, what))
    kinds: dict[str, list[float]] = {}
    windows: dict[int, float] = {}
    hosts: dict[int, dict[str, Any]] = {}
    for hk, reqs in by_host.items():
        reqs.sort()
        own: dict[str, float] = {}
        for (prev, _), (at, what) in itertools.pairwise(reqs):
            inc = max(0.0, at - prev - interval)
            kind = _kind(what, back, held)
            kinds.setdefault(kind, []).append(inc)
            own[kind] = own.get(kind, 0.0) + inc
            windows[int(at // 10) * 10] = windows.get(int(at // 10) * 10, 0.0) + inc
        first, last = reqs[0][0], reqs[-1][0]
        feeds = {-1 - w for _, w in reqs if w < 0 and w != W_OTHER}
        done = [a for i in feeds for a in articles.get(i, [])]
        last_page = max((at for at, w in reqs if w < 0 and w != W_OTHER), default=None)
        processed = max((p for _, p in done), default=None)
        hosts[hk] = {
            "host": hk,
            "requests": len(reqs),
            "pages": len(feeds),
            "first": round(first, 2),
            "floor": round(first + (len(reqs) - 1) * interval, 2),
            "last": round(last, 2),
            "slip": round(last - first - (len(reqs) - 1) * interval, 2),
            "slip_by_kind": {k: round(v, 2) for k, v in sorted(own.items()) if v >= 0.005},
            "last_is": _kind(reqs[-1][1], back, held),
            "last_page": round(last_page, 2) if last_page is not None else None,
            "last_processed": round(processed, 2) if processed is not None else None,
            "end": round(max(last, processed or 0.0), 2),
        }

    def q(xs: list[float], p: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0

    total = sum(sum(v) for v in kinds.values()) or 1.0
    lags = [p - f for a in articles.values() for f, p in a]
    return {
        # kind: requests, their increments' sum (s), share of all slip, mean and p90 (ms)
        "increments_by_kind": {
            k: [
                len(v),
                round(sum(v), 1),
                round(sum(v) / total, 3),
                round(1000 * sum(v) / len(v), 1),
                round(1000 * q(v, 0.9), 1),
            ]
            for k, v in sorted(kinds.items())
        },
        "increments_by_10s": {str(k): round(v, 1) for k, v in sorted(windows.items())},
        "fetch_to_processed_p50_p90_max": [round(q(lags, p), 2) for p in (0.5, 0.9, 1.0)],
        "ending_last": sorted(hosts.values(), key=lambda h: -h["end"])[:8],
        "busiest": sorted(hosts.values(), key=lambda h: (-h["requests"], -h["end"]))[:5],
    }


def starts_late(rows: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """How late the poll messages and fetches of cycle 2 started in their threads
    against the time their messages were due (``bench:late``, bench/poll_app.py), by
    kind: how many (with a due time), late p50/p90/max (ms), how many later than
    ``TURN_LEAD`` (0.1 s: their turn had come), and how many started while every thread
    of their process was running (the io threads all busy)."""
    out: dict[str, Any] = {}
    for kind in sorted({r["kind"] for r in rows}):
        mine = [r for r in rows if r["kind"] == kind]
        late = sorted(r["late"] for r in mine if r["late"] is not None)

        def at(p: float, xs: list[float] = late) -> float:
            return round(1000 * xs[min(len(xs) - 1, int(p * len(xs)))], 1) if xs else 0.0

        out[kind] = {
            "started": len(mine),
            "with_a_due_time": len(late),
            "late_ms_p50_p90_max": [at(0.5), at(0.9), at(1.0)],
            "later_than_0_1s": sum(1 for x in late if x > 0.1),
            "started_with_every_thread_busy": sum(1 for r in mine if r["running"] >= concurrency),
        }
    return out


def poll_tail(sql: Any, since: datetime, logs: list[str]) -> dict[str, Any]:
    """Which hosts' polls ended last in cycle 2, and how many sends a poll took: the
    cycle's tail (issue 16). Each poll's end, in seconds after ``since``, is read from
    ``feedpoll``; the sends from the io workers' ``logs`` (one message at the
    dispatcher, one more for each ``poll_sent_back_for_turn`` of its feed)."""
    rows = sql.execute(
        "SELECT f.url, extract(epoch FROM p.started_at - %s), "
        "extract(epoch FROM p.started_at + p.duration_ms * interval '1 ms' - %s), f.id "
        "FROM feedpoll p JOIN feed f ON f.id = p.feed_id WHERE p.started_at >= %s",
        (since, since, since),
    ).fetchall()
    back: dict[int, int] = {}
    held: dict[int, int] = {}
    for text in logs:
        for m in SENT_BACK.finditer(text):
            back[int(m.group(1))] = back.get(int(m.group(1)), 0) + 1
        for m in HELD.finditer(text):
            held[int(m.group(1))] = held.get(int(m.group(1)), 0) + 1
    hosts: dict[str, dict[str, Any]] = {}
    for url, start, end, feed_id in rows:
        host = url.split("/")[2]
        h = hosts.setdefault(
            host, {"polls": 0, "first_start": 1e9, "last_end": 0.0, "sent_back": 0, "held": 0}
        )
        h["polls"] += 1
        h["first_start"] = min(h["first_start"], float(start))
        h["last_end"] = max(h["last_end"], float(end))
        h["sent_back"] += back.get(int(feed_id), 0)
        h["held"] += held.get(int(feed_id), 0)
    ends = sorted(float(end) for _, _, end, _ in rows)
    sends: dict[int, int] = {}
    for _, _, _, feed_id in rows:
        n = 1 + back.get(int(feed_id), 0)
        sends[n] = sends.get(n, 0) + 1
    last = sorted(hosts.items(), key=lambda kv: -kv[1]["last_end"])
    host_ends = sorted(h["last_end"] for h in hosts.values())

    def at(q: float, xs: list[float]) -> float:
        return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else 0.0

    return {
        "polls_ended_by_second": {
            str(s): sum(1 for e in ends if e <= s)
            for s in range(30, int(max(ends, default=0)) + 6, 5)
        },
        "host_last_poll_p50_p90_p99_max": [at(q, host_ends) for q in (0.5, 0.9, 0.99, 1.0)],
        "hosts_last_poll_after_45s": sum(1 for e in host_ends if e > 45),
        "sends_a_poll": {str(k): v for k, v in sorted(sends.items())},
        "sends_a_poll_mean": round(sum(k * v for k, v in sends.items()) / max(1, len(rows)), 3),
        "host_first_poll_p50_p90_max": [
            at(q, sorted(h["first_start"] for h in hosts.values())) for q in (0.5, 0.9, 1.0)
        ],
        # the hosts by how many of their polls were sent back: how many, and their last
        # poll's end (mean, max)
        "hosts_by_polls_sent_back": {
            str(n): [
                len(group := [h["last_end"] for h in hosts.values() if h["sent_back"] == n]),
                round(sum(group) / len(group), 1),
                round(max(group), 1),
            ]
            for n in sorted({h["sent_back"] for h in hosts.values()})
        },
        "latest_hosts": [
            {"host": host, **{k: round(v, 1) if isinstance(v, float) else v for k, v in h.items()}}
            for host, h in last[:12]
        ],
    }


def send_gaps(
    send_path: Path, rows: list[tuple[float, int, int]], clock_offset: float, n_hosts: int
) -> dict[str, Any]:
    """Cycle 2's requests as the client sent them (``--send-log``: ``R`` lines of
    ``bench/send_log``, ``t_send`` on ``time.monotonic()``) joined with their arrivals at
    the server (``rows`` of :class:`RequestLog`, on ``time.time()``; ``clock_offset``:
    ``time.time() - time.monotonic()``): the *n*-th request of a host for one feed (or
    its pages, or robots.txt) the client sent is the *n*-th the server saw. For each
    host's consecutive requests, the gap between their starts at the client (after the
    send gate) and between their arrivals: a server gap under :data:`SHORT_GAP` whose
    client starts were at least the interval apart is arrival jitter (the server read
    two requests late or together); a client gap under the interval is a short gap."""

    def key_of_path(path: str) -> str:
        if path.startswith("/a/"):
            return "/a/" + path[3:].split("/", 1)[0]  # a page of feed i: the server logs i
        return path

    def key_of_what(what: int) -> str:
        if what == W_OTHER:
            return "/robots.txt"
        return f"/f/{what}.xml" if what >= 0 else f"/a/{-1 - what}"

    sends: dict[tuple[str, str], list[float]] = {}
    for line in send_path.read_text().splitlines():
        f = line.split("\t")
        if f[0] == "R" and len(f) >= 9:
            sends.setdefault((f[3], key_of_path(f[4])), []).append(float(f[7]) + clock_offset)
    arrived: dict[tuple[str, str], list[float]] = {}
    for at, hk, what in rows:
        if 0 <= hk < n_hosts:
            arrived.setdefault((host_address(hk), key_of_what(what)), []).append(at)
    by_host: dict[str, list[tuple[float, float]]] = {}  # (arrival, client send)
    joined = 0
    for hp, ats in arrived.items():
        for at, sent in zip(sorted(ats), sorted(sends.get(hp, [])), strict=False):
            by_host.setdefault(hp[0], []).append((at, sent))
            joined += 1
    client_gaps: list[float] = []
    short_server: list[tuple[float, float]] = []  # (server gap, client gap)
    for reqs in by_host.values():
        by_send = sorted(s for _, s in reqs)
        client_gaps += [b - a for a, b in itertools.pairwise(by_send)]
        for (a_at, a_sent), (b_at, b_sent) in itertools.pairwise(sorted(reqs)):
            if b_at - a_at < SHORT_GAP:
                short_server.append((b_at - a_at, b_sent - a_sent))
    client_gaps.sort()
    return {
        "requests_sent": sum(len(v) for v in sends.values()),
        "arrivals": len(rows),
        "joined": joined,
        "client_gap_min": round(client_gaps[0], 4) if client_gaps else None,
        "client_gap_p1": round(client_gaps[len(client_gaps) // 100], 4) if client_gaps else None,
        "client_gaps_under_1s": sum(1 for g in client_gaps if g < 1.0),
        "server_gaps_under_0_99s": len(short_server),
        "of_which_client_gap_at_least_1s": sum(1 for _, c in short_server if c >= 1.0),
        "shortest_server_gaps_with_client_gap": [
            [round(sg, 4), round(cg, 4)] for sg, cg in sorted(short_server)[:5]
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--feeds", type=int, default=10_000)
    ap.add_argument("--hosts", type=int, default=1_000, help="loopback addresses 127.77.x.y")
    ap.add_argument("--changed", type=float, default=0.10, help="share of feeds changed")
    ap.add_argument("--per-feed", type=int, default=5, help="items in a feed")
    ap.add_argument("--new-per-change", type=int, default=2, help="new items in a changed feed")
    ap.add_argument("--workers", type=int, default=2, help="celery worker processes (-Q io)")
    ap.add_argument("--concurrency", type=int, default=16, help="-c of each worker")
    ap.add_argument("--pool", default="threads")
    ap.add_argument("--timeout", type=float, default=900, help="max seconds per cycle")
    ap.add_argument(
        "--no-fetch",
        dest="fetch",
        action="store_false",
        help="cycle 2 ends when every poll committed; its fetches are queued, not run "
        "(the bench before: no cpu worker)",
    )
    ap.add_argument(
        "--warm-cpu",
        type=int,
        default=0,
        metavar="N",
        help="before cycle 2, run N of cycle 1's articles through the cpu worker, so that "
        "its pool processes are warm (loaded the claims model) as a long-running one is",
    )
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json", type=Path, help="write the result here too")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument(
        "--wait-for-tick",
        action="store_true",
        help="after make_due, wait for beat's next dispatcher tick instead of sending the "
        "dispatcher at once as `claimwire feeds poll` does (the behaviour before)",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        help="write a CPU profile (cProfile) of worker w0 here; use with --pool solo",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a claimwire setting for workers and beat (default: every default)",
    )
    ap.add_argument(
        "--send-log",
        type=Path,
        help="log every request the io workers send here (bench/send_log) and report cycle "
        "2's gaps between two requests of a host at the client against those at the "
        "server: a short gap at the server is arrival jitter or a real short gap (the "
        "logging costs CPU: not a run to read CPU from)",
    )
    args = ap.parse_args(argv)
    if args.hosts > 62_500:
        ap.error("--hosts: at most 62500")
    rnd = random.Random(args.seed)
    # SIGTERM (timeout, kill): still run the cleanup in ``finally``.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    work = Path(tempfile.mkdtemp(prefix="claimwire-pollbench-"))
    log(f"work directory {work}")
    ctx = mp.get_context("fork")
    versions = ctx.Array("i", args.feeds, lock=False)
    counters = ctx.Array("q", N_COUNTERS, lock=False)

    arrivals = ctx.Array("d", A_FIELDS * args.hosts, lock=False)
    requests = ctx.Array("q", args.hosts, lock=False)
    host_index = {host_address(k).encode(): k for k in range(args.hosts)}
    request_log = RequestLog(ctx, 3 * args.feeds + 16 * args.hosts)

    def connection() -> None:
        counters[C_CONNECTIONS] += 1

    sites = start_sites(
        PREFIX,
        args.hosts,
        lambda: feed_server(
            versions,
            counters,
            args.per_feed,
            args.new_per_change,
            arrivals,
            requests,
            host_index,
            request_log,
        ),
        on_connection=connection,
    )
    pg: PostgresServer | None = None
    redis_srv: RedisServer | None = None
    procs: list[Proc] = []
    try:
        pg = PostgresServer(work / "pg").init()
        with (pg.data / "postgresql.conf").open("a") as conf:
            conf.write("\nshared_preload_libraries = 'pg_stat_statements'\n")
        pg.start()
        db = pg.create_database("pollbench")
        redis_srv = RedisServer(work / "redis").start()
        overrides = dict(s.split("=", 1) for s in args.set)
        base = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMWIRE_")}
        env = worker_env(
            base,
            db,
            redis_srv.url(),
            pythonpath=[CHECKOUT],
            DATA_DIR=str(work / "data"),
            ALLOW_PRIVATE_NETWORKS="true",
            **overrides,
        )
        if args.send_log:  # every request of the workers, as the client sends it
            args.send_log = args.send_log.resolve()
            args.send_log.write_text("")
            env["CW_SEND_LOG"] = str(args.send_log)
            env["PYTHONPATH"] = os.pathsep.join(
                [str(CHECKOUT / "bench" / "send_log"), *filter(None, [env.get("PYTHONPATH")])]
            )
        # This process uses the same settings (make_due, add_feeds, init_db).
        os.environ.update({k: v for k, v in env.items() if k.startswith("CLAIMWIRE_")})
        import psycopg
        import redis

        from worker.core.db import init_db, unit_of_work
        from worker.core.settings import get_settings, reset_settings
        from worker.feeds.polling import make_due
        from worker.feeds.subscriptions import add_feeds

        reset_settings()
        settings = get_settings()
        import worker.celery_app  # noqa: F401  (after the settings: it builds the app)
        from worker.core.outbox import send_now
        from worker.core.queues import DISPATCH_TASK

        def dispatch_now() -> None:
            send_now(DISPATCH_TASK)

        init_db(settings)
        sql = psycopg.connect(db, autocommit=True)
        sql.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        rconn = redis.Redis.from_url(redis_srv.url())

        hosts = [k % args.hosts for k in range(args.feeds)]
        rnd.shuffle(hosts)
        urls = [sites.url(hosts[i], f"/f/{i}.xml") for i in range(args.feeds)]

        def io_workers(queues: str) -> list[Proc]:
            ws = [bench_worker(f"w{i}", env, work, args, queues) for i in range(args.workers)]
            if args.profile:
                ws[0].env = {**env, "BENCH_PROFILE": str(args.profile.resolve())}
            return ws

        io = io_workers("io")
        procs = [*io, bench_beat(env, work)]
        if args.fetch:
            # docker-compose.yml's cpu worker: extraction, dedup, claims
            cpu = celery_worker(
                "cpu", env, work, queues="cpu", pool="prefork", concurrency=2, loglevel="WARNING"
            )
            cpu.args[cpu.args.index("worker.celery_app")] = BENCH_APP
            procs.append(cpu)
        for p in procs:
            p.start()
        time.sleep(15 if args.fetch else 3)  # (the cpu processes load the claims model)

        def one(query: str, *params: Any) -> Any:
            row = sql.execute(query, params).fetchone()
            return row[0] if row else None

        def wait_until(done: Any) -> float:
            """Seconds until ``done()`` (which returns whether it is done and a progress
            line) says so; a progress line every 10 s; an error when a process died or
            after ``--timeout``."""
            t = time.monotonic()
            deadline = t + args.timeout
            last_report = 0.0
            while True:
                finished, line = done()
                if finished:
                    return time.monotonic() - t
                now = time.monotonic()
                if now > deadline:
                    raise TimeoutError(f"not in time: {line}")
                if now - last_report > 10:
                    log(f"{line}, load {os.getloadavg()[0]:.2f}")
                    last_report = now
                for p in procs:
                    if not p.alive():
                        raise RuntimeError(f"{p.name} died: {p.log()[-2000:]}")
                time.sleep(0.2)

        def wait_cycle(since: datetime, label: str) -> float:
            """Seconds until every feed's poll that started after ``since`` committed."""

            def polled() -> tuple[bool, str]:
                n = one(
                    "/* bench */ SELECT count(*) FROM feed "
                    "WHERE last_attempt_at >= %s AND lease_until IS NULL",
                    since,
                )
                return n >= args.feeds, f"{label}: {n}/{args.feeds} polled"

            return wait_until(polled)

        def wait_processed(since: datetime, expected: int) -> float:
            """Seconds until ``expected`` articles discovered since ``since`` are all out
            of the pending states (processed, or failed, skipped, quarantined)."""

            def processed() -> tuple[bool, str]:
                total, pending = sql.execute(
                    "/* bench */ SELECT count(*), count(*) FILTER (WHERE state IN "
                    "('discovered', 'fetched', 'extracted', 'deduplicated')) "
                    "FROM article WHERE discovered_at >= %s",
                    (since,),
                ).fetchone() or (0, 0)
                line = f"articles: {total - pending}/{expected} done, {pending} pending"
                return total >= expected and not pending, line

            return wait_until(processed)

        # ---- cycle 1: fill ETags and the robots.txt cache
        log(f"cycle 1: {args.feeds} feeds on {args.hosts} hosts")
        t1 = datetime.now(UTC)
        # In chunks: one INSERT of 10,000 feeds passes PostgreSQL's 65,535 parameters.
        for start in range(0, len(urls), 2000):
            with unit_of_work() as s:
                add_feeds(s, [(u, None, []) for u in urls[start : start + 2000]], settings)
        with unit_of_work() as s:
            make_due(s, None)
        if not args.wait_for_tick:
            dispatch_now()
        cycle1 = wait_cycle(t1, "cycle 1")
        log(f"cycle 1 took {cycle1:.1f}s; fetches queued {rconn.llen(FETCH_QUEUE)}")
        rconn.delete(FETCH_QUEUE)
        # Cycle 1's articles (every item of every feed) are not fetched: out of the way,
        # and so are the turns their polls reserved for their fetches on the hosts'
        # timelines (worker.feeds.polling.send_fetches), or cycle 2's polls would queue
        # behind 5,000 fetches that never come.
        for key in rconn.scan_iter("cw:host:*"):
            if key.endswith((b":turns", b":line", b":moved")):
                rconn.delete(key)
        rconn.delete("cw:frontier")
        sql.execute("UPDATE article SET state = 'skipped' WHERE state = 'discovered'")
        if args.fetch:
            # From cycle 2 on, the io workers fetch too, as in production (there the
            # fetch step's queue is io itself; here it has a name of its own so that
            # cycle 1's fetches could be left out).
            for p in io:
                p.stop(timeout=15)
            io = io_workers(f"io,{FETCH_QUEUE}")
            procs = [*io, *procs[len(io) :]]
            for p in io:
                p.start()
            time.sleep(5)
            if args.warm_cpu:
                # A long-running cpu worker is warm; this one's pool processes have run
                # nothing yet (cycle 1 fetches nothing), and each would load the claims
                # model and the extraction's libraries in cycle 2's first articles.
                from worker.pipeline.steps import FIRST

                warm = [
                    r[0]
                    for r in sql.execute(
                        "SELECT id FROM article WHERE state = 'skipped' ORDER BY id LIMIT %s",
                        (args.warm_cpu,),
                    ).fetchall()
                ]
                sql.execute("UPDATE article SET state = 'discovered' WHERE id = ANY(%s)", (warm,))
                for article_id in warm:
                    send_now(FIRST.task_name, article_id)

                def warmed() -> tuple[bool, str]:
                    n = one(
                        "/* bench */ SELECT count(*) FROM article WHERE id = ANY(%s) AND state "
                        "IN ('discovered', 'fetched', 'extracted', 'deduplicated')",
                        warm,
                    )
                    return n == 0, f"warming the cpu worker: {n} of {len(warm)} pending"

                log(f"cpu worker warmed in {wait_until(warmed):.1f}s")

        # ---- the change
        changed = sorted(rnd.sample(range(args.feeds), round(args.feeds * args.changed)))
        for i in changed:
            versions[i] += 1
        time.sleep(2)  # let beat's idle dispatcher tick pass out of the way of the reset
        for c in range(5):
            counters[c] = 0
        for k in range(args.hosts):
            requests[k] = 0
            arrivals[A_FIELDS * k + A_SHORT] = 0
        request_log.clear()
        if args.send_log:
            args.send_log.write_text("")  # cycle 2's requests only (the writers append)
        rconn.delete("bench:claims", "bench:dispatch", "bench:late")
        sql.execute("SELECT pg_stat_statements_reset()")
        rconn.config_resetstat()  # Redis's commands of cycle 2 (INFO commandstats)
        articles_before = one("SELECT count(*) FROM article")
        load_before = os.getloadavg()
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        assert redis_srv.proc is not None
        groups: dict[str, list[int]] = {
            **{p.name: proc_tree(p.pid) for p in procs},
            "feed server": [sites.process.pid or 0],
            "postgresql": proc_tree(postmaster),
            "redis": [redis_srv.proc.pid],
            "this bench": [os.getpid()],
        }
        cpu_before = {name: cpu_seconds(pids) for name, pids in groups.items()}

        # ---- cycle 2, measured
        log(f"cycle 2: {len(changed)} feeds changed, the rest answer 304")
        if args.profile:
            Path(str(args.profile.resolve()) + ".on").touch()
        log_from = {p.name: len(p.log()) for p in io}
        t2 = datetime.now(UTC)
        with unit_of_work() as s:
            made_due = make_due(s, None)
        if not args.wait_for_tick:
            dispatch_now()  # as `claimwire feeds poll --all` does
        rss: dict[int, dict[str, int]] = {}
        loads: list[float] = []
        # PostgreSQL connections of the workers (each io thread may hold one): the
        # most seen at once, sampled each second
        pg_conns: list[int] = []
        watch = psycopg.connect(db, autocommit=True)

        def sample() -> None:
            loads.append(os.getloadavg()[0])
            with contextlib.suppress(psycopg.Error):
                row = watch.execute(
                    "/* bench */ SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
                pg_conns.append(int(row[0]) - 1 if row else 0)  # less the bench's own
            for p in io:
                for pid in proc_tree(p.pid):
                    m = memory_kib(pid)
                    if m:
                        peak = rss.setdefault(pid, {"worker": int(p.name[1:]), "VmRSS": 0})
                        peak["VmRSS"] = max(peak["VmRSS"], m.get("VmRSS", 0))
                        peak["VmHWM"] = m.get("VmHWM", 0)

        # wait_cycle polls the database; sample memory and load alongside it.
        sampling = threading.Event()

        def sampler() -> None:
            while not sampling.wait(1.0):
                sample()

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        expected = len(changed) * args.new_per_change
        try:
            cycle2_seen = wait_cycle(t2, "cycle 2")
            polls_seen = cycle2_seen
            if args.fetch:
                cycle2_seen = polls_seen + wait_processed(t2, expected)
        finally:
            sampling.set()
            th.join()
        sample()
        load_after = os.getloadavg()
        groups["postgresql"] = sorted(set(groups["postgresql"]) | set(proc_tree(postmaster)))
        cpu = {name: cpu_seconds(pids) - cpu_before.get(name, 0.0) for name, pids in groups.items()}

        # ---- results
        polls = sql.execute(
            "SELECT outcome, http_status, count(*) FROM feedpoll WHERE started_at >= %s "
            "GROUP BY 1, 2 ORDER BY 3 DESC",
            (t2,),
        ).fetchall()
        first_start, last_end, poll_ms = sql.execute(
            "SELECT min(started_at), max(started_at + duration_ms * interval '1 ms'), "
            "avg(duration_ms) FROM feedpoll WHERE started_at >= %s",
            (t2,),
        ).fetchone() or (None, None, None)
        assert first_start is not None and last_end is not None
        cycle2 = (last_end - t2).total_seconds()
        polling_phase = (last_end - first_start).total_seconds()
        new_articles = one("SELECT count(*) FROM article") - articles_before
        # polls sent back for a turn that moved (each started, rolled back and sent
        # again: its CPU spent twice), from the io workers' logs
        sent_back = sum(p.log()[log_from[p.name] :].count("poll_sent_back_for_turn") for p in io)
        # ... and polls whose message kept them for their moved turn (tasks/polls.py)
        held = sum(p.log()[log_from[p.name] :].count("poll_held_for_turn") for p in io)
        tail = poll_tail(sql, t2, [p.log()[log_from[p.name] :] for p in io])
        tail["host_pace"] = host_pace(arrivals, requests, args.hosts, t2.timestamp())
        # where the hosts' slip entered: the server's log of the requests, the io
        # workers' logs (polls held and sent back) and the new articles' times
        number = {
            int(feed_id): int(url.rsplit("/", 1)[1][:-4])
            for feed_id, url in sql.execute("SELECT id, url FROM feed").fetchall()
        }
        back_n: dict[int, int] = {}
        held_n: dict[int, int] = {}
        for p in io:
            text = p.log()[log_from[p.name] :]
            for pattern, into in ((SENT_BACK, back_n), (HELD, held_n)):
                for m in pattern.finditer(text):
                    i = number.get(int(m.group(1)), -1)
                    into[i] = into.get(i, 0) + 1
        new_times: dict[int, list[tuple[float, float]]] = {}
        for url, fetched, processed in sql.execute(
            "SELECT url, extract(epoch FROM fetched_at - %s), "
            "extract(epoch FROM processed_at - %s) FROM article "
            "WHERE discovered_at >= %s AND processed_at IS NOT NULL",
            (t2, t2, t2),
        ).fetchall():
            i = int(url.split("/a/", 1)[1].split("/", 1)[0])
            new_times.setdefault(i, []).append((float(fetched), float(processed)))
        tail["host_slip"] = host_slip(request_log.rows(), t2.timestamp(), back_n, held_n, new_times)
        if args.send_log:
            tail["send_log"] = send_gaps(
                args.send_log, request_log.rows(), time.time() - time.monotonic(), args.hosts
            )
            log(f"client send log against the server's arrivals: {tail['send_log']}")
        new_states = dict(
            sql.execute(
                "SELECT state, count(*) FROM article WHERE discovered_at >= %s GROUP BY 1",
                (t2,),
            ).fetchall()
        )
        whole = None
        # When the new articles were fetched and processed, in seconds after make_due
        # (p50, p90, max), and how many were processed by the time every poll had
        # committed: whether their CPU steps overlap the polls or come after them.
        timing: dict[str, Any] = {}
        if args.fetch:
            for column in ("fetched_at", "processed_at"):
                row = sql.execute(
                    f"SELECT percentile_cont(ARRAY[0.5, 0.9, 1.0]) WITHIN GROUP "
                    f"(ORDER BY extract(epoch FROM {column} - %s)) "
                    "FROM article WHERE discovered_at >= %s",
                    (t2, t2),
                ).fetchone()
                timing[column] = [round(float(x), 1) for x in (row[0] if row else None) or []]
            timing["processed_by_last_poll"] = one(
                "SELECT count(*) FROM article WHERE discovered_at >= %s AND processed_at <= %s",
                t2,
                last_end,
            )
        if args.fetch:
            last_done = one(
                "SELECT max(greatest(processed_at, state_changed_at)) FROM article "
                "WHERE discovered_at >= %s",
                t2,
            )
            whole = (max(last_done, last_end) - t2).total_seconds() if last_done else None

        # Redis's commands of the cycle (limiter, send gate, broker; those run inside a
        # script are counted too): counts the load changes little, as the statements a
        # poll. ``evalsha``: the limiter's and the send gate's scripts run.
        redis_calls = {
            name.removeprefix("cmdstat_"): int(v["calls"])
            for name, v in rconn.info("commandstats").items()
            if isinstance(v, dict) and name.removeprefix("cmdstat_") not in ("info", "config")
        }
        claims = [json.loads(x) for x in rconn.lrange("bench:claims", 0, -1)]
        dispatches = [json.loads(x) for x in rconn.lrange("bench:dispatch", 0, -1)]
        tail["starts_late"] = starts_late(
            [json.loads(x) for x in rconn.lrange("bench:late", 0, -1)], args.concurrency
        )
        log(f"poll messages and fetches, started after their due time: {tail['starts_late']}")
        stmts = sql.execute(
            "SELECT query, calls, total_exec_time, rows FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND query NOT LIKE '%%/* bench */%%' AND query NOT LIKE '%%pg_stat_statements%%' "
            "ORDER BY total_exec_time DESC"
        ).fetchall()

        def kind(q: str) -> str:
            ql = " ".join(q.split()).lower()
            if "from feed" in ql and "for update skip locked" in ql:
                return "claim: SELECT ... FOR UPDATE SKIP LOCKED"
            if ql.startswith("update feed set lease_until") and "where feed.id in (" in ql:
                return "claim: UPDATE feed SET lease_until ... WHERE id IN (...)"
            return "other"

        claim_stmts: dict[str, dict[str, float]] = {}
        for q, c, t, r in stmts:
            if kind(q) != "other":
                entry = claim_stmts.setdefault(kind(q), {"calls": 0, "exec_ms": 0.0, "rows": 0})
                entry["calls"] += c
                entry["exec_ms"] = round(entry["exec_ms"] + t, 1)
                entry["rows"] += r
        db_ms_total = sum(t for _, _, t, _ in stmts)
        db_calls_total = sum(c for _, c, _, _ in stmts)
        claim_ms = sum(v["exec_ms"] for v in claim_stmts.values())
        top = [
            {"query": " ".join(q.split())[:140], "calls": c, "exec_ms": round(t, 1)}
            for q, c, t, _ in stmts[:16]
        ]
        pg_version = one("SHOW server_version")
        redis_version = rconn.info("server")["redis_version"]
        import celery

        result: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python -m bench.poll_cycle " + " ".join(argv or sys.argv[1:]),
            "machine": {
                "nproc": os.cpu_count(),
                "mem_total_gib": round(
                    os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
                ),
                "python": platform.python_version(),
                "postgresql": pg_version,
                "redis": redis_version,
                "celery": celery.__version__,
                "load_before": [round(x, 2) for x in load_before],
                "load_after": [round(x, 2) for x in load_after],
                "load_1min_max_during": round(max(loads), 2) if loads else None,
                "postgresql_connections_max_during": max(pg_conns, default=None),
            },
            "topology": {
                "workers": args.workers,
                "pool": args.pool,
                "concurrency": args.concurrency,
                "hosts": args.hosts,
                "feeds_per_host": round(args.feeds / args.hosts, 1),
                "settings": overrides or "defaults",
                "host_max_concurrency": settings.host_max_concurrency,
                "host_min_interval": settings.host_min_interval,
                "dispatch_interval": settings.dispatch_interval,
                "dispatch_batch_size": settings.dispatch_batch_size,
                "poll_feeds_per_message": settings.poll_feeds_per_message,
                "dispatch_after_make_due": "next tick" if args.wait_for_tick else "at once",
            },
            "cycle1_seconds": round(cycle1, 1),
            "feeds": args.feeds,
            "made_due": made_due,
            "changed": len(changed),
            "cycle2": {
                "seconds": round(cycle2, 2),
                "seconds_seen_by_bench": round(cycle2_seen, 2),
                "dispatch_latency_seconds": round((first_start - t2).total_seconds(), 2),
                "polling_phase_seconds": round(polling_phase, 2),
                "polls_per_second": round(args.feeds / cycle2, 1),
                "polls_per_second_polling_phase": round(args.feeds / polling_phase, 1),
                "poll_mean_ms": round(float(poll_ms or 0), 1),
                "outcomes": [{"outcome": o, "http_status": s, "count": n} for o, s, n in polls],
                "server": {
                    "feed_200": counters[C_FEED_200],
                    "feed_304": counters[C_FEED_304],
                    "robots": counters[C_ROBOTS],
                    "other": counters[C_OTHER],
                    "tcp_connections": counters[C_CONNECTIONS],
                },
                "new_articles": new_articles,
                "polls_sent_back_for_a_moved_turn": sent_back,
                "polls_held_for_a_moved_turn": held,
                "new_articles_by_state": new_states,
                "pages_served": counters[C_PAGE],
                "fetches_queued_not_run": None if args.fetch else rconn.llen(FETCH_QUEUE),
                "whole_cycle_seconds": round(whole, 2) if whole is not None else None,
                "new_articles_seconds_p50_p90_max": timing,
                "tail": tail,
            },
            "dispatcher": {
                "runs": len(dispatches),
                "runs_that_claimed": sum(1 for d in dispatches if d["n"]),
                "run_seconds": [round(d["s"], 3) for d in dispatches if d["n"]],
                # when each run that claimed started, and each claim call ended (seconds
                # after make_due), and how many feeds it claimed
                "run_started_s": [round(d["at"] - t2.timestamp(), 2) for d in dispatches if d["n"]],
                "claims_ended_s_n": [
                    [round(c["at"] - t2.timestamp(), 2), c["n"]] for c in claims if c["n"]
                ],
                "claim_calls": len(claims),
                "claim_seconds_total": round(sum(c["s"] for c in claims), 3),
                "claim_ms_max": round(max((c["s"] for c in claims), default=0) * 1000, 1),
                "pg_statements": claim_stmts,
                "pg_exec_ms_total": round(claim_ms, 1),
            },
            "database": {
                "statements": db_calls_total,
                "exec_ms_total": round(db_ms_total, 1),
                "statements_per_poll": round(db_calls_total / args.feeds, 1),
                "exec_ms_per_poll": round((db_ms_total - claim_ms) / args.feeds, 3),
                "top": top,
                # every statement's calls (the statements a poll: BEGIN and COMMIT count)
                "calls_by_statement": [
                    {"query": " ".join(q.split())[:100], "calls": c, "exec_ms": round(t, 1)}
                    for q, c, t, _ in sorted(stmts, key=lambda s: -s[1])
                ],
            },
            "redis": {
                "commands": sum(redis_calls.values()),
                "commands_per_poll": round(sum(redis_calls.values()) / args.feeds, 2),
                "scripts_per_poll": round(redis_calls.get("evalsha", 0) / args.feeds, 2),
                "top": dict(sorted(redis_calls.items(), key=lambda kv: -kv[1])[:10]),
            },
            "cpu_seconds": {
                **{name: round(v, 2) for name, v in cpu.items()},
                "total": round(sum(cpu.values()), 2),
                "per_poll_ms_all": round(sum(cpu.values()) / args.feeds * 1000, 2),
                "per_poll_ms_workers": round(
                    sum(v for k, v in cpu.items() if k.startswith("w")) / args.feeds * 1000, 2
                ),
                "cycle_lower_bound_on_2_idle_cores": round(sum(cpu.values()) / 2, 1),
            },
            "workers_rss_mib": [
                {
                    "worker": f"w{v['worker']}",
                    "pid": pid,
                    "rss_max_during_cycle": round(v["VmRSS"] / 1024, 1),
                    "rss_peak_lifetime": round(v.get("VmHWM", 0) / 1024, 1),
                }
                for pid, v in sorted(rss.items())
            ],
        }
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        sql.close()
        watch.close()
        log(f"cycle 2: every poll committed {cycle2:.1f}s after make_due ({args.feeds} feeds)")
        log(
            f"Redis commands a poll: {result['redis']['commands_per_poll']}, scripts "
            f"{result['redis']['scripts_per_poll']} ({result['redis']['top']})"
        )
        log(
            f"tail: polls ended by second {tail['polls_ended_by_second']}; hosts' last poll "
            f"p50/p90/p99/max {tail['host_last_poll_p50_p90_p99_max']}; sends a poll "
            f"{tail['sends_a_poll']}; latest hosts {tail['latest_hosts'][:5]}"
        )
        log(
            "hosts' requests at their servers (all requests, 1 s interval): "
            + "; ".join(f"{k} {v}" for k, v in tail["host_pace"].items())
        )
        slip = tail["host_slip"]
        log(
            "the slip's increments (requests, sum s, share, mean ms, p90 ms) by kind "
            f"{slip['increments_by_kind']}; by 10 s {slip['increments_by_10s']}; "
            f"fetch to processed p50/p90/max {slip['fetch_to_processed_p50_p90_max']}"
        )
        for h in slip["ending_last"][:5]:
            log(f"ending last: {h}")
        for h in slip["busiest"][:3]:
            log(f"busiest: {h}")
        if whole is not None:
            ok = whole <= 60
            log(
                f"cycle 2 to the last new article processed: {whole:.1f}s "
                f"({'within' if ok else 'over'} 60 s); new articles {new_states}"
            )
            log(
                f"new articles (s after make_due, p50/p90/max): fetched {timing['fetched_at']}, "
                f"processed {timing['processed_at']}; {timing['processed_by_last_poll']} "
                "processed by the last poll's commit"
            )
        per_poll = result["cpu_seconds"]
        peak = max(loads, default=load_after[0])
        log(
            f"CPU per poll: {per_poll['per_poll_ms_all']} ms all processes "
            f"({per_poll['per_poll_ms_workers']} ms workers); load average "
            f"{load_before[0]:.2f} before, {load_after[0]:.2f} after, max {peak:.2f}"
        )
        return 0
    finally:
        for p in procs:
            p.stop(timeout=15)
        if redis_srv is not None:
            redis_srv.stop()
        if pg is not None:
            pg.destroy()
        sites.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
