"""`claimwire claims search`: stored claims by speaker, words, time and outlet, newest
first (:mod:`worker.claims.search` re-exports :func:`search_claims`).

SQLAlchemy Core over :mod:`schemas.tables`, on a plain connection
(:func:`worker.core.db.reading`) or an ORM session alike: a search by speaker, time or
outlet imports neither the ORM nor the SQLModel classes. ``--text`` narrows with the
full-text index (:func:`worker.claims.fulltext.text_condition`), which loads them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, func, literal, or_, select, union_all
from sqlalchemy.engine import Connection

from schemas.tables import article, claim, claimcluster
from worker.core.shown import precision_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["search_claims"]


def _py_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _lower(session: Session | Connection) -> Any:
    """SQL ``lower()`` that folds every letter: SQLite's own folds ASCII only, so
    ``--speaker Özdemir`` found nobody there (PostgreSQL's follows the database's
    Unicode locale)."""
    conn = session if isinstance(session, Connection) else session.connection()
    if conn.dialect.name == "postgresql":
        return func.lower
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.create_function("claimwire_lower", 1, _py_lower, deterministic=True)
    return func.claimwire_lower


def _text_condition(session: Session | Connection, words: str) -> Any:
    """``claim.id IN (...)``: the claims whose content has every word of ``words``
    starting one of its words, by the full-text index. The index's condition is built
    on the ORM's ``claim`` table: it stays inside its own subquery, never mixed with
    :data:`schemas.tables.claim` in one FROM."""
    from sqlmodel import Session as ModelSession
    from sqlmodel import col

    from schemas.models import Claim
    from worker.claims.fulltext import text_condition

    if isinstance(session, Connection):
        with ModelSession(bind=session) as orm:  # on the same connection and transaction
            condition = text_condition(orm, words, content_only=True)
    else:
        condition = text_condition(session, words, content_only=True)  # type: ignore[arg-type]
    if condition is None:
        return None
    return claim.c.id.in_(select(col(Claim.id)).where(condition))


def search_claims(
    session: Session | Connection,
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
    cluster spans at least that many outlets.

    With ``outlet``, an outlet that ran a claim in a verbatim copy (a duplicate of the
    article that carries the claim, counted among its cluster's outlets) is found too:
    one row for the copy, its outlet, URL and time, ``copy_of`` the carrying article's
    URL (as ``claimwire export claims --with-copies`` gives it)."""
    if outlet and outlet.strip():
        own = _claims_query(session, speaker, words, since, until, outlet, min_outlets, None)
        copies = _claims_query(
            session, speaker, words, since, until, outlet, min_outlets, article.alias("carrier")
        )
        both = union_all(own, copies).subquery()
        query: Any = select(both).order_by(both.c.published.desc(), both.c.id).limit(limit)
    else:
        query = _claims_query(session, speaker, words, since, until, None, min_outlets, None)
        query = query.order_by(query.selected_columns.published.desc(), claim.c.id).limit(limit)
    rows = []
    for r in session.execute(query).all():
        when = r.published_at or r.entry_published_at
        found = r.cluster_found is not None
        rows.append(
            {
                "id": r.id,
                "published_at": when.isoformat() if when else None,
                "outlet": r.host,
                "article_url": r.url,
                "speaker": r.speaker_resolved or r.speaker,
                "verb": r.verb,
                "kind": r.kind,
                "text": r.text,
                "cluster_id": r.cluster_id,
                "cluster_articles": r.n_articles if found else 1,
                "cluster_outlets": r.n_outlets if found else 1,
                "cluster_first_seen": (
                    r.first_seen_at.isoformat() if found and r.first_seen_at else None
                ),
                "cluster_first_seen_precision": r.first_seen_precision if found else None,
                "published_precision": precision_of(r),
                "copy_of": r.copy_of,
            }
        )
    return rows


def _claims_query(
    session: Session | Connection,
    speaker: str | None,
    words: str | None,
    since: datetime | None,
    until: datetime | None,
    outlet: str | None,
    min_outlets: int | None,
    carrier: Any,
) -> Any:
    """:func:`search_claims`'s rows, unordered. ``carrier`` None: each claim in the
    article that carries it; else (an alias of the article table) each claim once per
    verbatim copy of its article, the copy's outlet, URL and time shown, the carrying
    article's URL as ``copy_of``."""
    c, cl = claim.c, claimcluster.c
    a = article.c
    lower = _lower(session)
    shown = a  # the article whose outlet, URL and time the row shows
    query = select(
        c.id,
        c.speaker,
        c.speaker_resolved,
        c.verb,
        c.kind,
        c.text,
        c.cluster_id,
        shown.host,
        shown.url,
        shown.published_at,
        shown.published_precision,
        shown.entry_published_at,
        cl.id.label("cluster_found"),
        cl.n_articles,
        cl.n_outlets,
        cl.first_seen_at,
        cl.first_seen_precision,
        func.coalesce(shown.published_at, shown.entry_published_at, shown.discovered_at).label(
            "published"
        ),
        (carrier.c.url if carrier is not None else literal(None, String)).label("copy_of"),
    )
    if carrier is None:
        query = query.select_from(claim.join(article, a.id == c.article_id))
    else:
        # the claim's article is the carrier; the row shows its copy (``article``)
        query = query.select_from(
            claim.join(carrier, carrier.c.id == c.article_id).join(
                article, a.duplicate_of_id == carrier.c.id
            )
        )
    query = query.outerjoin(claimcluster, cl.id == c.cluster_id)
    if speaker:
        # autoescape: "%" and "_" typed by the user are characters, not LIKE wildcards
        name = speaker.lower()
        query = query.where(
            or_(
                lower(c.speaker).contains(name, autoescape=True),
                lower(c.speaker_resolved).contains(name, autoescape=True),
            )
        )
    if words and words.strip():
        # the full-text index (worker.claims.fulltext) narrows to claims with words
        # starting so; the literal match below still decides ("50%" is not "50")
        condition = _text_condition(session, words)
        if condition is not None:
            query = query.where(condition)
    for word in (words or "").split():
        query = query.where(lower(c.text).contains(word.lower(), autoescape=True))
    published = func.coalesce(a.published_at, a.entry_published_at, a.discovered_at)
    if since:
        query = query.where(published >= since)
    if until:
        query = query.where(published <= until)
    if outlet and outlet.strip():
        host = outlet.strip().lower().removeprefix("www.")
        query = query.where(
            or_(
                lower(a.host) == host,
                lower(a.host) == f"www.{host}",
                lower(a.host).endswith(f".{host}", autoescape=True),
            )
        )
    if min_outlets and min_outlets > 1:
        query = query.where(cl.n_outlets >= min_outlets)
    return query
