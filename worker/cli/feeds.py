"""`claimwire feeds ...`: add, import, export, list, remove, poll."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from worker.cli.common import UserError, _db, app, err, out

feeds_app = typer.Typer(help="Manage the feeds claimwire polls.", no_args_is_help=True)
app.add_typer(feeds_app, name="feeds")


# ----------------------------------------------------------------------------- feeds


@feeds_app.command("add")
def feeds_add(urls: list[str] = typer.Argument(..., help="Feed URLs.")) -> None:
    """Add feeds (adding one that exists is a no-op)."""
    from worker.db import unit_of_work
    from worker.feeds import add_feeds
    from worker.urls import InvalidURL

    settings = _db()
    try:
        with unit_of_work() as s:
            result = add_feeds(s, [(u, None, []) for u in urls], settings)
    except InvalidURL as exc:
        raise UserError(str(exc)) from exc
    for u in result.added:
        out.print(f"added {u}")
    for u in result.existing:
        out.print(f"already present: {u}")


@feeds_app.command("import")
def feeds_import(path: Path = typer.Argument(..., help="OPML file, or - for stdin.")) -> None:
    """Import feeds from an OPML subscription list (folders become tags)."""
    from worker.db import unit_of_work
    from worker.feeds import add_feeds
    from worker.opml import OPMLError, read_opml
    from worker.urls import InvalidURL

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
            from worker.urls import canonicalize

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
    from worker.db import unit_of_work
    from worker.feeds import all_feeds
    from worker.opml import write_opml

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
    from worker.db import unit_of_work
    from worker.feeds import all_feeds, feed_row

    _db()
    with unit_of_work() as s:
        rows = [feed_row(f) for f in all_feeds(s)]
    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
        return
    table = Table(
        "id", "state", "url", "last success", "fails", "new/day", "next poll", "last error"
    )
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["state"]),
            str(r["url"]),
            str(r["last_success_at"] or "-")[:19],
            str(r["consecutive_failures"]),
            str(r["new_entries_per_day"]),
            str(r["next_poll_at"])[:19],
            str(r["last_error"] or "")[:60],
        )
    out.print(table)


@feeds_app.command("remove")
def feeds_remove(ref: str = typer.Argument(..., help="Feed id or URL.")) -> None:
    """Remove a feed (its articles stay)."""
    from worker.db import unit_of_work
    from worker.feeds import FeedNotFound, find_feed

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
    """Make feeds due now; the next `run` (or the running service) polls them at once."""
    from worker.db import unit_of_work
    from worker.feeds import FeedNotFound, find_feed
    from worker.polling import make_due

    if not all_ and ref is None:
        raise UserError("give a feed id or URL, or --all")
    _db()
    try:
        with unit_of_work() as s:
            ids = None if all_ else [find_feed(s, ref or "").id or 0]
            n = make_due(s, ids)
    except FeedNotFound as exc:
        raise UserError(str(exc)) from exc
    out.print(f"{n} feed(s) due now")
