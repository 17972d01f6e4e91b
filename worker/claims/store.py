"""The claims step of the pipeline: extract, replace and cluster an article's claims.

A duplicate article is not read again: its group's canonical article carries the
claims, and the copy counts as one more outlet repeating them (see clustering). A copy
that adds lines to its canonical (a later, longer version of the story) carries the
claims of those lines only (:mod:`worker.claims.copies`), but for those that join a
cluster the canonical carries (the copy counts there already).
Replacing is idempotent: the article's old claims are deleted and the new ones
inserted in the same transaction.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from sqlalchemy import bindparam, delete, exists, insert, select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from schemas.models import Article, ArticleState, Claim, ClaimCluster
from schemas.tables import claim as claim_table
from schemas.types import utcnow
from worker.claims import clustering
from worker.claims.clustering import assign_clusters
from worker.claims.copies import added_spans, within
from worker.claims.firstseen import page_at, refresh_clusters
from worker.core.settings import Settings
from worker.core.states import set_state

# The step's statements, built once with bound values (issue 16).
# the clusters of an article's claims
_CLUSTERS_OF = select(claim_table.c.cluster_id).where(
    claim_table.c.article_id == bindparam("article_id")
)
# the claims of an article's copies in the clusters ``mine``
_REDUNDANT = (
    select(Claim)
    .join(Article, col(Article.id) == Claim.article_id)
    .where(
        col(Article.duplicate_of_id) == bindparam("article_id"),
        col(Claim.cluster_id).in_(bindparam("mine", expanding=True)),
    )
)


def _english(article: Article) -> bool:
    """The page's language tag when it has one; otherwise a look at the text itself."""
    if article.language:
        return article.language.lower().replace("_", "-").split("-")[0] == "en"
    from worker.claims import is_english

    return is_english(article.text or "")


def _added_lines(session: Session, article: Article, settings: Settings) -> list[tuple[int, int]]:
    """The lines a copy adds to its canonical (:func:`~worker.claims.copies.added_spans`),
    when its claims would be read at all; else none."""
    if not settings.extract_claims or not article.text or not _english(article):
        return []
    canonical = session.get(Article, article.duplicate_of_id)
    if canonical is None or not canonical.text:
        return []
    return added_spans(article.text, canonical.text)


