"""Who was first: the time order of articles, and a cluster's first seen.

One order decides both the canonical of a duplicate group (``worker.dedup.groups``) and
the first appearance of a claim cluster: an article sorts at ``published_sort_at`` (its
publication time; a date known only to the day sorts at the end of that UTC day, "some
time that day": see :mod:`worker.pages.published`), then by discovery (``discovered_at``,
the order claimwire found the articles), then by id. An article without a publication
time sorts at its feed entry's time, else at its discovery. Rows written before
migration 0009 have no ``published_sort_at`` and sort at ``published_at`` until they are
reprocessed.

So within one day a precise time beats a day-only date, two day-only dates of the same
day go by discovery, and a copy fetched before its original still sorts after it once
the original is read: the original becomes the group's canonical (the copy's claims go,
the original's are extracted) and every cluster's first seen is recounted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Select,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    update,
)
from sqlalchemy import select as sql_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from schemas.models import Article, Claim, ClaimCluster
from schemas.tables import claimcluster as claimcluster_table
from schemas.types import UTCDateTime
from worker.core.shown import precision_of


def order_key(article: Article) -> tuple[datetime, datetime, int]:
    """Sort key of "who was first" (module doc): publication (a day at its end), then
    discovery, then id."""
    at = (
        article.published_sort_at
        or article.published_at
        or article.entry_published_at
        or article.discovered_at
    )
    return (at, article.discovered_at, article.id or 0)


def order_at(article: Any = Article) -> Any:
    """:func:`order_key`'s first element in SQL, for ``article`` (the model or an alias)."""
    return func.coalesce(
        article.published_sort_at,
        article.published_at,
        article.entry_published_at,
        article.discovered_at,
    )


def shown_at(article: Any = Article) -> Any:
    """When an article was published, as shown: its time, else the feed entry's, else
    its discovery."""
    return func.coalesce(article.published_at, article.entry_published_at, article.discovered_at)


def page_at(article: Article) -> datetime:
    """When a cluster page lists ``article``: its publication time, else its discovery.
    Stored on each of its claims (``claim.article_at``), so that a cluster's repeats are
    read in this order from an index."""
    return article.published_at or article.discovered_at


def sync_claim_times(session: Session, article: Article) -> None:
    """Write :func:`page_at` on the claims of ``article``, after its time changed (a
    reprocess extracts the article again before its claims step replaces them)."""
    at = page_at(article)
    session.execute(
        update(Claim)
        .where(
            col(Claim.article_id) == article.id,
            or_(col(Claim.article_at).is_(None), col(Claim.article_at) != at),
        )
        .values(article_at=at)
        .execution_options(synchronize_session=False)
    )


def shown_precision(article: Any = Article) -> Any:
    """:func:`precision_of` in SQL."""
    return case(
        (article.published_at.is_not(None), article.published_precision),
        (article.entry_published_at.is_not(None), literal("minute")),
        else_=literal(None),
    )


@dataclass
class ClusterMember:
    claim_id: int
    article_id: int
    url: str
    host: str
    published_at: datetime | None
    speaker: str
    text: str
    copy: bool  # a duplicate of the article that carries the claim
    precision: str | None = None  # of published_at (None: the discovery time)
    copy_of: int | None = None  # the article carrying the claim, for a copy


def _article_rows(article: Any, carries: Any) -> Select[Any]:
    """One row per claim of the cluster for ``article`` (the model or an alias) joined to
    the claims through ``carries`` (its own claims, or its canonical's for a copy)."""
    return sql_select(
        col(article.id).label("aid"),
        col(article.host).label("host"),
        order_at(article).label("at"),
        col(article.discovered_at).label("disc"),
        shown_at(article).label("shown"),
        shown_precision(article).label("prec"),
    ).join(Claim, col(Claim.article_id) == carries)


def member_articles(cluster_id: int) -> CompoundSelect[Any]:
    """Every article carrying a claim of the cluster, and every duplicate of one, with
    its host, order time and discovery time: one row per claim."""
    dup = aliased(Article)
    carrying = _article_rows(Article, Article.id).where(col(Claim.cluster_id) == cluster_id)
    copies = _article_rows(dup, dup.duplicate_of_id).where(col(Claim.cluster_id) == cluster_id)
    return carrying.union_all(copies)


def cluster_members(session: Session, cluster_id: int) -> list[ClusterMember]:
    """Every article repeating the claim, its duplicates included, in time order (the
    module's order; one query)."""
    dup = aliased(Article)
    rows = session.exec(
        select(Claim, Article, dup)
        .join(Article, col(Article.id) == Claim.article_id)
        .outerjoin(dup, col(dup.duplicate_of_id) == Article.id)
        .where(Claim.cluster_id == cluster_id)
    ).all()
    members: list[tuple[tuple[datetime, datetime, int], ClusterMember]] = []
    seen: set[int] = set()
    for claim, art, copy in rows:
        assert claim.id is not None and art.id is not None
        arts = [(art, False)] if claim.id not in seen else []
        seen.add(claim.id)
        if copy is not None:
            arts.append((copy, True))
        for a, is_copy in arts:
            assert a.id is not None
            members.append(
                (
                    order_key(a),
                    ClusterMember(
                        claim.id,
                        a.id,
                        a.url,
                        a.host,
                        a.published_at or a.entry_published_at or a.discovered_at,
                        claim.speaker,
                        claim.text,
                        is_copy,
                        precision_of(a),
                        art.id if is_copy else None,
                    ),
                )
            )
    members.sort(key=lambda km: km[0])
    return [m for _, m in members]


