"""`claimwire backfill ...`, `claimwire reprocess`, `claimwire jobs ...`.

A command creates a job and prints its id; the service works on it. ``--wait`` shows a
live progress bar until the job ends. With the embedded broker (no Redis) nothing runs
unless a worker runs, so ``--wait`` works on the job in this process (a worker on the
``backfill`` queue only, at most ``backfill_concurrency`` items at once); a
``claimwire run`` running at the same time shares the work safely.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from worker.cli.console import Col, UserError, _db, _parse_date, app, err, fit_table, out

if TYPE_CHECKING:
    from rich.progress import Progress

backfill_app = typer.Typer(
    help="Backfill the past: a feed's archives, sitemaps, or a list of URLs.",
    no_args_is_help=True,
)
app.add_typer(backfill_app, name="backfill")
jobs_app = typer.Typer(help="Backfill and reprocess jobs: list, show, pause, resume, cancel.")
app.add_typer(jobs_app, name="jobs")

WAIT_HELP = (
    "Show live progress until the job ends (with the embedded broker, do the work in this process)."
)
FINISHED = ("done", "failed", "cancelled")


# ------------------------------------------------------------------------ shared bits


def _dates(since: str | None, until: str | None) -> tuple[Any, Any]:
    s, u = _parse_date(since, "--since"), _parse_date(until, "--until")
    if s is not None and u is not None and s > u:
        raise UserError(f"--since {since} is after --until {until}")
    return s, u


def _started(job_id: int, kind: str, wait: bool, detail: str = "") -> None:
    from worker.core.settings import get_settings

    settings = get_settings()
    out.print(f"job {job_id} queued ({kind}{', ' + detail if detail else ''})")
    if wait:
        code = wait_for_job(job_id, settings)
        if code:
            raise typer.Exit(code)
        return
    if settings.broker_is_embedded:
        err.print(
            f"claimwire: `claimwire run` works on it (or `claimwire jobs show {job_id} --wait`)"
        )
    else:
        _kick(job_id)


def _kick(job_id: int) -> None:
    """Start the job now instead of at the next scheduler tick (best effort)."""
    try:
        import worker.celery_app  # noqa: F401 (it sends the messages of the round)
        from worker.jobs.work import advance_once

        advance_once(job_ids=[job_id])
    except Exception as exc:  # noqa: BLE001 (the scheduler starts it anyway)
        err.print(f"claimwire: job {job_id} starts at the next scheduler tick ({exc})")


def _read_lines(source: str) -> list[str]:
    if source == "-":
        return sys.stdin.read().splitlines()
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise UserError(f"cannot read {source}: {exc.strerror or exc}") from exc


# --------------------------------------------------------------------------- backfill


@backfill_app.command("feed")
def backfill_feed(
    refs: list[str] = typer.Argument(None, help="Feed ids or URLs (known feeds)."),
    since: str = typer.Option(..., "--since", help="Oldest publication date (YYYY-MM-DD)."),
    until: str | None = typer.Option(None, "--until", help="Newest publication date."),
    opml: Path | None = typer.Option(None, "--opml", help="Also every feed of this OPML file."),
    include_undated: bool = typer.Option(False, "--include-undated", help="Keep undated entries."),
    wait: bool = typer.Option(False, "--wait", help=WAIT_HELP),
) -> None:
    """Backfill feeds from their archives (RFC 5005 links, or ?paged=N) back to --since."""
    from worker.core.db import unit_of_work
    from worker.feeds.subscriptions import FeedNotFound, find_feed
    from worker.jobs.discovery import create_feed_job

    s, u = _dates(since, until)
    wanted = list(refs or [])
    if opml is not None:
        from worker.feeds.opml import OPMLError, read_opml

        try:
            data = sys.stdin.buffer.read() if str(opml) == "-" else opml.read_bytes()
            wanted += [url for url, _t, _tags in read_opml(data)]
        except OSError as exc:
            raise UserError(f"cannot read {opml}: {exc.strerror or exc}") from exc
        except OPMLError as exc:
            raise UserError(f"{opml}: {exc}") from exc
    if not wanted:
        raise UserError("which feeds? give feed ids or URLs, or --opml FILE")
    _db()
    try:
        with unit_of_work() as session:
            ids = list(dict.fromkeys(int(find_feed(session, r).id or 0) for r in wanted))
            job = create_feed_job(session, ids, s, u, include_undated=include_undated)
            job_id = int(job.id or 0)
    except FeedNotFound as exc:
        raise UserError(
            f"{exc}; add it first with `claimwire feeds add` or `feeds import`"
        ) from exc
    _started(job_id, "backfill feed", wait, f"{len(ids)} feed{'s' if len(ids) != 1 else ''}")


@backfill_app.command("sitemap")
def backfill_sitemap(
    url: str = typer.Argument(..., help="Sitemap or sitemap index URL, or a site's root."),
    since: str = typer.Option(..., "--since", help="Oldest date (lastmod / publication)."),
    until: str | None = typer.Option(None, "--until", help="Newest date."),
    include_undated: bool = typer.Option(False, "--include-undated", help="Keep undated URLs."),
    wait: bool = typer.Option(False, "--wait", help=WAIT_HELP),
) -> None:
    """Backfill from a sitemap (a site root or robots.txt: its Sitemap: lines)."""
    from worker.core.db import unit_of_work
    from worker.jobs.discovery import create_sitemap_job

    s, u = _dates(since, until)
    _db()
    with unit_of_work() as session:
        job = create_sitemap_job(session, url, s, u, include_undated=include_undated)
        job_id = int(job.id or 0)
    _started(job_id, "backfill sitemap", wait)


@backfill_app.command("urls")
def backfill_urls(
    source: str = typer.Argument(..., help="File with one URL per line, or - for stdin."),
    wait: bool = typer.Option(False, "--wait", help=WAIT_HELP),
) -> None:
    """Backfill the article URLs of a file (or stdin)."""
    from worker.core.db import unit_of_work
    from worker.jobs.discovery import create_urls_job

    lines = _read_lines(source)
    settings = _db()
    with unit_of_work() as session:
        result = create_urls_job(session, lines, settings)
        job_id = int(result.job.id or 0)
    for bad in result.invalid[:10]:
        err.print(f"skipped invalid URL {bad[:200]}")
    if not result.added and not result.invalid:
        err.print("claimwire: no URLs given")
    _started(job_id, "backfill urls", wait, f"{result.added} URLs")


# -------------------------------------------------------------------------- reprocess


@app.command()
def reprocess(
    since: str | None = typer.Option(None, "--since", help="Published on or after."),
    until: str | None = typer.Option(None, "--until", help="Published on or before."),
    feed: str | None = typer.Option(None, "--feed", help="Articles seen in this feed (id/URL)."),
    outlet: str | None = typer.Option(None, "--outlet", help="Articles of this host."),
    state: list[str] = typer.Option(
        None, "--state", help="Article state (repeatable; default processed)."
    ),
    older_extractor: bool = typer.Option(
        False, "--older-extractor", help="Only articles extracted by an older extractor."
    ),
    wait: bool = typer.Option(False, "--wait", help=WAIT_HELP),
) -> None:
    """Re-run extraction, dedup and claims from archived pages (no refetching)."""
    from worker.core.db import unit_of_work
    from worker.feeds.subscriptions import FeedNotFound, find_feed
    from worker.jobs.reprocess import REPROCESSABLE_STATES, ReprocessFilter, create_reprocess_job

    s, u = _dates(since, until)
    states = list(state or ["processed"])
    for st in states:
        if st not in REPROCESSABLE_STATES:
            raise UserError(
                f"--state {st!r}: choose among {', '.join(REPROCESSABLE_STATES)} "
                "(articles in other states are still on their way)"
            )
    settings = _db()
    try:
        with unit_of_work() as session:
            feed_id = int(find_feed(session, feed).id or 0) if feed else None
            f = ReprocessFilter(
                since=s,
                until=u,
                feed_id=feed_id,
                outlet=outlet,
                states=states,
                older_extractor=older_extractor,
            )
            job = create_reprocess_job(session, f, settings)
            job_id, count = int(job.id or 0), int(job.params.get("count", 0))
    except FeedNotFound as exc:
        raise UserError(str(exc)) from exc
    _started(job_id, "reprocess", wait, f"{count} articles")


# ------------------------------------------------------------------------------- jobs


def _job_id(value: str) -> int:
    if not value.strip().isdigit() or int(value) >= 2**63:
        raise UserError(f"not a job id: {value!r} (see `claimwire jobs list`)")
    return int(value)


def _rows(job_id: int | None = None) -> list[dict[str, Any]]:
    """One job's row (``jobs show``), or the newest jobs' (``jobs list``: read without
    the ORM)."""
    from worker.core.db import reading, unit_of_work
    from worker.core.settings import get_settings
    from worker.jobs.progress import job_row, list_jobs, progress

    settings = get_settings()
    if job_id is None:
        with reading() as conn:
            return [job_row(j, progress(conn, int(j.id), settings)) for j in list_jobs(conn)]
    from worker.jobs import lifecycle

    with unit_of_work() as session:
        try:
            found = lifecycle.get_job(session, job_id)
        except lifecycle.JobNotFound as exc:
            raise UserError(str(exc)) from exc
        return [job_row(found, progress(session, job_id, settings))]


@jobs_app.command("list")
def jobs_list(as_json: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
    """Recent jobs with their counts."""
    _db(reading=True)
    rows = _rows()
    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
        return
    cols = [
        Col("id", justify="right"),
        Col("kind"),
        Col("state"),
        Col("finished/found", justify="right"),
        Col("done", justify="right", drop=3),
        Col("fetched", justify="right", drop=4),
        Col("skip", justify="right", drop=2),
        Col("fail", justify="right"),
        Col("created", drop=1),
    ]
    cells = []
    for r in rows:
        finished = int(r["done"]) + int(r["skipped"]) + int(r["failed"])
        total = f"{finished}/{r['discovered']}" + ("" if r["discovery_done"] else "+")
        cells.append(
            [
                str(r["id"]),
                str(r["kind"]).removeprefix("backfill_"),
                str(r["state"]),
                total,
                str(r["done"]),
                str(r["fetched"]),
                str(r["skipped"]),
                str(r["failed"]),
                str(r["created_at"])[:16].replace("T", " "),
            ]
        )
    table = fit_table(
        out,
        cols,
        cells,
        caption="finished = done + skip + fail; found ends in + while discovery goes on",
    )
    out.print(table)


@jobs_app.command("show")
def jobs_show(
    job: str = typer.Argument(..., help="Job id."),
    as_json: bool = typer.Option(False, "--json"),
    wait: bool = typer.Option(False, "--wait", help=WAIT_HELP),
) -> None:
    """One job: parameters, state, times, counts, last error."""
    from worker.core.settings import get_settings

    _db()
    job_id = _job_id(job)
    row = _rows(job_id)[0]
    if wait and row["state"] not in FINISHED:
        code = wait_for_job(job_id, get_settings())
        row = _rows(job_id)[0]
        if code and not as_json:
            raise typer.Exit(code)
    if as_json:
        sys.stdout.write(json.dumps(row, indent=2, ensure_ascii=False) + "\n")
        return
    for key, value in row.items():
        out.print(f"[bold]{key}[/]: {value}")


def _transition(name: str, job: str) -> None:
    from worker.core.db import unit_of_work
    from worker.jobs import lifecycle

    _db()
    job_id = _job_id(job)
    try:
        with unit_of_work() as session:
            j = getattr(lifecycle, name)(session, job_id)
            state = j.state
    except (lifecycle.JobNotFound, lifecycle.JobStateError) as exc:
        raise UserError(str(exc)) from exc
    out.print(f"job {job_id} {state}")


@jobs_app.command("pause")
def jobs_pause(job: str = typer.Argument(..., help="Job id.")) -> None:
    """Pause a job (items in flight finish; nothing new starts)."""
    _transition("pause", job)


@jobs_app.command("resume")
def jobs_resume(job: str = typer.Argument(..., help="Job id.")) -> None:
    """Resume a paused job where it stopped."""
    _transition("resume", job)
    from worker.core.settings import get_settings

    if not get_settings().broker_is_embedded:
        _kick(_job_id(job))


@jobs_app.command("cancel")
def jobs_cancel(job: str = typer.Argument(..., help="Job id.")) -> None:
    """Cancel a job for good (unstarted articles it discovered are forgotten)."""
    _transition("cancel", job)


# ------------------------------------------------------------------------------ --wait


def _progress_bar() -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]job {task.fields[job]}[/] {task.fields[state]}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]} {task.fields[rate]} eta"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _snapshot(job_id: int) -> dict[str, Any]:
    return _rows(job_id)[0]


def wait_for_job(job_id: int, settings: Any) -> int:
    """Follow a job with a progress bar until it ends; returns the exit status (0 done,
    1 failed or cancelled). Embedded broker: works on the job in this process."""
    started = time.monotonic()
    bar = _progress_bar()
    task = bar.add_task("job", total=None, job=job_id, state="", counts="", rate="")
    final: dict[str, Any] = {}

    def refresh() -> dict[str, Any]:
        row = _snapshot(job_id)
        finished = int(row["done"]) + int(row["skipped"]) + int(row["failed"])
        elapsed = max(time.monotonic() - started, 1e-6)
        total = int(row["discovered"]) if row["discovery_done"] else None
        bar.update(
            task,
            completed=finished,
            total=total if total is not None else max(int(row["discovered"]), finished) or None,
            state=row["state"] + ("" if row["discovery_done"] else ", discovering"),
            counts=_counts(row, short=True),
            rate=f"{finished / elapsed:.1f}/s",
        )
        return row

    with bar:
        if settings.broker_is_embedded:
            final = _work_in_process(job_id, settings, refresh)
        else:
            _kick(job_id)
            try:
                while True:
                    final = refresh()
                    if final["state"] in FINISHED or final["state"] == "paused":
                        break
                    time.sleep(1.0)
            except KeyboardInterrupt:
                err.print(f"claimwire: job {job_id} goes on in the background")
                return 130
    return _report(final)


def _counts(row: dict[str, Any], short: bool = False) -> str:
    """A job's counts in words. A reprocess reads every page from the archive, so it has
    no "fetched" count: its items are selected, not discovered."""
    from worker.jobs.lifecycle import KIND_REPROCESS

    tail = f"{row['skipped']} skipped, {row['failed']} failed"
    if row["kind"] == KIND_REPROCESS:
        head = "" if short else f"{row['discovered']} selected, {row['done']} done, "
        return head + tail
    if short:
        return f"{row['fetched']} fetched, {tail}"
    return f"{row['discovered']} discovered, {row['fetched']} fetched, {row['done']} done, " + tail


def _report(row: dict[str, Any]) -> int:
    if not row:
        return 1
    summary = f"job {row['id']} {row['state']}: {_counts(row)}"
    if row["state"] == "done":
        err.print(f"claimwire: {summary}")
        return 0
    if row["state"] == "paused":
        err.print(f"claimwire: {summary} (resume with `claimwire jobs resume {row['id']}`)")
        return 0
    err.print(f"claimwire: {summary}; last error: {row['last_error'] or '-'}")
    return 1


def _work_in_process(job_id: int, settings: Any, refresh: Any) -> dict[str, Any]:
    """Run an embedded Celery worker on the ``backfill`` queue in this process, advance
    the job every half second, and stop the worker once the job has ended."""
    from celery.signals import after_setup_logger
    from celery.worker import state as worker_state

    from worker.celery_app import app as celery_app
    from worker.core.queues import BACKFILL_QUEUE
    from worker.embedded.quiet import quiet_after_setup, quiet_per_item_events
    from worker.jobs.work import advance_once

    # The progress bar says how far the job is: no log line per article step under it
    # (and no Celery warning about root), as in `claimwire run`.
    quiet_per_item_events(settings)
    after_setup_logger.connect(quiet_after_setup, weak=False)
    result: dict[str, Any] = {}
    stop = threading.Event()
    # The filesystem broker is polled; poll often so items follow each other closely.
    options = dict(celery_app.conf.broker_transport_options or {})
    celery_app.conf.broker_transport_options = {**options, "polling_interval": 0.1}

    def watch() -> None:
        first = True
        while not stop.wait(0.5):
            try:
                advance_once(reclaim=first, job_ids=[job_id])
                first = False
                row = refresh()
            except Exception as exc:  # noqa: BLE001 (keep watching)
                err.print(f"claimwire: {exc}")
                continue
            if row["state"] in FINISHED or row["state"] == "paused":
                result.update(row)
                # What a SIGTERM's handler does, without the handler's "worker: Warm
                # shutdown" written straight to file descriptor 1 (stdout carries only the
                # command's output: `jobs show N --wait --json` is JSON).
                worker_state.should_stop = 0
                return

    worker = celery_app.Worker(
        queues=[BACKFILL_QUEUE],
        pool="threads",
        concurrency=settings.backfill_concurrency + 1,  # items, and one discovery
        beat=False,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        loglevel="WARNING" if settings.log_level.upper() == "INFO" else settings.log_level.upper(),
        quiet=True,
        redirect_stdouts=False,  # the progress bar owns the terminal
        hostname=f"claimwire-backfill@{os.uname().nodename}-{os.getpid()}",
    )
    watcher = threading.Thread(target=watch, daemon=True, name="claimwire-job-watch")
    watcher.start()
    try:
        worker.start()
    finally:
        stop.set()
        worker_state.should_stop = None  # a later worker of this process starts afresh
    if not result:
        result.update(refresh())
        err.print(f"claimwire: stopped; job {job_id} resumes with `claimwire run` or --wait")
    return result