def replace_claims(session: Session, article: Article, settings: Settings) -> int:
    """Extract the claims of ``article`` anew; return how many were stored."""
    from worker.claims import EXTRACTOR_VERSION, extract_claims, load_nlp

    assert article.id is not None
    # The parse first, before this transaction's first write: on SQLite the write lock
    # is taken by the first write and held to the commit, and every other step of every
    # process waited for it while spaCy parsed (issue 16). It reads only the article.
    status: str | None = None
    added: list[tuple[int, int]] = []
    if article.duplicate_of_id is not None:
        status = "duplicate"
        added = _added_lines(session, article, settings)
        if added:
            found = [
                c
                for c in extract_claims(article.text or "", load_nlp(settings.spacy_model))
                if within(added, c.start, c.end)
            ]
    elif not settings.extract_claims:
        status = "disabled"
    elif not article.text:
        status = "no_text"
    elif not _english(article):
        status = "skipped_language"
    else:
        found = extract_claims(article.text, load_nlp(settings.spacy_model))
    # the old claims go, their clusters named by the same statement
    # (built here with its value: the ORM removes the deleted claims it holds, which
    # it finds by evaluating the condition with that value)
    gone = delete(Claim).where(col(Claim.article_id) == article.id)
    old_clusters = {
        c for c in session.scalars(gone.returning(col(Claim.cluster_id))).all() if c is not None
    }
    if status is not None and not added:
        stored: list[Claim] = []
    else:
        rows: dict[tuple[int, int, str], dict[str, object]] = {}
        at = page_at(article)
        now = utcnow()
        for c in found:
            key = (c.start, c.end, c.verb)
            if key in rows:
                continue
            rows[key] = {
                "article_id": article.id,
                "speaker": c.speaker,
                "speaker_resolved": c.speaker_resolved,
                "verb": c.verb,
                "kind": c.kind,
                "text": c.text,
                "start": c.start,
                "end": c.end,
                "sentence": c.sentence,
                "extractor_version": EXTRACTOR_VERSION,
                "article_at": at,
                "created_at": now,
            }
        # One INSERT for all of them (an ORM bulk insert returning the new rows as
        # objects of the session): the unit of work's flush inserts one row a statement
        # on SQLite, which cannot return new ids in the order of the rows. The rows come
        # back in any order; the span key (unique per article) puts them in the claims'.
        by_key = {
            (claim.start, claim.end, claim.verb): claim
            for claim in (
                session.scalars(insert(Claim).returning(Claim), list(rows.values())).all()
                if rows
                else []
            )
        }
        stored = [by_key[key] for key in rows]
    touched = assign_clusters(session, article, stored, settings.claim_cluster_threshold)
    again = old_clusters - touched
    if article.duplicate_of_id is not None:
        # One more outlet repeats the canonical article's claims.
        theirs = {
            c
            for c in session.scalars(_CLUSTERS_OF, {"article_id": article.duplicate_of_id})
            if c is not None
        }
        again |= theirs
        # An added line repeating a statement the canonical carries: the copy is in
        # that cluster already, as a copy.
        for claim in [c for c in stored if c.cluster_id in theirs]:
            session.delete(claim)
            stored.remove(claim)
        session.flush()
    elif stored:
        # the same for the claims its copies carry (kept when this article took over
        # as the canonical, or extracted before): one cluster, counted once
        mine = sorted({c.cluster_id for c in stored if c.cluster_id is not None})
        redundant = (
            session.scalars(_REDUNDANT, {"article_id": article.id, "mine": mine}).all()
            if mine
            else []
        )
        again |= {c.cluster_id for c in redundant if c.cluster_id is not None}
        for claim in redundant:
            session.delete(claim)
        session.flush()
    refresh_clusters(session, again)
    # The article's own columns last: set before the clustering, they were flushed in
    # one UPDATE each by the queries between (three UPDATEs of the row a step, not one).
    article.claims_version = EXTRACTOR_VERSION
    article.claims_status = status or "extracted"
    return len(stored)


def process_claims(session: Session, article_id: int, settings: Settings) -> bool:
    """The last step: a deduplicated article gets its claims and becomes processed."""
    article = session.get(Article, article_id)
    if article is None or article.state != ArticleState.deduplicated:
        return False
    replace_claims(session, article, settings)
    article.processed_at = utcnow()
    set_state(article, ArticleState.processed)
    return True


def recluster(session: Session, settings: Settings, keys: AbstractSet[str] | None = None) -> int:
    """Cluster the stored claims of speaker ``keys`` (all when ``None``) again in an
    order that does not depend on when the articles arrived
    (:func:`worker.claims.clustering.recluster`), then drop each claim a copy carries in
    a cluster its canonical carries too (the copy counts there as a copy, as the claims
    step decides when it reads either of them). Returns the clusters made. Nothing is
    committed."""
    made = clustering.recluster(session, settings.claim_cluster_threshold, keys)
    theirs = aliased(Claim)
    copy = aliased(Article)
    redundant = (
        select(Claim)
        .join(copy, col(copy.id) == col(Claim.article_id))
        .where(col(copy.duplicate_of_id).is_not(None), col(Claim.cluster_id).is_not(None))
        .where(
            exists()
            .where(
                col(theirs.article_id) == col(copy.duplicate_of_id),
                col(theirs.cluster_id) == col(Claim.cluster_id),
            )
            .correlate(Claim, copy)
        )
    )
    if keys is not None:
        redundant = redundant.where(
            col(Claim.cluster_id).in_(
                select(col(ClaimCluster.id)).where(col(ClaimCluster.speaker_key).in_(sorted(keys)))
            )
        )
    gone = list(session.scalars(redundant))
    again = {c.cluster_id for c in gone if c.cluster_id is not None}
    for claim in gone:
        session.delete(claim)
    session.flush()
    refresh_clusters(session, again)
    return made - sum(1 for cid in again if session.get(ClaimCluster, cid) is None)
