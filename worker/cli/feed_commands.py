"""`claimwire feeds ...`: add, import, export, list, show, set, discover, remove, poll."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from worker.cli.console import (
    Col,
    UserError,
    _db,
    app,
    err,
    fit_table,
    human_duration,
    out,
)
from worker.core.settings import mask_secrets

feeds_app = typer.Typer(help="Manage the feeds claimwire polls.", no_args_is_help=True)
app.add_typer(feeds_app, name="feeds")


# ----------------------------------------------------------------------------- feeds


@feeds_app.command("add")
def feeds_add(urls: list[str] = typer.Argument(..., help="Feed URLs.")) -> None:
    """Add feeds (adding one that exists is a no-op)."""
    from worker.core.db import unit_of_work
    from worker.feeds.subscriptions import add_feeds
    from worker.network.urls import InvalidURL

    settings = _db()
    try:
        with unit_of_work() as s:
            result = add_feeds(s, [(u, None, []) for u in urls], settings)
    except InvalidURL as exc:
        others = "; none of the others was added either" if len(urls) > 1 else ""
        raise UserError(f"{exc}{others} (fix or leave out that URL)") from exc
    for u in result.added:
        out.print(f"added {u}")
    for u in result.existing:
        out.print(f"already present: {u}")


@feeds_app.command("import")
def feeds_import(path: Path = typer.Argument(..., help="OPML file, or - for stdin.")) -> None:
    """Import feeds from an OPML subscription list (folders become tags)."""
    from worker.core.db import unit_of_work
    from worker.feeds.opml import OPMLError, read_opml
    from worker.feeds.subscriptions import add_feeds
    from worker.network.urls import InvalidURL

    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        entries = read_opml(data)
    except OPMLError as exc:
        raise UserError(f"{path}: {exc}") from exc
    settings = _db()
    good, bad = [], []
    for url, title, tags in entries:
        try:
            from worker.network.urls import canonicalize

            canonicalize(url)
            good.append((url, title, tags))
        except InvalidURL as exc:
            bad.append(f"{url}: {exc}")
    with unit_of_work() as s:
        result = add_feeds(s, good, settings)
    out.print(
        f"imported {len(result.added)} new feeds, {len(result.existing)} already present,"
        f" {len(bad)} invalid"
    )
    for line in bad[:20]:
        err.print(f"skipped {line}")


@feeds_app.command("export")
def feeds_export(
    out_file: Path | None = typer.Option(None, "--out", help="File (default stdout)."),
) -> None:
    """Export feeds as OPML 2.0."""
    from worker.core.db import unit_of_work
    from worker.feeds.opml import write_opml
    from worker.feeds.subscriptions import all_feeds

    _db()
    with unit_of_work() as s:
        doc = write_opml(all_feeds(s))
    if out_file:
        out_file.write_text(doc, encoding="utf-8")
    else:
        sys.stdout.write(doc)


@feeds_app.command("list")
def feeds_list(as_json: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
    """List feeds with their health."""
    from worker.core.db import reading
    from worker.feeds.rows import feed_row, listed_feeds, next_poll

    _db(reading=True)
    with reading() as conn:
        rows = [feed_row(f) for f in listed_feeds(conn)]
    if as_json:
        for r in rows:
            sys.stdout.write(mask_secrets(json.dumps(r, ensure_ascii=False)) + "\n")
        return

    def when(v: object) -> str:  # "MM-DD HH:MM" (UTC): enough to tell health apart
        return str(v)[5:16].replace("T", " ") if v else "-"

    cols = [
        Col("id", justify="right"),
        Col("state"),
        Col("url", flex=True, cut="url", min_width=24),
        Col("last attempt", drop=3),
        Col("last success", drop=4),
        Col("last new entry", drop=6),
        Col("fails", justify="right", drop=2),
        Col("HTTP", drop=7),
        Col("new/day", justify="right", drop=5),
        Col("interval", drop=1),
        Col("next poll", drop=2),
        Col("last error", flex=True, max_width=60),
    ]
    table = fit_table(
        out,
        cols,
        [
            [
                str(r["id"]),
                str(r["state"]),
                str(r["url"]),
                when(r["last_attempt_at"]),
                when(r["last_success_at"]),
                when(r["last_new_entry_at"]),
                str(r["consecutive_failures"]),
                str(r["last_status"] or "-"),
                str(r["new_entries_per_day"]),
                human_duration(_seconds(r["interval_override"] or r["poll_interval"]))
                + ("*" if r["interval_override"] else ""),
                next_poll(str(r["next_poll_at"] or "")),
                str(r["last_error"] or ""),
            ]
            for r in rows
        ],
    )
    out.print(table)
    if any(r["interval_override"] for r in rows):
        out.print("* interval set by hand (`claimwire feeds set ID --interval auto` to undo)")


def _seconds(value: object) -> int:
    return int(str(value)) if str(value).isdigit() else 0


@feeds_app.command("set")
def feeds_set(
    ref: str = typer.Argument(..., help="Feed id or URL."),
    interval: str | None = typer.Option(
        None, "--interval", help="Fixed poll interval (900, 15m, 2h, 1d) or 'auto' (adaptive)."
    ),
    pause: bool = typer.Option(False, "--pause", help="Stop polling the feed."),
    resume: bool = typer.Option(False, "--resume", help="Poll a paused feed again."),
) -> None:
    """Change one feed: a manual poll interval, or pause/resume it."""
    from worker.core.db import unit_of_work
    from worker.feeds.subscriptions import (
        FeedNotFound,
        find_feed,
        parse_interval,
        set_interval,
        set_paused,
    )

    if interval is None and not pause and not resume:
        raise UserError("nothing to change: give --interval, --pause or --resume")
    if pause and resume:
        raise UserError("--pause and --resume contradict each other")
    try:
        seconds = parse_interval(interval) if interval is not None else None
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    _db()
    try:
        with unit_of_work() as s:
            feed = find_feed(s, ref)
            if interval is not None:
                set_interval(s, feed, seconds)
            if pause or resume:
                set_paused(s, feed, pause)
            url, state = feed.url, feed.state
    except FeedNotFound as exc:
        raise UserError(str(exc)) from exc
    if interval is not None:
        shown = "adaptive" if seconds is None else f"every {human_duration(seconds)}"
        out.print(f"{url}: polled {shown}")
    if pause or resume:
        out.print(f"{url}: {state}")


@feeds_app.command("discover")
def feeds_discover(
    site_url: str = typer.Argument(..., help="A site's address (or a feed's)."),
    add: bool = typer.Option(False, "--add", help="Add the feeds found."),
) -> None:
    """Find a site's feeds (<link rel=alternate>, feed links, common paths)."""
    from worker.core.db import unit_of_work
    from worker.feeds.subscriptions import add_feeds, discover_feeds
    from worker.network.http import FetchError
    from worker.network.politeness import HostBusy
    from worker.network.urls import InvalidURL
    from worker.pipeline import resources

    settings = _db()
    try:
        with unit_of_work() as s:
            found = discover_feeds(
                s,
                resources.http_client(settings),
                resources.host_limiter(settings),
                site_url,
                settings,
            )
            result = add_feeds(s, [(f.url, f.title, []) for f in found], settings) if add else None
    except InvalidURL as exc:
        raise UserError(str(exc)) from exc
    except FetchError as exc:
        raise UserError(f"cannot fetch {site_url}: {exc.reason}") from exc
    except HostBusy as exc:
        raise UserError(f"cannot fetch {site_url} now: {exc}") from exc
    if not found:
        err.print(f"no feed found at {site_url}")
        raise typer.Exit(1)
    for f in found:
        out.print(f"{f.url}  ({f.title or 'untitled'}, {f.entries} entries, by {f.found_by})")
    if result is not None:
        for u in result.added:
            out.print(f"added {u}")
        for u in result.existing:
            out.print(f"already present: {u}")


