"""The read queries of the web view: every list (claims, clusters, speakers, articles,
feeds, jobs) with its filters, a stable order and keyset pagination, and the detail of
one cluster, speaker or article. Pages, the JSON API and the CSV/JSONL downloads all
read through here, so a download holds exactly what the list shows.

A page is ``(rows, next_cursor)``. A cursor is opaque to clients: the base64 of the
list's name and the sort key of the last row shown (the id breaks ties), checked on
the way back in (:class:`BadCursor`). Domain functions take a session and never commit.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from schemas.models import Article, Claim, ClaimCluster, DupGroup, Feed, Job
from worker.claims.fulltext import (
    ClaimFilter,
    claim_hit,
    claim_key,
    find_claims,
    published_expr,
)
from worker.core.settings import Settings, mask_secrets
from worker.feeds.subscriptions import feed_row
from worker.jobs import lifecycle

MAX_ID = 2**63 - 1


class BadCursor(ValueError):
    """A cursor that this list did not hand out."""


class NotFound(LookupError):
    """No such cluster, speaker, article, feed or job."""


def encode_cursor(kind: str, key: list[Any]) -> str:
    raw = json.dumps([kind, *key], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None, types: tuple[type, ...]) -> list[Any] | None:
    """The sort key in ``cursor``, checked against the list ``kind`` and the key's
    types; None for no cursor (the first page)."""
    if cursor is None or cursor == "":
        return None
    if len(cursor) > 512:
        raise BadCursor("cursor is too long: use the next_cursor of a response as it is")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("malformed cursor: use the next_cursor of a response as it is") from None
    if not isinstance(value, list) or len(value) != len(types) + 1 or value[0] != kind:
        raise BadCursor(f"this cursor is not one of the {kind} list")
    key = value[1:]
    for item, typ in zip(key, types, strict=True):
        if typ is int and (
            not isinstance(item, int) or isinstance(item, bool) or not 0 <= item <= MAX_ID
        ):
            raise BadCursor("malformed cursor: use the next_cursor of a response as it is")
        if typ is str and not isinstance(item, str):
            raise BadCursor("malformed cursor: use the next_cursor of a response as it is")
    return key


Page = tuple[list[dict[str, Any]], str | None]


def _page(
    rows: list[dict[str, Any]], limit: int, kind: str, key: Callable[[Any], list[Any]]
) -> Page:
    """``rows`` were fetched with ``limit + 1``: one more means another page."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(kind, key(rows[-1]))
    return rows, None


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v else None


# ------------------------------------------------------------------------------ claims


def claims_page(session: Session, f: ClaimFilter, cursor: str | None, limit: int) -> Page:
    """Claims, best match first for a search, newest first within (see
    :func:`worker.claims.fulltext.find_claims`); the cursor is ``[tier, id]``."""
    key = decode_cursor("claims", cursor, (int, int))
    after = (key[0], key[1]) if key else None
    rows = find_claims(session, f, after=after, limit=limit + 1)
    return _page(rows, limit, "claims", lambda r: list(claim_key(r)))


# ---------------------------------------------------------------------------- clusters


@dataclass(frozen=True)
class ClusterFilter:
    speaker: str | None = None  # the speaker key (exact) or words of the name
    min_outlets: int | None = None
    since: datetime | None = None  # first seen at or after
    until: datetime | None = None  # first seen before


