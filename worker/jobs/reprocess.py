"""Reprocessing: extraction, dedup and claims again from the archived raw pages.

Nothing is fetched again. A reprocess job selects articles (date range, feed, outlet,
state, extractor version older than the current one) that have a page in the archive
and gives each one a job item. The item restarts the article at ``fetched`` and runs
the live pipeline's steps on it; results replace the old ones: extraction overwrites
the article's fields, the dedup index entries of the article are removed before it is
placed again, and ``replace_claims`` deletes and re-inserts its claims (clusters
refreshed) in one transaction, so a reprocess run twice leaves the same rows. When the
job's last item is done, the claims of every speaker its articles' claims name are
clustered again in an order that depends on the articles only (:func:`job_speaker_keys`),
so the same stored articles give the same clusters whatever order they arrived in.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, or_, select
from sqlalchemy.sql import Select
from sqlmodel import Session, col

from schemas.models import (
    FINAL_ARTICLE_STATES,
    Article,
    ArticleState,
    Claim,
    ClaimCluster,
    Job,
    JobItem,
    JobItemState,
    RawPage,
    Sighting,
)
from worker.claims.firstseen import sync_claim_times
from worker.core.settings import Settings
from worker.core.states import set_state
from worker.jobs import lifecycle
from worker.pages.archive import Archive

REPROCESSABLE_STATES = tuple(s.value for s in FINAL_ARTICLE_STATES)


@dataclass
class ReprocessFilter:
    since: datetime | None = None
    until: datetime | None = None
    feed_id: int | None = None
    outlet: str | None = None
    states: list[str] = field(default_factory=lambda: [ArticleState.processed.value])
    older_extractor: bool = False

    def as_params(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "feed": self.feed_id,
            "outlet": self.outlet,
            "states": list(self.states),
            "older_extractor": self.older_extractor,
        }


def current_versions() -> tuple[str | None, str | None]:
    """(page extractor version, claims extractor version) of the running code."""
    page_version: str | None = None
    try:
        extraction = importlib.import_module("worker.pages.extractor")
        value = getattr(extraction, "EXTRACTOR_VERSION", None)
        page_version = str(value) if value else None
    except ImportError:
        page_version = None
    claims = importlib.import_module("worker.claims")
    value = getattr(claims, "EXTRACTOR_VERSION", None)
    return page_version, (str(value) if value else None)


def selection(f: ReprocessFilter) -> Select[Any]:
    """The ids of the articles a filter selects (only those with an archived page)."""
    query: Select[Any] = (
        select(col(Article.id))
        .join(RawPage, col(RawPage.sha256) == col(Article.raw_sha256))
        .where(col(Article.state).in_(f.states))
    )
    when = func.coalesce(Article.published_at, Article.discovered_at)
    if f.since is not None:
        query = query.where(when >= f.since)
    if f.until is not None:
        query = query.where(when <= f.until)
    if f.feed_id is not None:
        query = query.where(
            col(Article.id).in_(
                select(col(Sighting.article_id)).where(col(Sighting.feed_id) == f.feed_id)
            )
        )
    if f.outlet:
        host = f.outlet.strip().lower()
        query = query.where(or_(col(Article.host) == host, col(Article.host).like(f"%.{host}")))
    if f.older_extractor:
        stale = older_extractor_clauses()
        if stale:
            query = query.where(or_(*stale))
    return query.order_by(col(Article.id))


def older_extractor_clauses() -> list[Any]:
    """What ``--older-extractor`` selects: an article whose text was extracted by
    another (or no recorded) version of the page extractor, or one that carries
    claims (``claims_status == 'extracted'``) extracted by another version of the
    claims extractor. The claims version is not looked at for the other articles:
    a copy of another article (``duplicate``; dedup sets its ``claims_version`` to
    NULL when it demotes a canonical), a text not in English, no text, or claims
    turned off do not depend on the claims extractor, so a new one changes nothing
    for them."""
    page_version, claims_version = current_versions()
    stale: list[Any] = []
    if page_version:
        stale.append(
            or_(
                col(Article.extractor_version).is_(None),
                col(Article.extractor_version) != page_version,
            )
        )
    if claims_version:
        stale.append(
            (col(Article.claims_status) == "extracted")
            & or_(
                col(Article.claims_version).is_(None),
                col(Article.claims_version) != claims_version,
            )
        )
    return stale


def count_selection(session: Session, f: ReprocessFilter) -> int:
    return int(session.scalar(select(func.count()).select_from(selection(f).subquery())) or 0)


def create_reprocess_job(session: Session, f: ReprocessFilter, settings: Settings) -> Job:
    """A reprocess job with one item per selected article (one INSERT ... SELECT)."""
    for state in f.states:
        if state not in REPROCESSABLE_STATES:
            raise ValueError(
                f"state {state!r} cannot be reprocessed; choose among "
                + ", ".join(REPROCESSABLE_STATES)
            )
    job = lifecycle.create_job(session, lifecycle.KIND_REPROCESS, f.as_params())
    assert job.id is not None
    ids = selection(f).limit(settings.backfill_max_urls).subquery()
    session.execute(
        JobItem.__table__.insert().from_select(  # type: ignore[attr-defined]
            ["job_id", "article_id", "state", "updated_at"],
            select(
                literal(job.id),
                ids.c.id,
                literal(JobItemState.pending.value),
                literal(lifecycle.NOT_DISPATCHED, type_=JobItem.__table__.c.updated_at.type),  # type: ignore[attr-defined]
            ),
        )
    )
    lifecycle.set_params(job, count=lifecycle.item_count(session, job.id))
    lifecycle.finish_discovery(job)
    return job


def forget_dedup(session: Session, article: Article) -> int | None:
    """Remove the article's dedup index entries (LSH bands, signature) and its group
    membership, so that dedup places it again from its new text. Returns the article
    that became its group's canonical in its place, if any: that one needs claims."""
    from worker.dedup import deduplicate

    assert article.id is not None
    return deduplicate.remove_article(session, article.id)


