"""Export rows for `claimwire export` (JSON lines or CSV), streamed in batches.

The queries are SQLAlchemy Core over :mod:`schemas.tables`: `claimwire export` reads on
a plain connection (:func:`worker.core.db.reading`), without the ORM; an ORM session
runs them the same.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import select

from schemas.exports import ArticleRow, ClaimRow
from schemas.tables import article, claim, claimcluster, feed, sighting
from worker.core.shown import precision_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

BATCH = 500


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


def _when(v: datetime | None, precision: str | None) -> str | None:
    """A publication time: ISO 8601 in UTC, or the date alone when known to the day."""
    if v is None:
        return None
    return v.date().isoformat() if precision == "day" else v.isoformat()


def _published(a: Any) -> str | None:
    return _when(a.published_at or a.entry_published_at, precision_of(a))


def article_rows(session: Session | Connection) -> Iterator[ArticleRow]:
    a = article.c
    canonical = article.alias("canonical")
    last_id = 0
    while True:
        batch = session.execute(
            select(article, canonical.c.url.label("duplicate_of_url"))
            .outerjoin(canonical, canonical.c.id == a.duplicate_of_id)
            .where(a.id > last_id)
            .order_by(a.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        ids = [r.id for r in batch]
        feeds: dict[int, list[str]] = {}
        for aid, url in session.execute(
            select(sighting.c.article_id, feed.c.url)
            .join(feed, feed.c.id == sighting.c.feed_id)
            .where(sighting.c.article_id.in_(ids))
            .order_by(sighting.c.id)
        ).all():
            feeds.setdefault(aid, []).append(url)
        for r in batch:
            yield ArticleRow(
                id=r.id,
                url=r.url,
                title=r.title or r.entry_title,
                author=r.author,
                published_at=_published(r),
                language=r.language,
                sitename=r.sitename,
                text=r.text,
                status=r.state,
                failure_reason=r.failure_reason,
                duplicate_of=r.duplicate_of_url,
                feeds=feeds.get(r.id, []),
                host=r.host,
                description=r.description,
                text_source=r.text_source,
                extractor_version=r.extractor_version,
                discovered_at=r.discovered_at.isoformat(),
                fetched_at=_iso(r.fetched_at),
                categories=list(r.categories or []),
                tags=list(r.tags or []),
                image=r.image,
                page_canonical_url=r.page_canonical_url,
                extractor=r.extractor,
                encoding=r.encoding,
                published_precision=precision_of(r),
                published_offset=r.published_offset,
            )
        last_id = ids[-1] or last_id


# an article's columns that a claim's row shows (its time, precision and outlet)
_ARTICLE_TIME = (
    article.c.url,
    article.c.host,
    article.c.published_at,
    article.c.published_precision,
    article.c.entry_published_at,
)


def claim_rows(session: Session | Connection, with_copies: bool = False) -> Iterator[ClaimRow]:
    """One row per claim, with its article's time and precision and its cluster's first
    seen. ``with_copies``: after each claim's row, one row per duplicate of its article
    (an outlet that ran the same text, ``copy_of`` the carrying article's URL), so the
    outlets repeating a claim can be counted from the export."""
    c, cl = claim.c, claimcluster.c
    last_id = 0
    while True:
        batch = session.execute(
            select(
                c.id,
                c.article_id,
                c.speaker,
                c.speaker_resolved,
                c.verb,
                c.text,
                c.kind,
                c.start,
                c.end,
                c.sentence,
                c.cluster_id,
                c.extractor_version,
                *_ARTICLE_TIME,
                cl.id.label("cluster_found"),
                cl.first_seen_at,
                cl.first_seen_precision,
            )
            .join(article, article.c.id == c.article_id)
            .outerjoin(claimcluster, cl.id == c.cluster_id)
            .where(c.id > last_id)
            .order_by(c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        copies: dict[int, list[Any]] = {}
        if with_copies:
            for dup in session.execute(
                select(article.c.duplicate_of_id, *_ARTICLE_TIME)
                .where(article.c.duplicate_of_id.in_({r.article_id for r in batch}))
                .order_by(article.c.id)
            ).all():
                copies.setdefault(dup.duplicate_of_id, []).append(dup)
        for r in batch:
            found = r.cluster_found is not None
            row = ClaimRow(
                id=r.id,
                article_url=r.url,
                speaker=r.speaker,
                speaker_resolved=r.speaker_resolved,
                verb=r.verb,
                text=r.text,
                kind=r.kind,
                start=r.start,
                end=r.end,
                sentence=r.sentence,
                cluster_id=r.cluster_id,
                published_at=_published(r),
                outlet=r.host,
                extractor_version=r.extractor_version,
                published_precision=precision_of(r),
                first_seen_at=_when(r.first_seen_at, r.first_seen_precision) if found else None,
                first_seen_precision=r.first_seen_precision if found else None,
            )
            yield row
            for dup in copies.get(r.article_id, []):
                yield row.model_copy(
                    update={
                        "article_url": dup.url,
                        "published_at": _published(dup),
                        "published_precision": precision_of(dup),
                        "outlet": dup.host,
                        "copy_of": r.url,
                    }
                )
            last_id = r.id


def write_rows(rows: Iterator[BaseModel], out: IO[str], fmt: str, fields: list[str]) -> int:
    n = 0
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row.model_dump(), ensure_ascii=False) + "\n")
            n += 1
        return n
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        data = row.model_dump()
        writer.writerow(
            {
                k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v
                for k, v in data.items()
            }
        )
        n += 1
    return n
