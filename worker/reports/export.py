"""Export rows for `claimwire export` (JSON lines or CSV), streamed in batches."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from typing import IO

from pydantic import BaseModel
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from schemas.exports import ArticleRow, ClaimRow
from schemas.models import Article, Claim, ClaimCluster, Feed, Sighting
from worker.claims.firstseen import precision_of

BATCH = 500


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


def _when(v: datetime | None, precision: str | None) -> str | None:
    """A publication time: ISO 8601 in UTC, or the date alone when known to the day."""
    if v is None:
        return None
    return v.date().isoformat() if precision == "day" else v.isoformat()


def _published(a: Article) -> str | None:
    return _when(a.published_at or a.entry_published_at, precision_of(a))


def article_rows(session: Session) -> Iterator[ArticleRow]:
    canonical = aliased(Article)
    last_id = 0
    while True:
        batch = session.exec(
            select(Article, canonical.url)
            .outerjoin(canonical, col(canonical.id) == col(Article.duplicate_of_id))
            .where(col(Article.id) > last_id)
            .order_by(col(Article.id))
            .limit(BATCH)
        ).all()
        if not batch:
            return
        ids = [a.id for a, _ in batch]
        feeds: dict[int, list[str]] = {}
        for aid, url in session.exec(
            select(Sighting.article_id, Feed.url)
            .join(Feed, col(Feed.id) == Sighting.feed_id)
            .where(col(Sighting.article_id).in_(ids))
            .order_by(col(Sighting.id))
        ).all():
            feeds.setdefault(aid, []).append(url)
        for a, dup_url in batch:
            assert a.id is not None
            yield ArticleRow(
                id=a.id,
                url=a.url,
                title=a.title or a.entry_title,
                author=a.author,
                published_at=_published(a),
                language=a.language,
                sitename=a.sitename,
                text=a.text,
                status=a.state,
                failure_reason=a.failure_reason,
                duplicate_of=dup_url,
                feeds=feeds.get(a.id, []),
                host=a.host,
                description=a.description,
                text_source=a.text_source,
                extractor_version=a.extractor_version,
                discovered_at=a.discovered_at.isoformat(),
                fetched_at=_iso(a.fetched_at),
                categories=list(a.categories or []),
                tags=list(a.tags or []),
                image=a.image,
                page_canonical_url=a.page_canonical_url,
                extractor=a.extractor,
                encoding=a.encoding,
                published_precision=precision_of(a),
                published_offset=a.published_offset,
            )
        last_id = ids[-1] or last_id


def claim_rows(session: Session, with_copies: bool = False) -> Iterator[ClaimRow]:
    """One row per claim, with its article's time and precision and its cluster's first
    seen. ``with_copies``: after each claim's row, one row per duplicate of its article
    (an outlet that ran the same text, ``copy_of`` the carrying article's URL), so the
    outlets repeating a claim can be counted from the export."""
    last_id = 0
    while True:
        batch = session.exec(
            select(Claim, Article, ClaimCluster)
            .join(Article, col(Article.id) == Claim.article_id)
            .outerjoin(ClaimCluster, col(ClaimCluster.id) == Claim.cluster_id)
            .where(col(Claim.id) > last_id)
            .order_by(col(Claim.id))
            .limit(BATCH)
        ).all()
        if not batch:
            return
        copies: dict[int, list[Article]] = {}
        if with_copies:
            for dup in session.exec(
                select(Article)
                .where(col(Article.duplicate_of_id).in_({a.id for _, a, _ in batch}))
                .order_by(col(Article.id))
            ).all():
                assert dup.duplicate_of_id is not None
                copies.setdefault(dup.duplicate_of_id, []).append(dup)
        for c, a, cluster in batch:
            assert c.id is not None and a.id is not None
            row = ClaimRow(
                id=c.id,
                article_url=a.url,
                speaker=c.speaker,
                speaker_resolved=c.speaker_resolved,
                verb=c.verb,
                text=c.text,
                kind=c.kind,
                start=c.start,
                end=c.end,
                sentence=c.sentence,
                cluster_id=c.cluster_id,
                published_at=_published(a),
                outlet=a.host,
                extractor_version=c.extractor_version,
                published_precision=precision_of(a),
                first_seen_at=_when(cluster.first_seen_at, cluster.first_seen_precision)
                if cluster
                else None,
                first_seen_precision=cluster.first_seen_precision if cluster else None,
            )
            yield row
            for dup in copies.get(a.id, []):
                yield row.model_copy(
                    update={
                        "article_url": dup.url,
                        "published_at": _published(dup),
                        "published_precision": precision_of(dup),
                        "outlet": dup.host,
                        "copy_of": a.url,
                    }
                )
            last_id = c.id


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
