"""Queries over stored claims: `claimwire claims search` (:mod:`worker.claims.stored`,
re-exported here) and `claimwire claims cluster`."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session

from schemas.models import Article, ClaimCluster
from worker.claims.stored import search_claims as search_claims


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
