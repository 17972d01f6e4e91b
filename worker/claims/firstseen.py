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

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import CompoundSelect, Select, bindparam, case, func, literal, or_, update
from sqlalchemy import select as sql_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from schemas.models import Article, Claim, ClaimCluster
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


def member_articles(cluster_id: Any) -> CompoundSelect[Any]:
    """Every article carrying a claim of the cluster, and every duplicate of one, with
    its host, order time and discovery time: one row per claim. ``cluster_id``: an id,
    or a bound parameter (:func:`refresh_statement`)."""
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


@cache
def refresh_statement() -> Select[Any]:
    """A cluster's article and outlet counts and its first appearance (the module's
    order over its member articles, duplicates included), for the bound parameter
    ``cluster_id``. Built once per process: building it (an aliased article, a CTE,
    three scalar subqueries) cost more CPU than the claims step's spaCy parse when it
    was built anew for every cluster touched (issue 16); SQLAlchemy finds the compiled
    form of one statement object in its cache at once."""
    m = member_articles(bindparam("cluster_id")).cte("members")

    def first(column: Any) -> Any:
        return sql_select(column).order_by(m.c.at, m.c.disc, m.c.aid).limit(1).scalar_subquery()

    return sql_select(
        func.count(func.distinct(m.c.aid)),
        func.count(func.distinct(m.c.host)),
        first(m.c.aid),
        first(m.c.shown),
        first(m.c.prec),
    )


def refresh_cluster(session: Session, cluster_id: int) -> None:
    """Recount a cluster's articles and outlets and find its first appearance (the
    module's order over its member articles, duplicates included); a cluster left
    without claims is deleted."""
    cluster = session.get(ClaimCluster, cluster_id)
    if cluster is None:
        return
    n_articles, n_outlets, first_id, first_at, first_precision = session.execute(
        refresh_statement(), {"cluster_id": cluster_id}
    ).one()
    if not n_articles:
        session.delete(cluster)
        return
    cluster.n_articles = n_articles
    cluster.n_outlets = n_outlets
    cluster.first_article_id = first_id
    cluster.first_seen_at = _aware(first_at)
    cluster.first_seen_precision = first_precision


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
    "refresh_statement",
    "shown_at",
    "shown_precision",
    "sync_claim_times",
]
