"""Queries over stored claims: `claimwire claims search`."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from schemas.models import Article, Claim, ClaimCluster
from worker.claims.firstseen import precision_of


def _py_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _lower(session: Session) -> Any:
    """SQL ``lower()`` that folds every letter: SQLite's own folds ASCII only, so
    ``--speaker Özdemir`` found nobody there (PostgreSQL's follows the database's
    Unicode locale)."""
    from worker.core.db import is_postgres

    if is_postgres(session):
        return func.lower
    raw = session.connection().connection.driver_connection
    assert raw is not None
    raw.create_function("claimwire_lower", 1, _py_lower, deterministic=True)
    return func.claimwire_lower


def search_claims(
    session: Session,
    *,
    speaker: str | None = None,
    words: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    outlet: str | None = None,
    min_outlets: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Stored claims, newest first. ``since``/``until`` bound the publication time (both
    included), ``outlet`` is the article's host or a domain it ends with
    (``example.org`` finds ``news.example.org``), ``min_outlets`` keeps claims whose
    cluster spans at least that many outlets."""
    lower = _lower(session)
    query = (
        select(Claim, Article, ClaimCluster)
        .join(Article, col(Article.id) == Claim.article_id)
        .outerjoin(ClaimCluster, col(ClaimCluster.id) == Claim.cluster_id)
    )
    if speaker:
        # autoescape: "%" and "_" typed by the user are characters, not LIKE wildcards
        name = speaker.lower()
        query = query.where(
            or_(
                lower(Claim.speaker).contains(name, autoescape=True),
                lower(Claim.speaker_resolved).contains(name, autoescape=True),
            )
        )
    if words and words.strip():
        # the full-text index (worker.claims.fulltext) narrows to claims with words
        # starting so; the literal match below still decides ("50%" is not "50")
        from worker.claims.fulltext import text_condition

        condition = text_condition(session, words, content_only=True)
        if condition is not None:
            query = query.where(condition)
    for word in (words or "").split():
        query = query.where(lower(Claim.text).contains(word.lower(), autoescape=True))
    published = func.coalesce(
        Article.published_at, Article.entry_published_at, Article.discovered_at
    )
    if since:
        query = query.where(published >= since)
    if until:
        query = query.where(published <= until)
    if outlet and outlet.strip():
        host = outlet.strip().lower().removeprefix("www.")
        query = query.where(
            or_(
                lower(Article.host) == host,
                lower(Article.host) == f"www.{host}",
                lower(Article.host).endswith(f".{host}", autoescape=True),
            )
        )
    if min_outlets and min_outlets > 1:
        query = query.where(col(ClaimCluster.n_outlets) >= min_outlets)
    query = query.order_by(published.desc(), col(Claim.id)).limit(limit)
    rows = []
    for claim, art, cluster in session.exec(query).all():
        when = art.published_at or art.entry_published_at
        rows.append(
            {
                "id": claim.id,
                "published_at": when.isoformat() if when else None,
                "outlet": art.host,
                "article_url": art.url,
                "speaker": claim.speaker_resolved or claim.speaker,
                "verb": claim.verb,
                "kind": claim.kind,
                "text": claim.text,
                "cluster_id": claim.cluster_id,
                "cluster_articles": cluster.n_articles if cluster else 1,
                "cluster_outlets": cluster.n_outlets if cluster else 1,
                "cluster_first_seen": (
                    cluster.first_seen_at.isoformat() if cluster and cluster.first_seen_at else None
                ),
                "cluster_first_seen_precision": cluster.first_seen_precision if cluster else None,
                "published_precision": precision_of(art),
            }
        )
    return rows


def cluster_report(session: Session, cluster_id: int) -> dict[str, Any] | None:
    """One cluster as users ask about it: who, first seen where and when (with the
    time's precision), how many articles and outlets, and every article repeating it in
    time order (worker.claims.firstseen), each marked ``first``, ``verbatim copy`` (a
    duplicate found by dedup, ``copy_of`` the article it copies) or ``rewording`` (an
    article of its own carrying the claim in its words). None when there is no such
    cluster."""
    from worker.claims.firstseen import cluster_members

    cluster = session.get(ClaimCluster, cluster_id)
    if cluster is None:
        return None
    first = session.get(Article, cluster.first_article_id) if cluster.first_article_id else None
    members = cluster_members(session, cluster_id)
    hosts = {m.article_id: m.host for m in members}
    urls = {m.article_id: m.url for m in members}
    return {
        "cluster_id": cluster_id,
        "speaker": cluster.speaker,
        # the wording of the first seen repeat (the cluster's own text is its founder's:
        # the first claim stored, which need not be the first published)
        "text": members[0].text if members else cluster.text,
        "first_seen_at": cluster.first_seen_at.isoformat() if cluster.first_seen_at else None,
        "first_seen_precision": cluster.first_seen_precision,
        "first_outlet": first.host if first else None,
        "first_url": first.url if first else None,
        "n_articles": cluster.n_articles,
        "n_outlets": cluster.n_outlets,
        "members": [
            {
                "published_at": m.published_at.isoformat() if m.published_at else None,
                "published_precision": m.precision,
                "outlet": m.host,
                "url": m.url,
                "speaker": m.speaker,
                "text": m.text,
                "claim_id": m.claim_id,
                "article_id": m.article_id,
                "copy": m.copy,
                "copy_of": urls.get(m.copy_of) if m.copy_of is not None else None,
                "copy_of_outlet": hosts.get(m.copy_of) if m.copy_of is not None else None,
                "repeat": (
                    "first"
                    if i == 0
                    else "verbatim copy"
                    if m.copy
                    else "same words"
                    if _words(m.text) == _words(members[0].text)
                    else "rewording"
                ),
            }
            for i, m in enumerate(members)
        ],
    }


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())