def restart_article(
    session: Session,
    article_id: int,
    archive: Archive,
    settings: Settings,
    new_canonicals: list[int] | None = None,
) -> bool:
    """The first step of a reprocess item: an article in a final state with an archived
    page goes back to ``fetched`` and is extracted again, in one transaction (so it is
    never seen half-reset). Returns whether it advanced (to ``extracted``). An article
    that became canonical in its place is appended to ``new_canonicals``."""
    from worker.pages.extract import extract_stored_article

    article = session.get(Article, article_id)
    if article is None or article.state not in REPROCESSABLE_STATES or not article.raw_sha256:
        return False
    if session.get(RawPage, article.raw_sha256) is None:
        return False
    promoted = forget_dedup(session, article)
    if promoted is not None and promoted != article_id and new_canonicals is not None:
        new_canonicals.append(promoted)
    article.attempts = 0
    article.failed_state = None
    article.failure_reason = None
    set_state(article, ArticleState.fetched)
    session.flush()
    advanced = extract_stored_article(session, article_id, archive, settings)
    # the article's claims stay until its claims step replaces them: their time follows
    # the article's new one at once (cluster pages read it from the claim rows)
    sync_claim_times(session, article)
    return advanced


def job_speaker_keys(session: Session, job_id: int) -> list[str]:
    """The speaker keys that the claims of a reprocess job's articles, or of their
    copies, are clustered under: at the job's end, those speakers' claims are clustered
    again from nothing in an order that does not depend on arrival
    (:func:`worker.claims.store.recluster`, one key a unit of work:
    :func:`worker.jobs.work.recluster_ended_job`). The job's items re-extracted each
    article in whatever order the workers took them, each article's claims placed among
    the clusters there were then; reclustered, the same stored articles give the same
    clusters, and two databases holding them agree."""
    articles = select(col(JobItem.article_id)).where(col(JobItem.job_id) == job_id)
    copies = select(col(Article.id)).where(col(Article.duplicate_of_id).in_(articles))
    keys = session.scalars(
        select(col(ClaimCluster.speaker_key))
        .join(Claim, col(Claim.cluster_id) == col(ClaimCluster.id))
        .where(or_(col(Claim.article_id).in_(articles), col(Claim.article_id).in_(copies)))
        .distinct()
    )
    return sorted(set(keys))


__all__ = [
    "REPROCESSABLE_STATES",
    "ReprocessFilter",
    "count_selection",
    "create_reprocess_job",
    "current_versions",
    "forget_dedup",
    "job_speaker_keys",
    "older_extractor_clauses",
    "restart_article",
    "selection",
]