def _members_of_clusters() -> CompoundSelect[Any]:
    """:func:`member_articles` for the clusters of the expanding bound parameter
    ``ids``, with each row's cluster (``cid``)."""
    dup = aliased(Article)
    ids: Any = bindparam("ids", expanding=True)
    carrying = _article_rows(Article, Article.id).add_columns(col(Claim.cluster_id).label("cid"))
    copies = _article_rows(dup, dup.duplicate_of_id).add_columns(col(Claim.cluster_id).label("cid"))
    return carrying.where(col(Claim.cluster_id).in_(ids)).union_all(
        copies.where(col(Claim.cluster_id).in_(ids))
    )


@cache
def refresh_statement() -> Select[Any]:
    """Per cluster of the expanding bound parameter ``ids`` that has a member: its id,
    its article and outlet counts and its first appearance (the module's order over its
    member articles, duplicates included: the first row of each cluster's window).

    Built once per process: building it anew for every cluster touched (an aliased
    article, a CTE, three scalar subqueries) cost more CPU than the claims step's spaCy
    parse (issue 16); SQLAlchemy finds the compiled form of one statement object in its
    cache at once. One statement for every cluster of a step, and their updates flushed
    together."""
    m = _members_of_clusters().cte("members")
    counts = (
        sql_select(
            m.c.cid,
            func.count(func.distinct(m.c.aid)).label("n_articles"),
            func.count(func.distinct(m.c.host)).label("n_outlets"),
        )
        .group_by(m.c.cid)
        .subquery("counts")
    )
    ranked = sql_select(
        m.c.cid,
        m.c.aid,
        m.c.shown,
        m.c.prec,
        func.row_number()
        .over(partition_by=m.c.cid, order_by=(m.c.at, m.c.disc, m.c.aid))
        .label("rn"),
    ).subquery("ranked")
    return sql_select(
        counts.c.cid,
        counts.c.n_articles,
        counts.c.n_outlets,
        ranked.c.aid,
        ranked.c.shown,
        ranked.c.prec,
    ).join(ranked, (ranked.c.cid == counts.c.cid) & (ranked.c.rn == 1))


# A refreshed cluster not held by the session is written by one statement for all of
# them (an ``executemany``), not loaded as an object to be flushed (issue 16).
_SET_REFRESHED = (
    update(claimcluster_table)
    .where(claimcluster_table.c.id == bindparam("cid"))
    .values(
        n_articles=bindparam("b_n_articles"),
        n_outlets=bindparam("b_n_outlets"),
        first_article_id=bindparam("b_first_article_id"),
        first_seen_at=bindparam("b_first_seen_at", type_=UTCDateTime()),
        first_seen_precision=bindparam("b_first_seen_precision"),
    )
)
_DELETE_EMPTY: Any = delete(claimcluster_table).where(
    claimcluster_table.c.id.in_(bindparam("ids", expanding=True))
)


def refresh_clusters(session: Session, cluster_ids: Iterable[int]) -> None:
    """Recount the articles and outlets of the clusters ``cluster_ids`` and find their
    first appearances (the module's order over their member articles, duplicates
    included), in one statement; a cluster left without claims is deleted. A cluster
    the session holds as an object is updated there; the others are written directly."""
    wanted = sorted(set(cluster_ids))
    if not wanted:
        return
    found = {row[0]: row[1:] for row in session.execute(refresh_statement(), {"ids": wanted}).all()}
    written: list[dict[str, Any]] = []
    empty: list[int] = []
    for cluster_id in wanted:
        held = session.identity_map.get(session.identity_key(ClaimCluster, cluster_id))
        row = found.get(cluster_id)
        if isinstance(held, ClaimCluster):
            if row is None:
                session.delete(held)
                continue
            n_articles, n_outlets, first_id, first_at, first_precision = row
            held.n_articles = n_articles
            held.n_outlets = n_outlets
            held.first_article_id = first_id
            held.first_seen_at = _aware(first_at)
            held.first_seen_precision = first_precision
        elif row is None:
            empty.append(cluster_id)
        else:
            n_articles, n_outlets, first_id, first_at, first_precision = row
            written.append(
                {
                    "cid": cluster_id,
                    "b_n_articles": n_articles,
                    "b_n_outlets": n_outlets,
                    "b_first_article_id": first_id,
                    "b_first_seen_at": _aware(first_at),
                    "b_first_seen_precision": first_precision,
                }
            )
    if written:
        session.execute(_SET_REFRESHED, written)
    if empty:
        session.execute(_DELETE_EMPTY, {"ids": empty})


def refresh_cluster(session: Session, cluster_id: int) -> None:
    """:func:`refresh_clusters` for one cluster."""
    refresh_clusters(session, (cluster_id,))


def _aware(value: Any) -> datetime | None:
    """A time read from a raw SQL expression (SQLite gives naive UTC, or text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


__all__ = [
    "ClusterMember",
    "cluster_members",
    "member_articles",
    "order_at",
    "order_key",
    "page_at",
    "precision_of",
    "refresh_cluster",
    "refresh_clusters",
    "refresh_statement",
    "shown_at",
    "shown_precision",
    "sync_claim_times",
]
