"""Publication times read from real pages, before and after issue 15.

Usage, from the repository root:

    .venv/bin/python -m bench.published_time [--corpora PATH] [--limit N]

Corpora: ../shared/corpora/extraction/ (trafilatura-eval's pages, readability's test
pages; read from there, never copied), the pages of bench/extraction_quality.py.

For every page:

* **before** (extractor revision 5): the time htmldate gave through trafilatura's
  metadata (the same ``extract_metadata`` call with the same date parameters), read as
  the extract step stored it: a time of exactly midnight is a day posing as a time;
* **after**: :mod:`worker.pages.published`'s choice over the page's markup readings and
  htmldate's date, as ``extract_page`` reads it (without htmldate's extensive search when
  the markup gives the time to the minute or the second: ``published.settled``; no feed
  entry: these pages come without their feeds).

Reported: how many pages get a time to the minute (or second) and how many only a day;
where it was read; the day accuracy against the gold date (trafilatura-eval: a day;
readability: ``publishedTime``, by the rule of bench/extraction_quality.py: the UTC day;
and, after, also the local day of a time whose offset was kept, as the gold is the
outlet's local day); and, on the
readability pages whose gold ``publishedTime`` has a time and a zone, how many times
equal the gold instant to the minute.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.extraction_quality import DEFAULT_CORPORA, Page, gold_days, load_pages
from worker.pages.charset import decode_html
from worker.pages.extractor import DEFAULT_PROFILE, _metadata_doc, _parse, _parse_date
from worker.pages.published import (
    Stamp,
    choose,
    from_datetime,
    page_candidates,
    parse_stamp,
    settled,
)

NOW = datetime(2100, 1, 1, tzinfo=UTC)  # gold dates are historical; do not clip them


def _gold(page: Page) -> str | None:
    if page.corpus == "teval":
        return str(page.gold.get("date") or "") or None
    return str(page.gold["meta"].get("publishedTime") or "") or None


def measure(page: Page) -> dict[str, Any]:
    body = gzip.decompress(Path(page.path).read_bytes())
    html, _ = decode_html(body, None)
    tree = _parse(html)
    if tree is None:
        return {"before": None, "after": None}
    stamps = page_candidates(copy.deepcopy(tree), page.url, None)
    doc = _metadata_doc(tree, page.url, DEFAULT_PROFILE, NOW)
    old = _parse_date(getattr(doc, "date", None), NOW) if doc is not None else None
    # after: as extract_page reads it, htmldate without its extensive search when the
    # markup gives the time to the minute or the second (worker.pages.published.settled)
    if settled(stamps, NOW):
        doc = _metadata_doc(tree, page.url, DEFAULT_PROFILE, NOW, dates=False)
    date = _parse_date(getattr(doc, "date", None), NOW) if doc is not None else None
    visible = from_datetime(date, "visible")
    after = choose([*stamps, *([visible] if visible else [])], NOW)
    return {"before": old, "after": after}


def _day(value: datetime | Stamp | None) -> str | None:
    if value is None:
        return None
    at = value.at if isinstance(value, Stamp) else value
    return at.date().isoformat()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    pages = load_pages(args.corpora, args.limit)
    rows: list[tuple[Page, dict[str, Any]]] = []
    for i, page in enumerate(pages):
        try:
            rows.append((page, measure(page)))
        except Exception as exc:
            print(f"{page.key}: {exc!r}", file=sys.stderr)
            rows.append((page, {"before": None, "after": None}))
        if (i + 1) % 200 == 0:
            print(f"{i + 1}/{len(pages)}", file=sys.stderr)

    lines = [f"pages: {len(rows)} (args: {' '.join(argv or sys.argv[1:])})", ""]
    for corpus in ("teval", "readability", "all"):
        sel = [(p, r) for p, r in rows if corpus in ("all", p.corpus)]
        before = Counter(
            "none"
            if r["before"] is None
            else "midnight (a day)"
            if r["before"].time() == datetime.min.time()
            else "a time"
            for _, r in sel
        )
        after = Counter("none" if r["after"] is None else r["after"].precision for _, r in sel)
        sources = Counter(r["after"].source for _, r in sel if r["after"] is not None)
        with_gold = [(p, r, g) for p, r in sel if (g := _gold(p))]
        ok_before = sum(_day(r["before"]) in gold_days(g) for _, r, g in with_gold)
        ok_after = sum(_day(r["after"]) in gold_days(g) for _, r, g in with_gold)
        # the gold is the outlet's local day: the stored offset gives it back
        ok_local = sum(
            r["after"] is not None
            and (r["after"].day.isoformat() in gold_days(g) or _day(r["after"]) in gold_days(g))
            for _, r, g in with_gold
        )
        lines.append(f"## {corpus}: {len(sel)} pages")
        lines.append(f"before: {dict(before)}")
        lines.append(f"after:  {dict(after)}  (sources: {dict(sources)})")
        lines.append(
            f"day right vs gold ({len(with_gold)} pages with a gold date): "
            f"before {ok_before}, after {ok_after} (UTC day), {ok_local} (UTC or local day)"
        )
        timed = []
        for _p, r, g in with_gold:
            gs = parse_stamp(g, "gold")
            if gs is not None and gs.precision != "day" and gs.offset is not None:
                timed.append((r, gs))
        if timed:
            b = sum(
                r["before"] is not None and r["before"].replace(second=0) == gs.at.replace(second=0)
                for r, gs in timed
            )
            a = sum(
                r["after"] is not None
                and r["after"].precision != "day"
                and r["after"].at.replace(second=0) == gs.at.replace(second=0)
                for r, gs in timed
            )
            lines.append(
                f"time right to the minute vs a gold time with its zone ({len(timed)} pages): "
                f"before {b}, after {a}"
            )
        lines.append("")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