def _speaker_key(name: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", name.lower()))


def cluster_row(c: ClaimCluster) -> dict[str, Any]:
    return {
        "id": c.id,
        "speaker": c.speaker,
        "speaker_key": c.speaker_key,
        "text": c.text,
        "first_seen_at": _iso(c.first_seen_at),
        "n_articles": c.n_articles,
        "n_outlets": c.n_outlets,
    }


def clusters_page(session: Session, f: ClusterFilter, cursor: str | None, limit: int) -> Page:
    """Clusters, newest first (by id)."""
    key = decode_cursor("clusters", cursor, (int,))
    query = select(ClaimCluster)
    if key:
        query = query.where(col(ClaimCluster.id) < key[0])
    if f.speaker and f.speaker.strip():
        from worker.claims.clustering import speaker_key

        wanted = f.speaker.strip()
        query = query.where(
            col(ClaimCluster.speaker_key).in_({wanted, speaker_key(wanted), _speaker_key(wanted)})
        )
    if f.min_outlets is not None and f.min_outlets > 1:
        query = query.where(col(ClaimCluster.n_outlets) >= f.min_outlets)
    if f.since is not None:
        query = query.where(col(ClaimCluster.first_seen_at) >= f.since)
    if f.until is not None:
        query = query.where(col(ClaimCluster.first_seen_at) < f.until)
    query = query.order_by(col(ClaimCluster.id).desc()).limit(limit + 1)
    rows = [cluster_row(c) for c in session.exec(query).all()]
    return _page(rows, limit, "clusters", lambda r: [r["id"]])


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def cluster_detail(session: Session, cluster_id: int) -> dict[str, Any]:
    """How a claim spread: the cluster, its first appearance, every repeat in time order
    (article copies found by dedup included) with its wording, verbatim or reworded."""
    from worker.claims.search import cluster_report

    report = cluster_report(session, cluster_id)
    if report is None:
        raise NotFound(f"no claim cluster with id {cluster_id}")
    cluster = session.get(ClaimCluster, cluster_id)
    report["speaker_key"] = cluster.speaker_key if cluster else ""
    members = report["members"]
    claim_ids = {m["claim_id"] for m in members}
    claims = {
        c.id: c for c in session.exec(select(Claim).where(col(Claim.id).in_(claim_ids))).all()
    }
    article_ids = {m["article_id"] for m in members}
    titles = dict(
        session.exec(
            select(Article.id, func.coalesce(Article.title, Article.entry_title)).where(
                col(Article.id).in_(article_ids)
            )
        ).all()
    )
    first_words = _norm(members[0]["text"]) if members else ""
    for i, m in enumerate(members):
        claim = claims.get(m["claim_id"])
        m["verb"] = claim.verb if claim else None
        m["kind"] = claim.kind if claim else None
        m["sentence"] = claim.sentence if claim else None
        m["start"] = claim.start if claim else None
        m["end"] = claim.end if claim else None
        m["title"] = titles.get(m["article_id"])
        m["first"] = i == 0
        if m["copy"]:
            m["wording"] = "copy"  # the whole article is a copy (dedup)
        elif i == 0 or _norm(m["text"]) == first_words:
            m["wording"] = "verbatim"
        else:
            m["wording"] = "reworded"
    report["outlets"] = sorted({m["outlet"] for m in members})
    return report


# ---------------------------------------------------------------------------- speakers


def speakers_page(session: Session, name: str | None, cursor: str | None, limit: int) -> Page:
    """Speakers of clusters, by key (alphabetical), with their number of clusters."""
    key = decode_cursor("speakers", cursor, (str,))
    query: Any = sa_select(  # type: ignore[call-overload]
        ClaimCluster.speaker_key,
        func.max(ClaimCluster.speaker),
        func.count(),
        func.sum(ClaimCluster.n_articles),
        func.max(ClaimCluster.n_outlets),
        func.min(ClaimCluster.first_seen_at),
        func.max(ClaimCluster.first_seen_at),
    ).group_by(col(ClaimCluster.speaker_key))
    if key:
        query = query.where(col(ClaimCluster.speaker_key) > key[0])
    if name and name.strip():
        wanted = _speaker_key(name)
        if wanted:
            query = query.where(col(ClaimCluster.speaker_key).contains(wanted, autoescape=True))
    query = query.order_by(col(ClaimCluster.speaker_key)).limit(limit + 1)
    rows = [
        {
            "key": k,
            "speaker": shown,
            "clusters": int(n),
            "articles": int(arts or 0),
            "max_outlets": int(outlets or 0),
            "first_seen_at": _iso(first),
            "last_seen_at": _iso(last),
        }
        for k, shown, n, arts, outlets, first, last in session.exec(query).all()
    ]
    return _page(rows, limit, "speakers", lambda r: [r["key"]])


MAX_SPEAKER_CLUSTERS = 2000


def speaker_detail(session: Session, key: str) -> dict[str, Any]:
    """A speaker's clusters over time (first seen, oldest first; the latest
    :data:`MAX_SPEAKER_CLUSTERS`)."""
    clusters = list(
        session.exec(
            select(ClaimCluster)
            .where(col(ClaimCluster.speaker_key) == key)
            .order_by(col(ClaimCluster.first_seen_at).desc(), col(ClaimCluster.id).desc())
            .limit(MAX_SPEAKER_CLUSTERS + 1)
        ).all()
    )
    if not clusters:
        raise NotFound(f"no speaker with key {key!r}")
    cut = len(clusters) > MAX_SPEAKER_CLUSTERS
    clusters = clusters[:MAX_SPEAKER_CLUSTERS]
    clusters.reverse()
    total = session.exec(
        select(func.count()).select_from(ClaimCluster).where(ClaimCluster.speaker_key == key)
    ).one()
    return {
        "key": key,
        "speaker": clusters[-1].speaker,
        "n_clusters": int(total),
        "cut": cut,
        "clusters": [cluster_row(c) for c in clusters],
    }


# ---------------------------------------------------------------------------- articles


@dataclass(frozen=True)
class ArticleFilter:
    outlet: str | None = None
    state: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def article_row(a: Article) -> dict[str, Any]:
    return {
        "id": a.id,
        "url": mask_secrets(a.url),
        "title": a.title or a.entry_title,
        "author": a.author,
        "outlet": a.host,
        "published_at": _iso(a.published_at or a.entry_published_at),
        "discovered_at": _iso(a.discovered_at),
        "state": a.state,
        "language": a.language,
        "failure_reason": mask_secrets(a.failure_reason or "") or None,
        "duplicate_of_id": a.duplicate_of_id,
        "dup_group_id": a.dup_group_id,
    }


def articles_page(session: Session, f: ArticleFilter, cursor: str | None, limit: int) -> Page:
    """Articles, newest found first (by id)."""
    key = decode_cursor("articles", cursor, (int,))
    query = select(Article)
    if key:
        query = query.where(col(Article.id) < key[0])
    if f.outlet:
        query = query.where(col(Article.host) == f.outlet.strip().lower())
    if f.state:
        query = query.where(col(Article.state) == f.state)
    if f.since is not None:
        query = query.where(published_expr() >= f.since)
    if f.until is not None:
        query = query.where(published_expr() < f.until)
    query = query.order_by(col(Article.id).desc()).limit(limit + 1)
    rows = [article_row(a) for a in session.exec(query).all()]
    return _page(rows, limit, "articles", lambda r: [r["id"]])


MAX_ARTICLE_CLAIMS = 500
MAX_GROUP_SHOWN = 200


def article_detail(session: Session, article_id: int) -> dict[str, Any]:
    """An article: metadata, clean text, its claims (offsets into the text), its
    duplicate group and the feeds that listed it. Never the raw page."""
    from schemas.models import Sighting

    a = session.get(Article, article_id)
    if a is None:
        raise NotFound(f"no article with id {article_id}")
    row = article_row(a)
    row.update(
        {
            "text": a.text,
            "description": a.description,
            "sitename": a.sitename,
            "categories": list(a.categories or []),
            "tags": list(a.tags or []),
            "page_canonical_url": a.page_canonical_url,
            "final_url": mask_secrets(a.final_url or "") or None,
            "fetched_at": _iso(a.fetched_at),
            "extractor_version": a.extractor_version,
            "text_source": a.text_source,
            "claims_status": a.claims_status,
        }
    )
    claims = session.exec(
        select(Claim, ClaimCluster)
        .outerjoin(ClaimCluster, col(ClaimCluster.id) == col(Claim.cluster_id))
        .where(Claim.article_id == article_id)
        .order_by(col(Claim.start), col(Claim.id))
        .limit(MAX_ARTICLE_CLAIMS)
    ).all()
    row["claims"] = [claim_hit(c, a, cl) for c, cl in claims]
    group: list[dict[str, Any]] = []
    if a.dup_group_id is not None:
        canonical = session.exec(
            select(DupGroup.canonical_article_id).where(DupGroup.id == a.dup_group_id)
        ).first()
        for other in session.exec(
            select(Article)
            .where(Article.dup_group_id == a.dup_group_id)
            .order_by(col(Article.id))
            .limit(MAX_GROUP_SHOWN)
        ).all():
            group.append({**article_row(other), "canonical": other.id == canonical})
    row["duplicate_group"] = group
    feed = aliased(Feed)
    row["feeds"] = [
        {"id": fid, "url": mask_secrets(url), "title": title}
        for fid, url, title in session.exec(
            select(feed.id, feed.url, feed.title)
            .join(Sighting, col(Sighting.feed_id) == feed.id)
            .where(Sighting.article_id == article_id)
            .order_by(col(Sighting.id))
        ).all()
    ]
    return row


# ------------------------------------------------------------------------------- feeds


def masked_feed_row(feed: Feed) -> dict[str, Any]:
    row = feed_row(feed)
    row["url"] = mask_secrets(str(row["url"]))
    row["last_error"] = mask_secrets(str(row["last_error"] or "")) or None
    return row


def feeds_page(session: Session, state: str | None, cursor: str | None, limit: int) -> Page:
    """Feeds by id, with their health."""
    key = decode_cursor("feeds", cursor, (int,))
    query = select(Feed)
    if key:
        query = query.where(col(Feed.id) > key[0])
    if state:
        query = query.where(col(Feed.state) == state)
    query = query.order_by(col(Feed.id)).limit(limit + 1)
    rows = [masked_feed_row(f) for f in session.exec(query).all()]
    return _page(rows, limit, "feeds", lambda r: [r["id"]])


# -------------------------------------------------------------------------------- jobs


def job_detail(session: Session, job: Job, settings: Settings) -> dict[str, Any]:
    row = lifecycle.job_row(job, lifecycle.progress(session, int(job.id or 0), settings))
    row["last_error"] = mask_secrets(row["last_error"] or "") or None
    return row


def jobs_page(
    session: Session, state: str | None, cursor: str | None, limit: int, settings: Settings
) -> Page:
    """Jobs, newest first, with their progress."""
    key = decode_cursor("jobs", cursor, (int,))
    query = select(Job)
    if key:
        query = query.where(col(Job.id) < key[0])
    if state:
        query = query.where(col(Job.state) == state)
    query = query.order_by(col(Job.id).desc()).limit(limit + 1)
    rows = [job_detail(session, j, settings) for j in session.exec(query).all()]
    return _page(rows, limit, "jobs", lambda r: [r["id"]])


# --------------------------------------------------------------------------- downloads

EXPORT_BATCH = 1000


def iterate(
    fetch: Callable[[Session, str | None, int], Page],
    open_session: Callable[[], Any],
) -> Iterator[dict[str, Any]]:
    """Every row of a list, page after page (each page in its own short transaction,
    so memory stays constant and no transaction stays open for the whole download)."""
    cursor: str | None = None
    while True:
        with open_session() as session:
            rows, cursor = fetch(session, cursor, EXPORT_BATCH)
        yield from rows
        if cursor is None:
            return
