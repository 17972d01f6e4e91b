"""Commands of the service: init, run, status, export, replay."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import typer
from rich.markup import escape

from worker.cli.console import (
    Col,
    UserError,
    _db,
    _settings,
    app,
    err,
    fit_table,
    human_duration,
    out,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from worker.core.settings import Settings
    from worker.embedded.cpu_pool import CpuPool
    from worker.reports.status import FailingFeeds

# ------------------------------------------------------------------------------ init


@app.command()
def init() -> None:
    """Create or upgrade the database schema (alembic upgrade head)."""
    from worker.core.settings import mask_url

    settings = _db()
    out.print(f"database ready: {mask_url(settings.effective_database_url)}")


# ------------------------------------------------------------------------------- run


@app.command()
def run(
    until_idle: bool = typer.Option(
        False, "--until-idle", help="Poll due feeds once, finish what follows, then exit."
    ),
) -> None:
    """Run the service: worker and scheduler in one process (Ctrl-C stops it cleanly).

    It prints a progress line every 15 s when a count changed. With --until-idle the
    exit status says how the run ended: 0 when nothing is pending, 1 when a signal
    stopped it first or the broker or database stayed unreachable (pending work stays
    in the database for the next run) or every feed not paused failed its last poll
    (the failing feeds are named either way), 2 when the broker cannot be reached at
    the start or the spaCy model of the claims cannot be loaded."""
    try:
        _run(until_idle)
    except typer.Exit as done:
        _exit_after_run(int(done.exit_code or 0))
    _exit_after_run(0)


def _exit_after_run(code: int) -> None:
    """End the process once the run is over and its summary written, without the
    interpreter's finalization: with the claims model loaded (the start's check loads
    it), tearing the process down took 4.5-10 s at load 45-50, most of what the
    embedded run spent after its last article (issue 16). The worker and its CPU
    processes have stopped, every step has committed; the exit handlers still run
    and the output is flushed (:func:`worker.embedded.cpu_pool.exit_now`)."""
    from worker.embedded.cpu_pool import exit_now

    exit_now(code)


def _run(until_idle: bool) -> None:
    from worker.embedded.cpu_pool import CpuPool, cpu_processes

    settings = _settings()
    # The CPU processes' zygote first: its loads (trafilatura, dateparser's locales,
    # the spaCy pipeline: 3.6-4.9 s) overlap this process's start (the model check,
    # the schema, the worker's start, the first polls) instead of following it, so the
    # workers are warm when the first pages arrive. It forks them only once
    # `run_service` releases it (the database is ready); stopped on every way out.
    processes = cpu_processes(settings)
    pool = CpuPool(settings, processes).start(release=False) if processes else None
    try:
        _run_with(settings, until_idle, pool)
    finally:
        if pool is not None:
            pool.stop()


def _run_with(settings: Settings, until_idle: bool, pool: CpuPool | None) -> None:
    from worker.claims.model import model_problem
    from worker.core.settings import mask_url
    from worker.embedded.run import BrokerUnavailable, Ending, run_service
    from worker.reports.status import archive_writable

    if settings.extract_claims:
        # Before anything runs: a wrong name would otherwise make every claims step
        # wait (or, before this check, quarantine every article). Without CPU processes
        # it is loaded once here, and the embedded worker's threads use the same
        # pipeline; with them, the CPU processes' zygote loads it, and this process
        # only checks that it is installed (loading it here cost the `run` process about
        # 6 % of its CPU and slowed its exit, for a pipeline it never used).
        problem = model_problem(settings.spacy_model, load=pool is None)
        if problem is not None:
            raise UserError(
                f"{problem}; nothing was run (install it, or fix CLAIMWIRE_SPACY_MODEL, "
                "or set CLAIMWIRE_EXTRACT_CLAIMS=false)"
            )
    settings = _db()
    problem = archive_writable(settings.effective_archive_dir)
    if problem:
        err.print(f"warning: {problem}; pages will wait until it is writable")
    err.print(
        f"claimwire: database {mask_url(settings.effective_database_url)}, "
        f"broker {mask_url(settings.effective_broker_url)}"
    )
    try:
        ending = run_service(
            settings,
            until_idle=until_idle,
            emit_progress=lambda line: err.print(f"claimwire: {line}", highlight=False),
            pool=pool,
        )
    except BrokerUnavailable as exc:
        raise UserError(
            f"{exc}; nothing was run (start the broker or fix CLAIMWIRE_BROKER_URL)"
        ) from None
    if not until_idle:
        return
    from worker.core.db import unit_of_work
    from worker.reports.status import collect, failing_feeds, pending_work

    headline = {
        Ending.IDLE: "idle.",
        Ending.STOPPED: "stopped before the work was done.",
        Ending.GAVE_UP: "gave up: the broker or the database stayed unreachable.",
    }[ending]
    try:
        with unit_of_work() as s:
            data = collect(s, settings)
            pending = pending_work(s)
            failing = failing_feeds(s)
    except Exception:  # noqa: BLE001 (the database may be what is down)
        err.print(f"claimwire: {headline} (the database cannot be read for a summary)")
        raise typer.Exit(1) from None
    states = ", ".join(f"{k} {v}" for k, v in data["articles"].items() if v)
    summary = f"articles: {states or 'none'}; claims: {data['claims']}"
    if failing.failing:
        summary += f"; {failing.failing} of {failing.unpaused} feed(s) failing"
    if ending is Ending.IDLE:
        err.print(f"claimwire: idle. {summary}", highlight=False)
        _report_given_up(data["articles"])
        _report_failing_feeds(failing)
        if failing.all_failed:
            err.print(
                "claimwire: every feed failed its last poll: nothing new was read (exit 1)",
                highlight=False,
            )
            raise typer.Exit(1)
        return
    _report_failing_feeds(failing)
    err.print(
        f"claimwire: {headline} {summary}; {pending} item(s) still pending stay in the "
        "database: run again to finish them"
    )
    raise typer.Exit(1)


def _report_given_up(articles: dict[str, int]) -> None:
    """Articles a run gave up on (quarantined after ``max_attempts`` errors, or at once
    when their host does not exist; or failed for good): where their errors are, and
    how to try them again."""
    quarantined = articles.get("quarantined", 0)
    failed = articles.get("failed", 0)
    if not quarantined and not failed:
        return
    what = " and ".join(
        part
        for part in (
            f"{quarantined} article(s) quarantined" if quarantined else "",
            f"{failed} failed" if failed else "",
        )
        if part
    )
    again = "; `claimwire replay` tries the quarantined ones again" if quarantined else ""
    err.print(
        f"claimwire: {what}: `claimwire status` shows the latest errors{again}",
        highlight=False,
        markup=False,
    )


def _report_failing_feeds(failing: FailingFeeds) -> None:
    """The feeds whose last poll failed (a few, latest first), when each is polled again,
    and how to retry at once: a failing feed waits out its back-off, so after fixing the
    cause (a setting such as CLAIMWIRE_ALLOW_PRIVATE_NETWORKS, the feed's server) the
    next runs would repeat the same error until then."""
    if not failing.failing:
        return
    from schemas.types import utcnow

    now = utcnow()
    for n, (feed_id, url, error) in enumerate(failing.examples):
        when = failing.next_polls[n] if n < len(failing.next_polls) else None
        if when is None:
            nxt = ""
        elif when.replace(tzinfo=now.tzinfo) <= now:
            nxt = " (polled again now)"
        else:
            wait = (when.replace(tzinfo=now.tzinfo) - now).total_seconds()
            nxt = f" (next poll in {human_duration(wait)})"
        err.print(f"claimwire:   feed {feed_id} {url}: {error}{nxt}", highlight=False, markup=False)
    more = failing.failing - len(failing.examples)
    hidden = f" ({more} more not shown)" if more else ""
    retry = (
        f"`claimwire feeds poll {failing.examples[0][0]}`"
        if failing.failing == 1 and failing.examples
        else "`claimwire feeds poll ID` (or `--all`)"
    )
    err.print(
        f"claimwire: {failing.failing} feed(s) failing{hidden}:"
        " see `claimwire feeds list` and `claimwire feeds show ID`;"
        f" once the cause is fixed, {retry} retries now instead of at the next poll",
        highlight=False,
        markup=False,
    )


# ---------------------------------------------------------------------------- export


@app.command()
def export(
    what: str = typer.Argument(..., help="articles or claims"),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or csv"),
    out_file: Path | None = typer.Option(None, "--out", help="File (default stdout)."),
    with_copies: bool = typer.Option(
        False,
        "--with-copies",
        help="claims: also one row per duplicate article (another outlet running the same "
        "text), its copy_of naming the article that carries the claim.",
    ),
) -> None:
    """Export stored articles or claims."""
    from schemas.exports import ArticleRow, ClaimRow
    from worker.core.db import reading
    from worker.reports.export import article_rows, claim_rows, write_rows

    if what not in ("articles", "claims"):
        raise UserError(f"export what? 'articles' or 'claims', not {what!r}")
    if fmt not in ("jsonl", "csv"):
        raise UserError(f"--format must be jsonl or csv, not {fmt!r}")
    _db(reading=True)
    model = ArticleRow if what == "articles" else ClaimRow
    fields = list(model.model_fields)
    target: IO[str]
    with (
        (
            out_file.open("w", encoding="utf-8", newline="")
            if out_file
            else nullcontext(sys.stdout)
        ) as target,
        reading() as conn,
    ):
        copies = [0]

        def counted(rows: Iterator[ClaimRow]) -> Iterator[ClaimRow]:
            for row in rows:  # a copy's row is an outlet that ran a claim, not a claim
                copies[0] += row.copy_of is not None
                yield row

        rows = article_rows(conn) if what == "articles" else counted(claim_rows(conn, with_copies))
        n = write_rows(rows, target, fmt, fields)
    if out_file:
        if copies[0]:
            what = f"claims and {copies[0]} rows of copies"
            n -= copies[0]
        err.print(f"wrote {n} {what} to {out_file}")


# ---------------------------------------------------------------------------- status


@app.command()
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Queue depths, articles by state, feed health, recent errors."""
    from worker.core.db import reading
    from worker.core.settings import mask_url
    from worker.reports.status import collect

    settings = _db(reading=True)
    with reading() as conn:
        data = collect(conn, settings)
    data["database"] = mask_url(data["database"])
    data["broker"] = mask_url(data["broker"])
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    out.print(f"[bold]database[/] {data['database']}   [bold]broker[/] {data['broker']}")
    if data["broker_reachable"] is False:
        out.print(
            f"queues: [bold]broker unreachable[/] ({escape(data['broker'])}): queue depths "
            "unknown, and no worker can get work until it is back",
            highlight=False,
        )
    else:
        out.print(
            "queues: "
            + ", ".join(f"{k}={'?' if v is None else v}" for k, v in data["queues"].items())
        )
    out.print("articles: " + ", ".join(f"{k}={v}" for k, v in data["articles"].items()))
    f = data["feeds"]
    out.print(
        f"feeds: {f['total']} total, {f['healthy']} healthy, {f['failing']} failing, "
        f"{f['dead']} dead, {f['paused']} paused, {f['due']} due now"
    )
    out.print(
        f"claims: {data['claims']} in {data['claim_clusters']} clusters; "
        f"{data['articles_skipped_language']} processed article(s) not read for claims "
        "(not in English)"
    )
    _print_frontier(data["frontier"])
    for e in data["recent_article_errors"]:
        out.print(f"  article {e['id']} {e['state']}: {e['reason']}  ({e['url']})")
    for e in data["recent_feed_errors"]:
        out.print(
            f"  feed {e['id']} {e['state']} ({e['failures']} failures): {e['error']}  ({e['url']})"
            + _next_poll(e.get("next_poll_at"), int(e["id"])),
            highlight=False,
            markup=False,
        )


def _next_poll(when: str | None, feed_id: int) -> str:
    """When a failing feed is polled again, and how to poll it now."""
    from datetime import datetime

    from schemas.types import utcnow

    if not when:
        return ""
    wait = (datetime.fromisoformat(when) - utcnow()).total_seconds()
    due = "due now" if wait <= 0 else f"next poll in {human_duration(wait)}"
    return f"; {due}, or now: `claimwire feeds poll {feed_id}`"


def _print_frontier(f: dict[str, Any]) -> None:
    """The crawl frontier's lines of `claimwire status` (worker.reports.status.frontier)."""
    out.print(
        f"frontier: {f['hosts_waiting']} host(s) with fetches waiting "
        f"({f['articles_waiting']} articles)",
        highlight=False,
    )
    for b in f["largest_backlogs"]:
        extra = f", {b['turns_reserved']} turns reserved" if b["turns_reserved"] else ""
        out.print(
            f"  {escape(b['host'])}: {b['waiting']} waiting, next turn in "
            f"{_turn_in(b['next_turn_in'])}, last in {_turn_in(b['last_turn_in'])}{extra}",
            highlight=False,
        )
    shown = {b["host"] for b in f["largest_backlogs"]}
    for t in f["busiest_timelines"]:
        if t["host"] not in shown:
            out.print(
                f"  {escape(t['host'])}: {t['turns_reserved']} turns reserved (polls, fetches), "
                f"free in {_turn_in(t['free_in'])}, last turn in {_turn_in(t['last_turn_in'])}",
                highlight=False,
            )


def _turn_in(seconds: float) -> str:
    """A host's next turn as every duration reads ("4m 46s", not "285.8 s"); a turn less
    than 10 s away to a tenth of a second (hosts take turns a second apart)."""
    return f"{seconds:.1f}s" if seconds < 10 else human_duration(seconds)


@app.command()
def replay(
    ids: list[int] = typer.Argument(None, help="Article ids (default: all quarantined)."),
) -> None:
    """Send quarantined articles back to the step that failed."""
    from worker.core.db import unit_of_work
    from worker.pipeline.replay import NotQuarantined
    from worker.pipeline.replay import replay as do_replay

    _db()
    try:
        with unit_of_work() as s:
            n = do_replay(s, ids or None)
    except NotQuarantined as exc:
        raise UserError(str(exc)) from exc
    out.print(f"{n} article(s) sent back for another try; run or keep the service running")


@app.command()
def config(markdown: bool = typer.Option(False, "--markdown", help="The README table.")) -> None:
    """Show every setting with its current value (passwords masked)."""
    from worker.core.settings import mask_url, settings_table

    if markdown:
        sys.stdout.write("| Variable | Default | Meaning |\n|---|---|---|\n")
        for var, default, meaning in settings_table():
            sys.stdout.write(f"| `{var}` | `{default}` | {meaning} |\n".replace("``", "(empty)"))
        return
    settings = _settings()
    rows = []
    for var, _default, meaning in settings_table():
        value = getattr(settings, var.removeprefix("CLAIMWIRE_").lower())
        shown = mask_url(str(value)) if "url" in var.lower() else str(value)
        if "TOKEN" in var and value:
            shown = "***"
        rows.append([var, shown or "(empty)", meaning])
    # The variable's name whole (at 80 columns it was cut to "CLAIMWIRE_SQLITE_BUSY_…"),
    # its value and meaning wrapped beside it; on a terminal too narrow for the meaning
    # (see README or `config --markdown`), names and values only.
    # A value (a path, a URL) is whole wherever the room allows, so it can be copied:
    # the meaning takes what is left, 20 cells at least.
    from rich.cells import cell_len

    name_cells = max(cell_len(r[0]) for r in rows)
    value_cells = max(cell_len(r[1]) for r in rows)
    cols = [
        Col("variable"),
        Col("value", flex=True, wrap=True, min_width=min(value_cells, out.width - name_cells - 30)),
        Col("meaning", flex=True, wrap=True, min_width=20, drop=1),
    ]
    out.print(fit_table(out, cols, rows))
