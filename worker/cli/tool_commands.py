"""Standalone tools that need no database: extract, claims (and `claims search`)."""

from __future__ import annotations

import json
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from worker.cli.console import (
    Col,
    UserError,
    _db,
    _parse_date,
    _settings,
    app,
    err,
    fit_table,
    out,
)

# ---------------------------------------------------------------- standalone tools


def _emit(obj: dict[str, Any], jsonl: bool) -> None:
    if jsonl:
        sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    else:
        out.print_json(data=obj)


@app.command()
def extract(
    paths: list[str] = typer.Argument(..., help="Files, directories, .gz, or URLs."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object per line."),
) -> None:
    """Extract clean text and metadata, with no database.

    One record per page, in the order given. A page that cannot be read or fetched, or
    is not HTML (a PDF, an image), still gets its record, with an `error`; the command
    then exits 1 after writing every record (0 when all pages were extracted)."""
    from worker.pages.fetch import page_fetcher
    from worker.pages.inputs import iter_inputs

    settings = _settings()
    # one client (one connection pool) for every URL given
    fetch = page_fetcher(settings) if any("://" in p for p in paths) else None
    records = failed = 0
    for p in paths:
        n = 0
        for obj in iter_inputs([p], settings, fetch=fetch):
            _emit(obj, jsonl)
            n += 1
            failed += "error" in obj
        records += n
        if n == 0:
            _note(f"{p}: no pages in this directory (*.html, *.htm, *.gz)")
    if failed:
        _note(
            f"{failed} of {records} page(s) failed: see the `error` of their record (exit status 1)"
        )
        raise typer.Exit(1)


TEXT_SUFFIXES = (".txt",)
"""Files `claimwire claims` reads from a directory (recursively)."""


def _text_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files.extend(
                sorted(
                    f
                    for f in path.rglob("*")
                    if f.is_file() and f.name.lower().endswith(TEXT_SUFFIXES)
                )
            )
        else:
            files.append(path)
    return files


def _note(message: str) -> None:
    """One line on stderr, wrapped at words on a terminal (the terminal broke it in the
    middle of a word: "mo|re" at 80 columns); one line as it is when redirected."""
    err.print(f"claimwire: {message}", markup=False, highlight=False, soft_wrap=not err.is_terminal)


@app.command(context_settings={"allow_extra_args": False})
def claims(
    paths: list[str] = typer.Argument(
        ...,
        help="Text files or directories (their *.txt files); `search` to query stored "
        "claims; `cluster ID` for one cluster's articles in time order. A file or "
        "directory named search or cluster: ./search, ./cluster.",
    ),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object per line."),
    speaker: str | None = typer.Option(None, "--speaker", help="search: speaker contains."),
    text: str | None = typer.Option(None, "--text", help="search: words in the claim."),
    since: str | None = typer.Option(None, "--since", help="search: published on or after."),
    until: str | None = typer.Option(
        None, "--until", help="search: published on or before (a date: the whole day)."
    ),
    outlet: str | None = typer.Option(
        None, "--outlet", help="search: the outlet's host (or a domain it ends with)."
    ),
    min_outlets: int | None = typer.Option(
        None, "--min-outlets", min=1, help="search: claims repeated by N or more outlets."
    ),
    limit: int = typer.Option(50, "--limit", min=1, help="search: rows shown."),
) -> None:
    """Extract claims from text files (no database), `claims search` stored ones, or
    `claims cluster ID` to see where and when one claim was repeated.

    A file or directory named `search` or `cluster` is read as `./search`, `./cluster`."""
    if paths and paths[0] in ("search", "cluster"):
        _a_path_of_that_name(paths)
    if paths and paths[0] == "search":
        if len(paths) > 1:
            raise UserError(
                f"`claims search` takes options, not paths ({paths[1]!r}): "
                "to read files with a file or directory named search among them, "
                "write ./search"
            )
        last = _parse_date(until, "--until")
        if last is not None and until is not None and len(until.strip()) == 10:
            last += timedelta(days=1) - timedelta(microseconds=1)  # the whole day
        first = _parse_date(since, "--since")
        if first is not None and last is not None and first > last:
            raise UserError(
                f"--since {since} is after --until {until}: no claim can match (swap them?)"
            )
        _claims_search(
            speaker,
            text,
            first,
            limit,
            jsonl,
            until=last,
            outlet=outlet,
            min_outlets=min_outlets,
        )
        return
    if paths and paths[0] == "cluster":
        if len(paths) != 2 or not paths[1].isdigit():
            raise UserError(
                "usage: claimwire claims cluster ID (a cluster_id of export or search); "
                "to read a file or directory named cluster, write ./cluster"
            )
        _claims_cluster(int(paths[1]), jsonl)
        return
    given = [
        name
        for name, value in (
            ("--speaker", speaker),
            ("--text", text),
            ("--since", since),
            ("--until", until),
            ("--outlet", outlet),
            ("--min-outlets", min_outlets),
        )
        if value is not None
    ]
    if given:
        raise UserError(
            f"{', '.join(given)}: options of `claims search`, not of reading files "
            f"(`claimwire claims search {given[0]} ...`)"
        )
    from worker.claims import extract_claims, is_english, load_nlp
    from worker.claims.attribution import MAX_CLAIM_TEXT

    settings = _settings()
    try:
        nlp = load_nlp(settings.spacy_model)
    except Exception as exc:  # any failure to load the pipeline is the setting's
        raise UserError(
            f"cannot load spaCy model {settings.spacy_model!r} (CLAIMWIRE_SPACY_MODEL): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    files = _text_files(paths)
    if not files:
        raise UserError("no text files (*.txt) in " + ", ".join(paths))
    unreadable = 0
    not_english: list[str] = []
    for path in files:
        try:
            # bytes decoded as they are: no newline translation, so start/end index
            # the file's text exactly (CRLF files included)
            content = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            _note(f"error: cannot read {path}: {why}")
            unreadable += 1
            continue
        # A byte-order mark is character 0 of the text as read, never part of a speaker.
        skip = 1 if content.startswith("\ufeff") else 0
        body = content[skip:]
        if body.strip() and not is_english(body[:MAX_CLAIM_TEXT]):
            not_english.append(str(path))
            continue
        if len(body) > MAX_CLAIM_TEXT:
            _note(f"{path}: only the first {MAX_CLAIM_TEXT:,} characters are read for claims")
        for c in extract_claims(body, nlp):
            row = c.model_dump()
            row["start"] += skip
            row["end"] += skip
            _emit({"file": str(path), **row}, jsonl)
    if not_english:
        shown = ", ".join(not_english[:5]) + (" ..." if len(not_english) > 5 else "")
        _note(
            f"skipped {len(not_english)} of {len(files)} file(s) not in English "
            f"(claims are extracted from English only): {shown}"
        )
    if unreadable:
        raise UserError(f"{unreadable} of {len(files)} file(s) could not be read (see above)")


def _a_path_of_that_name(paths: list[str]) -> None:
    """`claims search` (or `cluster`) with a file or directory of that name here: the
    subcommand runs, and a note says how to read the file instead (`./search`)."""
    name = paths[0]
    if Path(name).exists():
        kind = "directory" if Path(name).is_dir() else "file"
        _note(
            f"`{name}` is read as the subcommand `claims {name}`; to read the {kind} "
            f"named {name} here, write `claimwire claims ./{name}`"
        )


def _claims_cluster(cluster_id: int, jsonl: bool) -> None:
    from worker.claims.search import cluster_report
    from worker.core.db import unit_of_work

    _db()
    with unit_of_work() as s:
        report = cluster_report(s, cluster_id)
    if report is None:
        raise UserError(f"no claim cluster {cluster_id}")
    if jsonl:
        sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
        return
    width = max(40, out.width)

    def wrapped(text: str, indent: str, first: str | None = None) -> list[str]:
        return textwrap.wrap(
            text,
            width,
            initial_indent=indent if first is None else first,
            subsequent_indent=indent,
            break_long_words=False,  # a URL stays whole, so it can be copied
            break_on_hyphens=False,
        ) or [indent if first is None else first]

    lines = [
        f"cluster {cluster_id}: {report['speaker']} — {report['n_articles']} article(s) "
        f"in {report['n_outlets']} outlet(s)",
        *wrapped(report["text"], "       ", first="claim: "),
        "first seen: "
        + f"{report['first_outlet'] or '?'}, "
        + _when(report["first_seen_at"], report["first_seen_precision"]),
    ]
    if report["first_url"]:
        lines += wrapped(report["first_url"], "  ")
    lines.append("repeats in time order:")
    # One block a repeat, so that the view fits the terminal (80 columns included): the
    # time, outlet and kind on the first line, then the wording and the link indented.
    number_width = len(str(len(report["members"])))
    for n, m in enumerate(report["members"], 1):
        head = f"  {n:>{number_width}}. "
        indent = " " * len(head)
        if m["copy"]:
            kind = f"verbatim copy of {m['copy_of_outlet'] or m['copy_of']}"
        elif m["repeat"] in ("rewording", "same words"):
            kind = m["repeat"]
        else:
            kind = "first"
        when = _when(m["published_at"], m["published_precision"])
        lines += wrapped(f"{when}  {m['outlet']}  {kind}", indent, first=head)
        if not m["copy"]:
            lines += wrapped(f"“{m['text']}”", indent)
        if m["url"]:
            lines += wrapped(m["url"], indent)
    for line in lines:  # plain lines (no markup), credentials masked
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def _when(iso: str | None, precision: str | None) -> str:
    """A time as the cluster view shows it: UTC to its precision, and the precision."""
    if not iso:
        return "unknown"
    if precision == "day":
        return f"{iso[:10]} (day)"
    shown = iso[: 19 if precision == "second" else 16].replace("T", " ")
    # no precision: a time stored before precision was recorded, or a discovery time
    return f"{shown} UTC ({precision})" if precision else f"{shown} UTC"


def _claims_search(
    speaker: str | None,
    words: str | None,
    since: datetime | None,
    limit: int,
    jsonl: bool,
    *,
    until: datetime | None = None,
    outlet: str | None = None,
    min_outlets: int | None = None,
) -> None:
    from worker.claims.stored import search_claims
    from worker.core.db import reading

    _db(reading=True)
    with reading() as conn:
        rows = search_claims(
            conn,
            speaker=speaker,
            words=words,
            since=since,
            until=until,
            outlet=outlet,
            min_outlets=min_outlets,
            limit=limit + 1,
        )
    if len(rows) > limit:
        rows = rows[:limit]
        _note(f"showing the newest {limit} matching claims; more match (--limit N shows more)")
    if not rows:
        asked = [
            f"{name} {value.date() if isinstance(value, datetime) else repr(value)}"
            for name, value in (
                ("--speaker", speaker),
                ("--text", words),
                ("--since", since),
                ("--until", until),
                ("--outlet", outlet),
                ("--min-outlets", min_outlets),
            )
            if value
        ]
        what = " with " + ", ".join(asked) if asked else ""
        _note(f"no stored claim{what}")
        return
    if jsonl:
        for r in rows:
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
        return
    cols = [
        # At 80 columns: outlet, speaker, the claim in 30 cells or more, and the cluster
        # (what `claims cluster ID` takes); the date, count of outlets and first seen
        # come back as the terminal widens.
        Col("date", drop=3),
        Col("outlet", flex=True, max_width=30),
        Col("speaker", flex=True, max_width=30, min_width=16, cut="start"),
        Col("claim", flex=True, wrap=True, min_width=30),
        Col("cluster", justify="right", drop=2),
        Col("outlets", justify="right", drop=4),
        Col("first seen", drop=5),
    ]
    cells = [
        [
            str(r["published_at"] or "")[:10],
            # an outlet that ran the claim in a verbatim copy (found by --outlet)
            str(r["outlet"]) + (" (copy)" if r.get("copy_of") else ""),
            str(r["speaker"]),
            str(r["text"]),
            str(r["cluster_id"] or ""),
            str(r["cluster_outlets"]),
            str(r["cluster_first_seen"] or "")[:10],
        ]
        for r in rows
    ]
    out.print(fit_table(out, cols, cells))
