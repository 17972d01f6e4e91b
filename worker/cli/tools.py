"""Standalone tools that need no database: extract, claims (and `claims search`)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from worker.cli.common import UserError, _db, _parse_date, _settings, app, out

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
    """Extract clean text and metadata, with no database."""
    from worker.extraction import iter_inputs

    settings = _settings()
    for obj in iter_inputs(paths, settings):
        _emit(obj, jsonl)


@app.command(context_settings={"allow_extra_args": False})
def claims(
    paths: list[str] = typer.Argument(..., help="Text files; or `search` to query stored claims."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object per line."),
    speaker: str | None = typer.Option(None, "--speaker", help="search: speaker contains."),
    text: str | None = typer.Option(None, "--text", help="search: words in the claim."),
    since: str | None = typer.Option(None, "--since", help="search: published on or after."),
    limit: int = typer.Option(50, "--limit", help="search: rows shown."),
) -> None:
    """Extract claims from text files (no database), or `claims search` stored ones."""
    if paths and paths[0] == "search":
        _claims_search(speaker, text, _parse_date(since, "--since"), limit, jsonl)
        return
    from worker.claims import extract_claims, load_nlp

    settings = _settings()
    try:
        nlp = load_nlp(settings.spacy_model)
    except OSError as exc:  # spaCy's "Can't find model ..."
        raise UserError(
            f"cannot load spaCy model {settings.spacy_model!r} (CLAIMWIRE_SPACY_MODEL): {exc}"
        ) from exc
    for p in paths:
        path = Path(p)
        try:
            # bytes decoded as they are: no newline translation, so start/end index
            # the file's text exactly (CRLF files included)
            content = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {p}: {exc}") from exc
        for c in extract_claims(content, nlp):
            _emit({"file": str(path), **c.model_dump()}, jsonl)


def _claims_search(
    speaker: str | None, words: str | None, since: datetime | None, limit: int, jsonl: bool
) -> None:
    from worker.claims.search import search_claims
    from worker.db import unit_of_work

    _db()
    with unit_of_work() as s:
        rows = search_claims(s, speaker=speaker, words=words, since=since, limit=limit)
    if jsonl:
        for r in rows:
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
        return
    table = Table("date", "outlet", "speaker", "claim", "cluster", "outlets")
    for r in rows:
        table.add_row(
            str(r["published_at"] or "")[:10],
            str(r["outlet"]),
            str(r["speaker"]),
            str(r["text"])[:120],
            str(r["cluster_id"] or ""),
            str(r["cluster_outlets"]),
        )
    out.print(table)
