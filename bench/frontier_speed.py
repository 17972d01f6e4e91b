"""The crawl frontier end to end: real pages on many hosts, default politeness (issue 16).

Usage, from the repository root (``bench`` is found there; claimwire is the installed
package):

    .venv/bin/python -m bench.frontier_speed --mode embedded      # 100 hosts, every page
    .venv/bin/python -m bench.frontier_speed --mode production
    .venv/bin/python -m bench.frontier_speed --mode embedded --hosts 1 --pages 200
    .venv/bin/python -m bench.frontier_speed --mode cost --pending 100000 --cost-hosts 10000

Pages: Mozilla Readability's test pages and trafilatura's evaluation pages in
../shared/corpora/extraction (read from there, served from memory by a feed server
process; nothing is copied into the repository). Page ``j`` belongs to host
``j % hosts``; the hosts are loopback addresses 127.78.x.y on one port, each with a
robots.txt and one RSS feed listing its pages.

* **bare**: ``trafilatura.extract`` of every page (decoded as the pipeline decodes
  it) in this process, one after another: the yardstick, measured in the same run just
  before the pipeline (``--bare-after``: after it too; the machine is shared).
* **embedded**: ``claimwire init``, ``claimwire feeds add`` (every host's feed), then
  ``claimwire run --until-idle`` timed as a user runs it: SQLite, the embedded broker,
  every setting at its default (1 s and 2 requests per host, claims on).
* **production**: a private PostgreSQL cluster and a private Redis; the worker
  processes of ``docker-compose.yml`` (``-Q io --pool threads -c 32``, ``-Q cpu --pool
  prefork -c 2``) and ``celery beat``; the feeds are added while the scheduler cannot
  reach them, then timed from ``claimwire feeds poll --all`` until no article is
  pending.
* **cost**: the frontier's own cost with Redis: ``--pending`` turns reserved over
  ``--cost-hosts`` hosts (what as many waiting fetches hold), Redis memory and time per
  reservation at each tenth, then each turn taken at its time; and the same for the
  in-process timeline of the embedded mode (``tracemalloc``).

In the embedded mode the CPU time of ``run --until-idle`` with all its processes (the
children's rusage, once they have exited) is printed per page, next to the bare
extraction's CPU per page (of the last bare pass measured).

The feed server counts every request per host, and the shortest gap between two page
requests of one host, and the most requests of one host in flight at once: the proof
that politeness held.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.sites import NOT_FOUND, ROBOTS, Respond, log, reply, start_sites
from bench.sites import host_address as host_address_of

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora" / "extraction"
PENDING = ("discovered", "fetched", "extracted", "deduplicated")


def load_pages(limit: int | None) -> list[bytes]:
    pages: list[bytes] = []
    for d in sorted((CORPORA / "readability-test-pages" / "pages").iterdir()):
        src = d / "source.html.gz"
        if src.exists():
            pages.append(gzip.decompress(src.read_bytes()))
    for f in sorted((CORPORA / "trafilatura-eval" / "html").glob("*.html.gz")):
        pages.append(gzip.decompress(f.read_bytes()))
    return pages[:limit] if limit else pages


PREFIX = "127.78"


def host_address(k: int) -> str:
    return host_address_of(PREFIX, k)


# ---------------------------------------------------------------------- the server

REQUEST_LOG: list[str] = []
"""``--request-log``: the file the server appends each request's arrival to (``host path
time.monotonic()``, stamped when it parses the request: robots.txt, feeds and pages)."""

# per-host counters in shared memory: requests, page requests, in flight, most in flight
# (ints); last page arrival, shortest gap between page arrivals (doubles)


def page_server(pages: list[bytes], n_hosts: int, ints: Any, times: Any) -> Respond:
    """What the hosts answer: robots.txt, one feed per host, its pages."""
    index = {host_address(k).encode(): k for k in range(n_hosts)}

    def feed(k: int, base: str) -> bytes:
        items = []
        for j in range(k, len(pages), n_hosts):
            link = f"{base}/p/{j}.html"
            items.append(
                f"<item><title>Page {j}</title><link>{link}</link><guid>{link}</guid>"
                f"<pubDate>Mon, {1 + j % 28:02d} Jun 2026 {j % 24:02d}:00:00 GMT</pubDate></item>"
            )
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
            f"<title>Host {k}</title><link>{base}/</link><description>bench</description>"
            + "".join(items)
            + "</channel></rss>\n"
        ).encode()

    def respond(path: bytes, host: bytes, _headers: dict[bytes, bytes]) -> bytes:
        k = index.get(host.split(b":")[0], -1)
        if k >= 0:
            ints[4 * k] += 1
        now = time.monotonic()
        if REQUEST_LOG:  # every request, as it is parsed (its arrival)
            with open(REQUEST_LOG[0], "a") as f:
                f.write(f"{host.split(b':')[0].decode()} {path.decode()} {now:.6f}\n")
        if path == b"/robots.txt":
            return reply(b"text/plain", ROBOTS)
        if path == b"/feed.xml" and k >= 0:
            return reply(b"application/rss+xml", feed(k, "http://" + host.decode()))
        if path.startswith(b"/p/") and path.endswith(b".html") and k >= 0:
            last = times[2 * k]
            if last:
                gap = now - last
                if times[2 * k + 1] == 0 or gap < times[2 * k + 1]:
                    times[2 * k + 1] = gap
            times[2 * k] = now
            ints[4 * k + 1] += 1
            try:
                body = pages[int(path[3:-5])]
            except (ValueError, IndexError):
                return NOT_FOUND
            return reply(b"text/html; charset=utf-8", body)
        return NOT_FOUND

    return respond


# ---------------------------------------------------------------------- measures


def bare(pages: list[bytes]) -> float:
    import trafilatura

    from worker.pages.charset import decode_html

    started, cpu = time.perf_counter(), time.process_time()
    for body in pages:
        html, _ = decode_html(body, "text/html; charset=utf-8")
        trafilatura.extract(html)
    bare.cpu = time.process_time() - cpu  # type: ignore[attr-defined]
    return time.perf_counter() - started


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished (waited-for) children."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cli(env: dict[str, str], work: Path, *args: str, timeout: float = 3600) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        cwd=work,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def states(database_url: str) -> dict[str, int]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text("SELECT state, count(*) FROM article GROUP BY state")
            ).all()
    finally:
        engine.dispose()
    return {str(r[0]): int(r[1]) for r in rows}


def dump_outputs(database_url: str, out: Path) -> None:
    """What the run produced, independent of ids and of the order of processing, one
    JSON object: per article (by URL) its state, text hash, the URL of the article it
    copies, its claims (speaker, verb, kind, span, text); the duplicate groups and the
    claim clusters as sets of members. Two runs (two versions of the code) are compared
    with ``compare_outputs``."""
    import json

    import sqlalchemy

    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as conn:
            q = conn.execute
            arts = q(
                sqlalchemy.text(
                    "SELECT id, url, state, text_hash, duplicate_of_id, dup_group_id FROM article"
                )
            ).all()
            claims = q(
                sqlalchemy.text(
                    'SELECT article_id, speaker, verb, kind, start, "end", text, cluster_id '
                    "FROM claim"
                )
            ).all()
    finally:
        engine.dispose()
    url = {r[0]: r[1] for r in arts}
    per: dict[str, Any] = {
        r[1]: {"state": r[2], "hash": r[3], "copy_of": url.get(r[4]), "claims": []} for r in arts
    }
    groups: dict[int, list[str]] = {}
    for r in arts:
        if r[5] is not None:
            groups.setdefault(r[5], []).append(r[1])
    clusters: dict[int, list[str]] = {}
    for c in claims:
        key = f"{url[c[0]]}#{c[4]}-{c[5]}:{c[2]}"
        per[url[c[0]]]["claims"].append([c[1], c[2], c[3], c[4], c[5], c[6]])
        if c[7] is not None:
            clusters.setdefault(c[7], []).append(key)
    for a in per.values():
        a["claims"].sort()
    out.write_text(
        json.dumps(
            {
                "articles": per,
                "groups": sorted(sorted(g) for g in groups.values()),
                "clusters": sorted(sorted(c) for c in clusters.values()),
            }
        )
    )


def compare_outputs(a: Path, b: Path) -> int:
    """Print how two dumps differ; 0 when they are identical."""
    import json
    import re

    def unported(dump: Any) -> Any:  # each run's feed server has a port of its own
        return json.loads(re.sub(r"(//127\.78\.\d+\.\d+):\d+/", r"\1/", json.dumps(dump)))

    x, y = unported(json.loads(a.read_text())), unported(json.loads(b.read_text()))
    arts = set(x["articles"]) | set(y["articles"])
    differ = [u for u in sorted(arts) if x["articles"].get(u) != y["articles"].get(u)]
    n_claims = sum(len(v["claims"]) for v in x["articles"].values())
    print(f"articles {len(x['articles'])} / {len(y['articles'])}, claims {n_claims}: ", end="")
    print(f"{len(differ)} articles differ (state, text hash, copy of, claims)")
    for u in differ[:10]:
        print("  ", u, x["articles"].get(u), "!=", y["articles"].get(u))
    for name in ("groups", "clusters"):
        same = x[name] == y[name]
        print(f"{name}: {len(x[name])} / {len(y[name])}, {'identical' if same else 'DIFFER'}")
        if not same:
            xs, ys = {tuple(g) for g in x[name]}, {tuple(g) for g in y[name]}
            print(f"  only in the first {len(xs - ys)}, only in the second {len(ys - xs)}")
    return 0 if not differ and x["groups"] == y["groups"] and x["clusters"] == y["clusters"] else 1


# ---------------------------------------------------------------------- the send log


def _quantiles(values: list[float], qs: tuple[float, ...] = (0.0, 0.01, 0.05, 0.5)) -> str:
    if not values:
        return "-"
    v = sorted(values)
    return " / ".join(f"{v[min(len(v) - 1, int(q * len(v)))]:.3f}" for q in qs)


def _kind(path: str) -> str:
    if path == "/robots.txt":
        return "robots"
    if path.startswith("/p/"):
        return "page"
    return "feed" if path.startswith("/feed") else "other"


def read_send_log(
    send_path: Path, request_path: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """The client's requests (``R`` lines of ``bench/send_log``), each joined with its
    arrival at the server (``--request-log``): the *n*-th request of a host and path the
    client sent is the *n*-th the server parsed. Returns (requests in send order, slots
    (``S`` lines), counts: requests sent, arrivals, joined)."""
    sends: list[dict[str, Any]] = []
    slots: list[dict[str, Any]] = []
    for line in send_path.read_text().splitlines():
        f = line.split("\t")
        if f[0] == "R" and len(f) >= 12:
            sends.append(
                {
                    "pid": int(f[1]),
                    "tid": int(f[2]),
                    "host": f[3],
                    "path": f[4],
                    "grant": None if f[5] == "-" else float(f[5]),
                    "call": float(f[6]),
                    "send": float(f[7]),
                    "end": float(f[8]),
                    "gated": f[9] == "1",
                    "key": f[10],
                    "planned": float(f[11]),
                    "recorded": float(f[12]) if len(f) > 12 else 0.0,
                    "arrival": None,
                }
            )
        elif f[0] == "S" and len(f) >= 8:
            slots.append(
                {
                    "pid": int(f[1]),
                    "host": f[3],
                    "key": f[4],
                    "grant": float(f[5]),
                    "release": float(f[6]),
                    "requests": int(f[7]),
                }
            )
    arrivals: dict[tuple[str, str], list[float]] = {}
    n_arrivals = 0
    for line in request_path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            arrivals.setdefault((parts[0], parts[1]), []).append(float(parts[2]))
            n_arrivals += 1
    sends.sort(key=lambda r: r["send"])
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in sends:
        by.setdefault((r["host"], r["path"]), []).append(r)
    joined = 0
    for hp, rs in by.items():
        for r, t in zip(rs, sorted(arrivals.get(hp, [])), strict=False):
            r["arrival"] = t
            joined += 1
    return sends, slots, {"sent": len(sends), "arrivals": n_arrivals, "joined": joined}


def send_report(
    send_path: Path,
    request_path: Path,
    interval: float = 1.0,
    concurrency: int = 2,
    short: float = 0.99,
) -> list[str]:
    """Per host, the gaps between the starts of its requests as the client sent them
    (``t_send``: the bytes handed to the socket, after the send gate) against the gaps
    between their arrivals at its server; each server gap between two page requests
    under ``short`` with what the client did; two client starts of one host less than
    ``interval`` apart, and more than ``concurrency`` slots of one host at once (from
    the limiter's grants and releases)."""
    sends, slots, counts = read_send_log(send_path, request_path)
    out = [
        f"send log: {counts['sent']} requests sent by the client "
        f"({sum(1 for r in sends if r['grant'] is None)} outside a slot: "
        + ", ".join(
            f"{k} {sum(1 for r in sends if r['grant'] is None and _kind(r['path']) == k)}"
            for k in ("robots", "feed", "page", "other")
        )
        + f"), {counts['arrivals']} arrivals at the server, {counts['joined']} joined; "
        f"{len({r['pid'] for r in sends})} client processes"
    ]
    hosts: dict[str, list[dict[str, Any]]] = {}
    for r in sends:
        hosts.setdefault(r["host"], []).append(r)
    client_all: list[float] = []
    client_pages: list[float] = []
    server_pages: list[float] = []
    delays = [r["arrival"] - r["send"] for r in sends if r["arrival"] is not None]
    late = [r["send"] - r["grant"] for r in sends if r["grant"] is not None]
    gate_wait = [r["send"] - r["call"] for r in sends]
    lags = [r["send"] - r["recorded"] for r in sends if r["recorded"]]
    violations: list[str] = []
    after_robots: list[float] = []  # a request right after robots.txt (taken outside a slot)
    shorts: list[str] = []

    def lag(r: dict[str, Any]) -> str:
        """The request's send after the leave its Redis take recorded."""
        return f"{1000 * (r['send'] - r['recorded']):.1f} ms" if r["recorded"] else "-"

    # robots.txt and the host's request after it: client starts and server arrivals
    robots_next: list[float] = []
    robots_next_server: list[float] = []
    robots_in_slot = 0
    for host, rs in sorted(hosts.items()):
        for a, b in itertools.pairwise(rs):
            gap = b["send"] - a["send"]
            client_all.append(gap)
            if a["path"] == "/robots.txt":
                robots_next.append(gap)
                robots_in_slot += a["grant"] is not None
                if a["arrival"] is not None and b["arrival"] is not None:
                    robots_next_server.append(b["arrival"] - a["arrival"])
            if gap < interval and a["path"] == "/robots.txt" and a["grant"] is None:
                after_robots.append(gap)
            elif gap < interval:
                violations.append(
                    f"  {host}: {a['path']} ({_kind(a['path'])}, pid {a['pid']}, "
                    f"{'slot' if a['grant'] is not None else 'no slot'}) then {b['path']} "
                    f"({_kind(b['path'])}, pid {b['pid']}, "
                    f"{'slot' if b['grant'] is not None else 'no slot'}) started "
                    f"{gap:.3f} s apart; the first sent {lag(a)} after its take's record"
                )
        pages = [r for r in rs if _kind(r["path"]) == "page"]
        for a, b in itertools.pairwise(pages):
            client_pages.append(b["send"] - a["send"])
        arrived = sorted((r for r in pages if r["arrival"] is not None), key=lambda r: r["arrival"])
        for a, b in itertools.pairwise(arrived):
            sgap = b["arrival"] - a["arrival"]
            server_pages.append(sgap)
            if sgap < short:
                cgap = b["send"] - a["send"]
                ggap = (
                    f"{b['grant'] - a['grant']:.3f}"
                    if a["grant"] is not None and b["grant"] is not None
                    else "-"
                )
                da, db = a["arrival"] - a["send"], b["arrival"] - b["send"]
                verdict = (
                    "arrival jitter (the client's starts were the interval apart)"
                    if cgap >= interval
                    else "SHORT START at the client"
                )
                shorts.append(
                    f"  {host} {a['path']} -> {b['path']}: server {sgap:.3f} s, client starts "
                    f"{cgap:.3f} s, grants {ggap} s; arrived {1000 * da:.1f} ms and "
                    f"{1000 * db:.1f} ms after their sends (the first late by "
                    f"{1000 * (da - db):.1f} ms); pids {a['pid']}/{b['pid']}, gated "
                    f"{int(a['gated'])}{int(b['gated'])}, sent {lag(a)} / {lag(b)} after "
                    f"their takes' records: {verdict}"
                )
    # concurrency: slots of one host held at once (grant to release), as the limiter
    # allowed them
    most: dict[str, int] = {}
    events: dict[str, list[tuple[float, int]]] = {}
    for s in slots:
        events.setdefault(s["host"], []).extend([(s["grant"], 1), (s["release"], -1)])
    for host, ev in events.items():
        n = top = 0
        for _t, d in sorted(ev, key=lambda e: (e[0], e[1])):
            n += d
            top = max(top, n)
        most[host] = top
    over = {h: n for h, n in most.items() if n > concurrency}
    qs = "min / p1 / p5 / p50"
    ar = sorted(after_robots)
    out += [
        f"robots.txt followed by a request of its host ({len(robots_next)}, {robots_in_slot} "
        f"in a slot): gap min / p50 / max, client starts "
        f"{_quantiles(robots_next, (0.0, 0.5, 1.0))} s, server arrivals "
        f"{_quantiles(robots_next_server, (0.0, 0.5, 1.0))} s; client under {interval:g} s: "
        f"{sum(1 for g in robots_next if g < interval)}",
        f"client start gaps of one host, all requests ({len(client_all)}): {qs} "
        f"{_quantiles(client_all)} s; under {interval:g} s: "
        f"{sum(1 for g in client_all if g < interval)}",
        f"client start gaps of one host, pages ({len(client_pages)}): {qs} "
        f"{_quantiles(client_pages)} s; under {short:g} s: "
        f"{sum(1 for g in client_pages if g < short)}; under {interval:g} s: "
        f"{sum(1 for g in client_pages if g < interval)}",
        f"server arrival gaps of one host, pages ({len(server_pages)}): {qs} "
        f"{_quantiles(server_pages)} s; under {short:g} s: "
        f"{sum(1 for g in server_pages if g < short)}; under {interval:g} s: "
        f"{sum(1 for g in server_pages if g < interval)}",
        "arrival after send (the server's delay), ms: min / p50 / p99 / max "
        + (
            " / ".join(
                f"{1000 * sorted(delays)[min(len(delays) - 1, int(q * len(delays)))]:.1f}"
                for q in (0.0, 0.5, 0.99, 1.0)
            )
            if delays
            else "-"
        )
        + f"; negative (a join error): {sum(1 for d in delays if d < 0)}",
        "send after the slot's grant, ms: p50 / p99 / max "
        + (
            " / ".join(
                f"{1000 * sorted(late)[min(len(late) - 1, int(q * len(late)))]:.1f}"
                for q in (0.5, 0.99, 1.0)
            )
            if late
            else "-"
        )
        + f"; the send gate's wait (write called to bytes sent), ms: max "
        f"{1000 * max(gate_wait, default=0.0):.1f}, over 5 ms: "
        f"{sum(1 for w in gate_wait if w > 0.005)}",
        "send after the leave its Redis take recorded (Redis's clock), ms: p50 / p99 / "
        "max "
        + (
            " / ".join(
                f"{1000 * sorted(lags)[min(len(lags) - 1, int(q * len(lags)))]:.1f}"
                for q in (0.5, 0.99, 1.0)
            )
            if lags
            else "-"
        )
        + f"; over 5 ms: {sum(1 for x in lags if x > 0.005)} of {len(lags)}",
        f"slots of one host at once (limiter grants): most {max(most.values(), default=0)}"
        f" (over {concurrency}: {len(over)} hosts); slots granted {len(slots)}, with no "
        f"request {sum(1 for s in slots if s['requests'] == 0)}, with more than one "
        f"{sum(1 for s in slots if s['requests'] > 1)}",
        f"server page gaps under {short:g} s, with what the client did ({len(shorts)}):",
        *shorts,
        f"two starts of one host less than {interval:g} s apart at the client: "
        f"{len(after_robots) + len(violations)}; of which after a robots.txt request "
        f"made outside any slot {len(after_robots)} (gap min / p50 / max "
        + (
            " / ".join(f"{ar[min(len(ar) - 1, int(q * len(ar)))]:.3f}" for q in (0.0, 0.5, 1.0))
            if after_robots
            else "-"
        )
        + f" s); the others ({len(violations)}):",
        *violations[:40],
    ]
    if len(violations) > 40:
        out.append(f"  ... {len(violations) - 40} more")
    return out


# Wall-clock (UTC epoch) start and end of the timed run, for :func:`timeline`.
RUN_CLOCK: list[float] = []


def timeline(database_url: str) -> dict[str, float]:
    """Seconds from the first article's discovery to its first and last fetch and to the
    last article processed: how much of the wall time was politeness (the fetches'
    span) and how much the CPU steps' tail; and, from :data:`RUN_CLOCK`, the run's start
    (to the first discovery) and its stop (from the last article processed)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sqlalchemy.text(
                    "SELECT min(discovered_at), min(fetched_at), max(fetched_at), "
                    "max(processed_at), min(extracted_at) FROM article"
                )
            ).one()
    finally:
        engine.dispose()
    from datetime import UTC, datetime

    def at(x: Any) -> datetime:
        t = x if isinstance(x, datetime) else datetime.fromisoformat(str(x))
        return t if t.tzinfo else t.replace(tzinfo=UTC)  # SQLite: naive UTC

    if row[0] is None or row[2] is None or row[3] is None:
        return {}
    t0 = at(row[0])
    out = {
        "first_fetch": (at(row[1]) - t0).total_seconds(),
        "last_fetch": (at(row[2]) - t0).total_seconds(),
        "last_processed": (at(row[3]) - t0).total_seconds(),
    }
    if row[4] is not None:
        out["first_extract"] = (at(row[4]) - t0).total_seconds()
    if len(RUN_CLOCK) == 2:
        out["start"] = t0.timestamp() - RUN_CLOCK[0]
        out["stop"] = RUN_CLOCK[1] - at(row[3]).timestamp()
    return out


def _process_cpu(pid: int) -> tuple[int, float, str] | None:
    """(parent pid, user + system CPU seconds, command line) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks, cmd


def _watch_cpu(
    root: int,
    seen: dict[int, tuple[float, str]],
    stop: Any,
    samples: list[tuple[float, float]] | None = None,
    born: dict[int, tuple[float, int, str]] | None = None,
    every: float = 0.5,
) -> None:
    """Every ``every`` seconds, the CPU seconds of ``root`` and its descendants (the
    `run` process, the CPU processes' zygote and the workers it forks), the last reading
    of each kept in ``seen``. ``samples`` gets (``time.monotonic()``, the sum of every
    process's last reading: a process that ended counts with its last one) and ``born``
    each process's first sighting (time, parent, command line): the run's timeline."""
    tree = {root}
    while not stop.wait(every):
        now = time.monotonic()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            info = _process_cpu(int(name))
            if info is None:
                continue
            pid = int(name)
            if pid == root or info[0] in tree:
                tree.add(pid)
                seen[pid] = (info[1], info[2])
                if born is not None and pid not in born:
                    born[pid] = (now, info[0], info[2])
        if samples is not None:
            samples.append((now, sum(c for c, _ in seen.values())))


# The embedded run's timeline (monotonic clock): the command's start, and the CPU
# readings of :func:`_watch_cpu`, for :func:`report_timeline`.
TIMELINE: dict[str, Any] = {}


def report_timeline(spans: dict[str, float], cores: int) -> list[str]:
    """The run's timeline, from the command's start: when the zygote and each CPU
    worker process appeared (a worker is forked once the zygote is warm), the first
    discovery, fetch and extraction, the last fetch and article processed, the exit; the
    cores used second by second, and the core-seconds left idle before the last article
    was processed (what the wall holds beyond the CPU)."""
    t0 = TIMELINE.get("t0")
    samples: list[tuple[float, float]] = TIMELINE.get("samples", [])
    born: dict[int, tuple[float, int, str]] = TIMELINE.get("born", {})
    root = TIMELINE.get("root")
    if t0 is None or not samples:
        return []
    # the zygote is the `run` process's child; the workers it forks keep its command line
    zpids = {pid for pid, (_t, ppid, cmd) in born.items() if "--zygote" in cmd and ppid == root}
    zygotes = sorted(born[pid][0] - t0 for pid in zpids)
    workers = sorted(t - t0 for pid, (t, ppid, _c) in born.items() if ppid in zpids)
    lines = []
    start = spans.get("start")
    marks = [
        f"zygote {', '.join(f'{z:.1f}' for z in zygotes) or '-'}",
        f"CPU workers forked {', '.join(f'{w:.1f}' for w in workers) or '-'}",
    ]
    if start is not None:
        for name in ("first_fetch", "first_extract", "last_fetch", "last_processed"):
            if name in spans:
                marks.append(f"{name.replace('_', ' ')} {start + spans[name]:.1f}")
        marks.append(f"first discovery {start:.1f}")
    if "exit" in TIMELINE:
        marks.append(f"exit {TIMELINE['exit'] - t0:.1f}")
    lines.append("timeline (s from the command): " + "; ".join(marks))
    # cores used in each whole second (linear between readings)
    per: list[float] = []
    prev_t, prev_c = t0, 0.0
    second = 1
    for t, c in samples:
        while t - t0 >= second:
            at = t0 + second
            c_at = prev_c + (c - prev_c) * (at - prev_t) / max(1e-9, t - prev_t)
            per.append(c_at)
            second += 1
        prev_t, prev_c = t, c
    used = [b - a for a, b in zip([0.0, *per], per, strict=False)]
    width = 1 if len(used) <= 90 else 5  # a long run: the mean of each 5 s
    bins = [sum(used[i : i + width]) / len(used[i : i + width]) for i in range(0, len(used), width)]
    lines.append(
        f"cores used, {'second by second' if width == 1 else 'each 5 s'}: "
        + " ".join(f"{u:.1f}" for u in bins)
    )
    if start is not None and "last_processed" in spans:
        end = int(start + spans["last_processed"])
        idle = sum(max(0.0, cores - u) for u in used[:end])
        lines.append(
            f"core-seconds idle before the last article was processed ({end} s x {cores} "
            f"cores): {idle:.1f}; in the first 5 s {sum(max(0.0, cores - u) for u in used[:5]):.1f}"
        )
    return lines


def run_embedded(env: dict[str, str], work: Path, feeds: list[str]) -> tuple[float, str]:
    import threading

    r = cli(env, work, "init")
    assert r.returncode == 0, r.stderr
    r = cli(env, work, "feeds", "add", *feeds)
    assert r.returncode == 0, r.stderr
    started = time.perf_counter()
    cpu_before = _children_cpu()
    RUN_CLOCK[:] = [time.time()]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run", "--until-idle"],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: dict[int, tuple[float, str]] = {}
    samples: list[tuple[float, float]] = []
    born: dict[int, tuple[float, int, str]] = {}
    TIMELINE.update(t0=t0, samples=samples, born=born, root=proc.pid)
    stop = threading.Event()
    watcher = threading.Thread(
        target=_watch_cpu, args=(proc.pid, seen, stop, samples, born, 0.25), daemon=True
    )
    watcher.start()
    _, err = proc.communicate()
    TIMELINE["exit"] = time.monotonic()
    stop.set()
    watcher.join()
    wall = time.perf_counter() - started
    RUN_CLOCK.append(time.time())
    run_embedded.cpu = _children_cpu() - cpu_before  # type: ignore[attr-defined]
    # by process, as last read (a CPU process's last half second may be missing)
    # The `run` process's CPU as last read (its last half second may be missing); the
    # rest of the total is its CPU worker processes'.
    run_cpu = sum(c for pid, (c, _) in seen.items() if pid == proc.pid)
    run_embedded.split = {  # type: ignore[attr-defined]
        "run process": run_cpu,
        "CPU processes": run_embedded.cpu - run_cpu,  # type: ignore[attr-defined]
    }
    if proc.returncode != 0:
        log(f"run --until-idle exit {proc.returncode}: {err[-2000:]}")
    return wall, f"sqlite:///{work / 'data' / 'claimwire.db'}"


def _scan_trees(roots: list[int]) -> dict[int, tuple[int, float, str]]:
    """One reading of ``/proc``: every live process in the trees of ``roots`` (the
    roots and their descendants), as (parent pid, CPU seconds, command line)."""
    live: dict[int, tuple[int, float, str]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _process_cpu(int(name))
            if info is not None:
                live[int(name)] = info
    tree, found = set(roots), True
    while found:
        found = False
        for pid, (ppid, _c, _cmd) in live.items():
            if pid not in tree and ppid in tree:
                tree.add(pid)
                found = True
    return {pid: live[pid] for pid in tree if pid in live}


# The production run's CPU by process (run_production): the readings of each process
# at the start of the timed part and the last one before its end.
PRODUCTION_CPU: dict[str, float] = {}


PRODUCTION_COUNTS: dict[str, int] = {}


def _pg_transactions(db: str) -> dict[str, int]:
    """PostgreSQL's counts for the database: commits, rollbacks, sessions opened."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(db, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sqlalchemy.text(
                    "SELECT xact_commit, xact_rollback, sessions FROM pg_stat_database "
                    "WHERE datname = current_database()"
                )
            ).one()
    finally:
        engine.dispose()
    return {"pg commits": int(row[0]), "pg rollbacks": int(row[1]), "pg sessions": int(row[2])}


def _production_cpu_groups(
    before: dict[int, tuple[int, float, str]],
    last: dict[int, tuple[int, float, str]],
    named: dict[int, str],
) -> dict[str, float]:
    """CPU seconds spent in the timed part by each kind of process: ``named`` maps a
    root pid to its name; a prefork worker's children, PostgreSQL's backends and its
    background processes are counted apart."""
    out: dict[str, float] = {}
    for pid, (ppid, cpu, cmd) in last.items():
        spent = cpu - before.get(pid, (0, 0.0, ""))[1]
        if pid in named:
            name = named[pid]
        elif ppid in named and named[ppid] == "postgresql":
            # "postgres: user db 127.0.0.1(port) idle": a client's backend
            name = "postgresql backends" if "127.0.0.1(" in cmd else "postgresql other"
        elif ppid in named:
            name = f"{named[ppid]} children"
        else:
            name = "other"
        out[name] = out.get(name, 0.0) + spent
    return out


def run_production(
    env: dict[str, str],
    work: Path,
    feeds: list[str],
    expected: int,
    timeout: float,
    cpu_concurrency: int = 2,
) -> tuple[float, str]:
    from worker.testing.procs import PostgresServer, RedisServer, celery_beat, celery_worker

    pg = PostgresServer(work / "pg").init().start()
    rd = RedisServer(work / "redis").start()
    procs = []
    try:
        db = pg.create_database("frontier")
        env = {**env, "CLAIMWIRE_DATABASE_URL": db, "CLAIMWIRE_BROKER_URL": rd.url()}
        r = cli(env, work, "init")
        assert r.returncode == 0, r.stderr
        r = cli(env, work, "feeds", "add", *feeds)
        assert r.returncode == 0, r.stderr
        import sqlalchemy

        engine = sqlalchemy.create_engine(db)
        with engine.begin() as conn:  # not due until `feeds poll --all`
            conn.execute(sqlalchemy.text("UPDATE feed SET next_poll_at = now() + interval '1 day'"))
        engine.dispose()
        # the worker processes of docker-compose.yml, and its scheduler
        procs = [
            celery_worker("io", env, work, queues="io", concurrency=32, loglevel="WARNING"),
            celery_worker(
                "cpu",
                env,
                work,
                queues="cpu",
                pool="prefork",
                concurrency=cpu_concurrency,
                loglevel="WARNING",
            ),
            celery_beat("beat", env, work),
        ]
        for p in procs:
            p.start()
        time.sleep(15)  # the workers start (the cpu worker's parent loads the claims model)
        # CPU by process over the timed part: read every 0.5 s (a PostgreSQL backend that
        # ends counts with its last reading), and the workers' start before it
        import threading

        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        assert rd.proc is not None
        named = {procs[0].pid: "io worker", procs[1].pid: "cpu worker", procs[2].pid: "beat"}
        named |= {postmaster: "postgresql", rd.proc.pid: "redis"}
        before = _scan_trees(list(named))
        PRODUCTION_CPU.clear()
        for k, v in _production_cpu_groups({}, before, named).items():
            PRODUCTION_CPU[f"start: {k}"] = v
        last = dict(before)
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.5):
                last.update(_scan_trees(list(named)))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        rd.client().config_resetstat()  # Redis's commands of the timed part
        xacts = _pg_transactions(db)
        started = time.perf_counter()
        cli_cpu = _children_cpu()
        r = cli(env, work, "feeds", "poll", "--all")
        assert r.returncode == 0, r.stderr
        cli_cpu = _children_cpu() - cli_cpu
        deadline = time.monotonic() + timeout
        # one connection for the checks (a new one each 0.25 s was a PostgreSQL backend
        # started and a client connected 4 times a second, on the run's cores)
        poller = sqlalchemy.create_engine(db, poolclass=sqlalchemy.pool.StaticPool)
        count = sqlalchemy.text("SELECT state, count(*) FROM article GROUP BY state")
        with poller.connect() as conn:
            while time.monotonic() < deadline:
                s = {str(k): int(v) for k, v in conn.execute(count).all()}
                conn.rollback()  # a fresh snapshot at each check
                if sum(s.values()) >= expected and not any(s.get(x) for x in PENDING):
                    break
                time.sleep(0.25)
        poller.dispose()
        wall = time.perf_counter() - started
        stop.set()
        watcher.join()
        last.update(_scan_trees(list(named)))
        PRODUCTION_CPU.update(_production_cpu_groups(before, last, named))
        PRODUCTION_CPU["feeds poll --all"] = cli_cpu
        time.sleep(1.0)  # PostgreSQL's backends report their counts when idle
        PRODUCTION_COUNTS.clear()
        PRODUCTION_COUNTS.update(
            {k: v - xacts.get(k, 0) for k, v in _pg_transactions(db).items()},
        )
        for name, stats in rd.client().info("commandstats").items():
            PRODUCTION_COUNTS[f"redis {name.removeprefix('cmdstat_')}"] = int(stats["calls"])
        final = states(db)
        log(f"production states: {final}")
        return wall, db
    finally:
        for p in procs:
            p.stop(timeout=10)
        rd.stop()
        # the database is read once more by the caller: keep the cluster until then
        run_production.pg = pg  # type: ignore[attr-defined]


def run_cost(pending: int, hosts: int) -> None:
    import tracemalloc

    import redis

    from worker.core.settings import Settings
    from worker.network.politeness import LocalHostLimiter, RedisHostLimiter
    from worker.testing.procs import RedisServer

    work = Path(tempfile.mkdtemp(prefix="cw-frontier-cost-"))
    rd = RedisServer(work / "redis").start()
    try:
        client = redis.Redis.from_url(rd.url())
        settings = Settings(host_min_interval=1.0, host_max_concurrency=2)
        limiter = RedisHostLimiter(client, settings, max_ahead=10**9)
        base = int(client.info("memory")["used_memory"])
        step = max(1, pending // 10)
        print("| pending turns | Redis memory (bytes per turn) | µs per reservation (this tenth) |")
        print("|---|---|---|")
        done = 0
        while done < pending:
            items = [(f"h{(done + i) % hosts}.example", f"article:{done + i}") for i in range(step)]
            t = time.perf_counter()
            for chunk in range(0, len(items), 1000):
                limiter.reserve_many(items[chunk : chunk + 1000])
            per = (time.perf_counter() - t) / len(items) * 1e6
            done += step
            mem = int(client.info("memory")["used_memory"]) - base
            print(f"| {done:,} | {mem / done:.0f} | {per:.1f} |")
        # the turns of the first host that are due: taken at their time (here: the
        # first of every host, which is due now)
        t = time.perf_counter()
        took = 0
        for h in range(min(hosts, 2000)):
            with limiter.slot(f"h{h}.example", f"article:{h}"):
                took += 1
        per_take = (time.perf_counter() - t) / took * 1e6
        print(f"\ntaking a due turn (slot at its turn, {took} hosts): {per_take:.1f} µs each")
        local = LocalHostLimiter(settings, max_ahead=10**9)
        tracemalloc.start()
        t = time.perf_counter()
        for i in range(pending):
            local.reserve(f"h{i % hosts}.example", f"article:{i}")
        per_local = (time.perf_counter() - t) / pending * 1e6
        size, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"in-process timeline (embedded): {size / pending:.0f} bytes per turn, "
            f"{per_local:.1f} µs per reservation over {pending:,} turns on {hosts:,} hosts"
        )
    finally:
        rd.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mode", choices=("embedded", "production", "cost"), default="embedded")
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--pages", type=int, default=0, help="0: every page of the corpora")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--pending", type=int, default=100_000, help="--mode cost")
    ap.add_argument("--cost-hosts", type=int, default=10_000, help="--mode cost")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare extraction")
    ap.add_argument(
        "--bare-after", action="store_true", help="measure the bare extraction after too"
    )
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument(
        "--cpu-concurrency",
        type=int,
        default=2,
        help="--mode production: processes of the cpu worker (docker-compose.yml: 2)",
    )
    ap.add_argument("--dump", type=Path, help="write what the run produced here (JSON)")
    ap.add_argument(
        "--request-log",
        help="append each request's host, path and arrival (CLOCK_MONOTONIC) here",
    )
    ap.add_argument(
        "--send-log",
        type=Path,
        help="log every request the client sends here (bench/send_log, on the children's "
        "PYTHONPATH), joined at the end with the server's arrivals (--request-log, else "
        "SEND_LOG.server): client start gaps against server arrival gaps per host; both "
        "files are emptied first",
    )
    ap.add_argument(
        "--send-report",
        type=Path,
        nargs=2,
        metavar=("SEND_LOG", "REQUEST_LOG"),
        help="only print the report of a --send-log run's two files",
    )
    ap.add_argument(
        "--compare", type=Path, nargs=2, metavar="DUMP", help="compare two --dump files, only"
    )
    args = ap.parse_args(argv)
    if args.compare:
        return compare_outputs(*args.compare)
    if args.send_report:
        for line in send_report(*args.send_report):
            print(line)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.mode == "cost":
        log(f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        run_cost(args.pending, args.cost_hosts)
        log(f"load {os.getloadavg()[0]:.1f}")
        return 0

    if args.send_log and not args.request_log:
        args.request_log = f"{args.send_log}.server"
    if args.send_log:
        for f in (args.send_log, Path(args.request_log)):
            f.write_text("")
    if args.request_log:
        REQUEST_LOG[:] = [args.request_log]  # before the server's fork
    pages = load_pages(args.pages or None)
    log(f"{len(pages)} pages over {args.hosts} hosts; load {os.getloadavg()[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="cw-frontier-"))
    ctx = mp.get_context("fork")
    ints = ctx.Array("q", 4 * args.hosts, lock=False)
    times = ctx.Array("d", 2 * args.hosts, lock=False)
    sites = start_sites(
        PREFIX, args.hosts, lambda: page_server(pages, args.hosts, ints, times), timeout=30
    )
    feeds = [sites.url(k, "/feed.xml") for k in range(args.hosts)]
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMWIRE_")}
    env = {
        **base,
        "CLAIMWIRE_DATA_DIR": str(work / "data"),
        "CLAIMWIRE_ALLOW_PRIVATE_NETWORKS": "true",
        "CLAIMWIRE_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    for item in args.set:
        name, _, value = item.partition("=")
        env[f"CLAIMWIRE_{name.upper()}"] = value
    if args.send_log:  # the client's requests, in every process claimwire starts
        env["CW_SEND_LOG"] = str(args.send_log.resolve())
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "bench" / "send_log"), *filter(None, [env.get("PYTHONPATH")])]
        )
    bare_before = bare_after = None
    try:
        if not args.no_bare:
            bare_before = bare(pages)
            log(f"bare trafilatura.extract, one process: {bare_before:.1f} s")
        load_before = os.getloadavg()
        if args.mode == "embedded":
            wall, db = run_embedded(env, work, feeds)
        else:
            wall, db = run_production(
                env, work, feeds, len(pages), args.timeout, args.cpu_concurrency
            )
        load_after = os.getloadavg()
        final = states(db)
        spans = timeline(db)
        if args.dump:
            dump_outputs(db, args.dump)
        if not args.no_bare and args.bare_after:
            bare_after = bare(pages)
            log(f"bare trafilatura.extract, one process: {bare_after:.1f} s")
    finally:
        sites.stop()
        pg = getattr(run_production, "pg", None)
        if pg is not None:
            pg.destroy()
    gaps = [times[2 * k + 1] for k in range(args.hosts) if times[2 * k + 1] > 0]
    page_hits = sum(ints[4 * k + 1] for k in range(args.hosts))
    print()
    print(
        f"mode {args.mode}: {len(pages)} pages, {args.hosts} hosts; wall {wall:.1f} s; "
        f"load {load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"articles by state: {final}")
    if spans:
        print(
            "from the first discovery: first fetch {first_fetch:.1f} s, last fetch "
            "{last_fetch:.1f} s, last article processed {last_processed:.1f} s".format(**spans)
        )
    if "start" in spans:
        print(
            "the run's start (to the first discovery) {start:.1f} s, its stop (after the "
            "last article processed) {stop:.1f} s".format(**spans)
        )
    print(
        f"page requests {page_hits}; shortest gap between two page requests of one host "
        f"{min(gaps) if gaps else float('nan'):.3f} s"
    )
    if bare_before is not None:
        ref = (bare_before + bare_after) / 2 if bare_after is not None else bare_before
        after = f", {bare_after:.1f} s after" if bare_after is not None else ""
        print(
            f"bare extraction {bare_before:.1f} s before{after}; "
            f"end to end / bare = {wall / ref:.2f}x"
        )
    run_cpu = getattr(run_embedded, "cpu", None)
    if args.mode == "embedded" and run_cpu is not None:
        n = max(1, len(pages))
        line = f"CPU of run --until-idle (all its processes) {run_cpu:.1f} s"
        line += f", {1000 * run_cpu / n:.0f} ms per page"
        if bare_before is not None:
            bare_cpu = getattr(bare, "cpu", 0.0) or float("nan")
            line += f"; bare extraction CPU {1000 * bare_cpu / n:.0f} ms per page"
            line += f" ({run_cpu / bare_cpu:.2f}x)"
        print(line)
        split = getattr(run_embedded, "split", {})
        if split:
            parts = [f"{k} {v:.1f} s ({1000 * v / n:.0f} ms a page)" for k, v in split.items()]
            print("of which (read every 0.5 s): " + ", ".join(parts))
    if args.mode == "production" and PRODUCTION_CPU:
        n = max(1, len(pages))
        timed = {k: v for k, v in PRODUCTION_CPU.items() if not k.startswith("start: ")}
        total = sum(timed.values())
        line = f"CPU of the production processes, timed part {total:.1f} s"
        line += f", {1000 * total / n:.0f} ms per page"
        if bare_before is not None:
            bare_cpu = getattr(bare, "cpu", 0.0) or float("nan")
            line += f" ({total / bare_cpu:.2f}x bare extraction's)"
        print(line)
        print(
            "of which (read every 0.5 s): "
            + ", ".join(f"{k} {v:.1f} s ({1000 * v / n:.1f} ms a page)" for k, v in timed.items())
        )
        print(
            "before it (the workers' start, 15 s): "
            + ", ".join(
                f"{k[7:]} {v:.1f} s" for k, v in PRODUCTION_CPU.items() if k.startswith("start: ")
            )
        )
    if args.mode == "production" and PRODUCTION_COUNTS:
        n = max(1, len(pages))
        top = sorted(PRODUCTION_COUNTS.items(), key=lambda kv: -kv[1])
        print(
            "counts of the timed part, a page: "
            + ", ".join(f"{k} {v / n:.2f}" for k, v in top if v >= n / 20)
        )
    if args.mode == "embedded":
        for line in report_timeline(spans, os.cpu_count() or 1):
            print(line)
    if args.hosts == 1:
        print(f"one host: {wall / max(1, len(pages)):.3f} s per page (interval 1 s)")
    if args.send_log:
        for line in send_report(args.send_log, Path(args.request_log)):
            print(line)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