@feeds_app.command("show")
def feeds_show(
    ref: str = typer.Argument(..., help="Feed id or URL."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
    polls: int = typer.Option(10, "--polls", min=0, help="How many recent polls to show."),
) -> None:
    """One feed's health and its recent polls."""
    from sqlmodel import col, select

    from schemas.models import FeedPoll
    from worker.core.db import unit_of_work
    from worker.feeds.rows import next_poll
    from worker.feeds.subscriptions import FeedNotFound, feed_row, find_feed

    _db()
    try:
        with unit_of_work() as s:
            feed = find_feed(s, ref)
            row = feed_row(feed)
            history = [
                {
                    "at": p.started_at.isoformat(),
                    "outcome": p.outcome,
                    "http_status": p.http_status,
                    "duration_ms": p.duration_ms,
                    "entries_seen": p.entries_seen,
                    "entries_new": p.entries_new,
                    "entries_rejected": p.entries_rejected,
                    "rejected": p.rejected,
                    "error": p.error,
                }
                for p in s.exec(
                    select(FeedPoll)
                    .where(col(FeedPoll.feed_id) == feed.id)
                    .order_by(col(FeedPoll.started_at).desc(), col(FeedPoll.id).desc())
                    .limit(polls)
                ).all()
            ]
    except FeedNotFound as exc:
        raise UserError(str(exc)) from exc
    if as_json:
        shown = json.dumps({**row, "polls": history}, ensure_ascii=False)
        sys.stdout.write(mask_secrets(shown) + "\n")
        return
    facts = Table.grid(padding=(0, 2))
    for key, value in row.items():
        if key in ("poll_interval", "interval_override") and value is not None:
            value = human_duration(_seconds(value))
        if key == "next_poll_at" and value:
            value = f"{value} ({next_poll(str(value))})"  # worked out now, never stored
        facts.add_row(key, Text("-" if value is None or value == [] else str(value)))
    out.print(facts)
    cols = [
        Col("at (UTC)"),
        Col("outcome"),
        Col("HTTP", drop=3),
        Col("ms", justify="right", drop=2),
        Col("seen", justify="right", drop=1),
        Col("new", justify="right"),
        Col("error", flex=True),
    ]
    rows = [
        [
            str(h["at"])[:19].replace("T", " "),
            str(h["outcome"]),
            str(h["http_status"] or "-"),
            str(h["duration_ms"]),
            str(h["entries_seen"]),
            str(h["entries_new"]),
            str(h["error"] or ""),
        ]
        for h in history
    ]
    out.print(fit_table(out, cols, rows, title="recent polls"))
    for h in history:  # entries a poll refused, and why (not http(s), over the limit)
        if h["entries_rejected"]:
            at = str(h["at"])[:19].replace("T", " ")
            out.print(f"{at}: {h['entries_rejected']} refused: {h['rejected'] or ''}")


@feeds_app.command("remove")
def feeds_remove(ref: str = typer.Argument(..., help="Feed id or URL.")) -> None:
    """Remove a feed (its articles stay)."""
    from worker.core.db import unit_of_work
    from worker.feeds.subscriptions import FeedNotFound, find_feed

    _db()
    try:
        with unit_of_work() as s:
            feed = find_feed(s, ref)
            url = feed.url
            s.delete(feed)
    except FeedNotFound as exc:
        raise UserError(str(exc)) from exc
    out.print(f"removed {url}")


@feeds_app.command("poll")
def feeds_poll(
    ref: str | None = typer.Argument(None, help="Feed id or URL."),
    all_: bool = typer.Option(False, "--all", help="Every feed."),
) -> None:
    """Make feeds due now; the running service (or the next `run`) polls them at once."""
    import worker.celery_app  # noqa: F401 (it sends the dispatcher's message)
    from worker.core import outbox
    from worker.core.db import unit_of_work
    from worker.core.queues import DISPATCH_TASK
    from worker.feeds.polling import make_due
    from worker.feeds.subscriptions import FeedNotFound, find_feed

    if not all_ and ref is None:
        raise UserError("give a feed id or URL, or --all")
    _db()
    try:
        with unit_of_work() as s:
            ids = None if all_ else [find_feed(s, ref or "").id or 0]
            n = make_due(s, ids)
            # a running service polls them now, not at the dispatcher's next tick
            outbox.send_after_commit(s, DISPATCH_TASK)
    except FeedNotFound as exc:
        raise UserError(str(exc)) from exc
    out.print(f"{n} feed(s) due now")
