"""A poll message's 304s written together: one fenced ``UPDATE`` a feed against
``write_polls``'s one statement per set of changed columns (issue 16, branch
``pollcost``), interleaved in one process on PostgreSQL.

Usage, from the repository root, against a database of its own (it adds feeds there):

    createdb -h 127.0.0.1 -U postgres pollwrites
    CLAIMWIRE_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/pollwrites \\
        .venv/bin/python -m bench.poll_writes [--per-message 8] [--messages 400] [--rounds 3]

Each round leases ``--per-message`` × ``--messages`` feeds and writes their 304s in
messages of ``--per-message``, in the transaction a poll message uses (``unit_of_work``):
once with one fenced ``UPDATE`` a feed then one ``INSERT`` of the history rows (the
code before), once with :func:`worker.feeds.polling.write_polls`; the two alternate.
``--what history``: ``write_polls`` with its history rows in one statement against one
``INSERT`` a row (psycopg's ``executemany``, before); ``--what read``: a message's read
of its feeds, ``read_feeds`` (outside a transaction) against ``load_feeds`` in a unit of
work (before; run it with ``CLAIMWIRE_DB_POOL_SIZE=1``: one connection, one backend);
``--what sightings``: a changed feed's ``record_entries`` (``--entries`` entries, one of
them new, as in ``bench.poll_cycle``), its sightings in one statement against one
``INSERT`` a row (psycopg's ``executemany``, before), one feed a transaction.
The order alternates from round to round. Printed per feed: the client's CPU (this
process, ``time.process_time``) and the PostgreSQL backend's (its ``/proc/<pid>/stat``,
in 10 ms ticks summed over the messages: read it as an average). Every write must find
its lease.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta

from sqlalchemy import func, insert, select, text, update

from schemas.models import Feed
from schemas.types import utcnow
from worker.core.db import init_db, unit_of_work
from worker.feeds import polling
from worker.feeds.polling import PollResult, PollWrite

FEED = Feed.__table__  # type: ignore[attr-defined]
NEW_FEED = {
    "tags": [],
    "state": "active",
    "created_at": utcnow(),
    "next_poll_at": utcnow(),
    "poll_interval": 3600,
    "consecutive_failures": 0,
    "transient_failures": 0,
    "permanent_failures": 0,
    "polls_total": 0,
    "entries_new_total": 0,
}


def _ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _writes(ids: list[int], lease: object, now: object) -> list[PollWrite]:
    later = now + timedelta(hours=1)  # type: ignore[operator]
    return [
        PollWrite(
            feed_id=f,
            update={
                "polls_total": 5,
                "last_attempt_at": now,
                "last_success_at": now,
                "next_poll_at": later,
                "poll_interval": 4500,
                "lease_until": None,
                "fenced_id": f,
                "fenced_lease": lease,
            },
            poll=dict(
                feed_id=f,
                started_at=now,
                duration_ms=3,
                outcome="not_modified",
                http_status=304,
                entries_seen=0,
                entries_new=0,
                entries_rejected=0,
                rejected=None,
                error=None,
            ),
            trim=False,
            keep=10,
            result=PollResult(outcome="not_modified"),
        )
        for f in ids
    ]


def _history_one_a_row(session: object, rows: list[dict[str, object]]) -> None:
    """The history rows as before ``_insert_history``: psycopg's ``executemany``, one
    ``INSERT`` a row."""
    session.execute(polling._INSERT_POLL, rows)  # type: ignore[attr-defined]


def run_history(ids: list[int], per_message: int, unnest: bool) -> tuple[float, float]:
    """``write_polls`` with the history rows in one statement (``unnest``) or one a
    row (executemany, before); client and backend CPU milliseconds per feed."""
    real = polling._insert_history
    if not unnest:
        polling._insert_history = _history_one_a_row  # type: ignore[assignment]
    try:
        return run(ids, per_message, True)
    finally:
        polling._insert_history = real  # type: ignore[assignment]


def run_read(ids: list[int], per_message: int, outside: bool) -> tuple[float, float]:
    """A message's read of its feeds: ``read_feeds`` (``outside`` a transaction) or
    ``load_feeds`` in a unit of work (before); client and backend CPU milliseconds per
    feed. Run with ``CLAIMWIRE_DB_POOL_SIZE=1``: one connection, one backend."""
    with unit_of_work() as s:
        pid = int(s.execute(text("SELECT pg_backend_pid()")).scalar_one())
    started, ticks = time.process_time(), _ticks(pid)
    for i in range(0, len(ids), per_message):
        chunk = ids[i : i + per_message]
        if outside:
            got = polling.read_feeds(chunk)
        else:
            with unit_of_work() as s:
                got = polling.load_feeds(s, chunk)
        assert len(got) == len(chunk)
    client = time.process_time() - started
    return client / len(ids) * 1000, (_ticks(pid) - ticks) * 10 / len(ids)


_PASSES = [0]
_RUN = f"{time.time_ns():x}"  # this run's links: new in its first pass


def run_sightings(ids: list[int], entries: int, together: bool) -> tuple[float, float]:
    """Each feed's ``record_entries`` in a unit of work of its own, with ``entries``
    entries of which the last is new (the others were listed by the pass before): its
    sightings in one statement (``together``) or one ``INSERT`` a row (before); client
    and backend CPU milliseconds per feed. Run with ``CLAIMWIRE_DB_POOL_SIZE=1``."""
    from sqlmodel import Session

    from worker.feeds.parsing import Entry, ParsedFeed

    _PASSES[0] += 1
    first = _PASSES[0]
    real = polling.is_postgres
    if not together:
        polling.is_postgres = lambda _s: False  # type: ignore[assignment]
    try:
        with unit_of_work() as s:
            pid = int(s.execute(text("SELECT pg_backend_pid()")).scalar_one())
            feeds = {f.id: f for f in s.execute(select(Feed).where(FEED.c.id.in_(ids))).scalars()}
            for f in feeds.values():
                s.expunge(f)
        client, ticks = 0.0, _ticks(pid)
        now = utcnow()
        for feed_id in ids:
            parsed = ParsedFeed(
                entries=[
                    Entry(link=f"http://poll-writes-{feed_id}.example/{_RUN}/{first + k}")
                    for k in range(entries)
                ]
            )
            started = time.process_time()
            with unit_of_work() as s:
                assert isinstance(s, Session)
                made = polling.record_entries(s, feeds[feed_id], parsed, now)
            client += time.process_time() - started
            assert len(made) == (entries if first == 1 else 1), len(made)
    finally:
        polling.is_postgres = real  # type: ignore[assignment]
    return client / len(ids) * 1000, (_ticks(pid) - ticks) * 10 / len(ids)


def run(ids: list[int], per_message: int, together: bool) -> tuple[float, float]:
    """Client and backend CPU milliseconds per feed for one pass over ``ids``."""
    lease = (utcnow() + timedelta(seconds=900)).replace(microsecond=0)
    with unit_of_work() as s:
        s.execute(update(FEED).where(FEED.c.id.in_(ids)).values(lease_until=lease))
    now = utcnow()
    client = 0.0
    backend = 0
    for i in range(0, len(ids), per_message):
        writes = _writes(ids[i : i + per_message], lease, now)
        with unit_of_work() as s:
            pid = int(s.execute(text("SELECT pg_backend_pid()")).scalar_one())
            started, ticks = time.process_time(), _ticks(pid)
            if together:
                done = polling.write_polls(s, writes)
            else:
                done = [w for w in writes if polling._write_feed(s, w)]
                s.execute(polling._INSERT_POLL, [w.poll for w in done])
            s.commit()
            backend += _ticks(pid) - ticks
            client += time.process_time() - started
        assert len(done) == len(writes), "a lease was not found"
    return client / len(ids) * 1000, backend * 10 / len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-message", type=int, default=8)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--what",
        choices=["update", "history", "read", "sightings"],
        default="update",
        help="update: one fenced UPDATE a feed against write_polls; history: write_polls "
        "with its history rows one INSERT a row (before) against one statement; read: a "
        "message's feeds read in a unit of work (before) against read_feeds; sightings: "
        "a changed feed's sightings one INSERT a row (before) against one statement",
    )
    parser.add_argument("--entries", type=int, default=6, help="--what sightings: a feed's")
    args = parser.parse_args()
    init_db()
    wanted = args.per_message * args.messages
    with unit_of_work() as s:
        have = int(s.execute(select(func.count()).select_from(FEED)).scalar_one())
        if have < wanted:
            s.execute(
                insert(FEED),
                [{**NEW_FEED, "url": f"http://poll-writes-{have + i}.example/rss.xml"}
                 for i in range(wanted - have)],
            )  # fmt: skip
    with unit_of_work() as s:
        ids = list(s.execute(select(FEED.c.id).order_by(FEED.c.id).limit(wanted)).scalars())
    with open("/proc/loadavg") as f:
        print(f"load average {f.read().split()[0]}; {wanted} feeds, {args.per_message} a message")
    variants = {
        "update": (run, ("one UPDATE a feed", "write_polls")),
        "history": (run_history, ("history a row", "history together")),
        "read": (run_read, ("read in a transaction", "read_feeds")),
        "sightings": (run_sightings, ("sightings a row", "sightings together")),
    }
    measure, names = variants[args.what]
    if args.what == "sightings":  # a warm-up pass: every entry new, not counted
        run_sightings(ids, args.entries, True)
        args.per_message = args.entries
    for n in range(args.rounds):
        order = [(names[0], False), (names[1], True)]
        for name, new in order if n % 2 == 0 else reversed(order):
            client, backend = measure(ids, args.per_message, new)
            print(
                f"{name:22s} client {client:.3f} ms a feed, "
                f"PostgreSQL backend {backend:.3f} ms a feed; "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
