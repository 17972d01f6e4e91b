"""Quarantine and its way back: ``claimwire replay`` sends quarantined articles to the
step that gave up on them (:mod:`worker.pipeline.attempts` puts them there).
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from schemas.models import PENDING_ARTICLE_STATES, Article, ArticleState, RawPage
from schemas.types import utcnow
from worker.pages.archive import Archive, ArchiveError


def _page_readable(session: Session, article: Article, archive: Archive) -> bool:
    raw = session.get(RawPage, article.raw_sha256) if article.raw_sha256 else None
    if raw is None:
        return False
    try:
        archive.get(raw.storage_key)
    except ArchiveError:
        return False
    except Exception:  # noqa: BLE001 (corrupt bytes: the page must be fetched again)
        return False
    return True


class NotQuarantined(LookupError):
    """An article given to replay does not exist or is not quarantined."""


def _check_ids(session: Session, ids: list[int]) -> None:
    """Every id must name a quarantined article; otherwise nothing is replayed."""
    for i in ids:
        if not 0 < i < 2**63:  # beyond any database integer: no article either
            raise NotQuarantined(f"no article with id {i}; nothing replayed")
    states = dict(
        session.exec(select(Article.id, Article.state).where(col(Article.id).in_(ids))).all()
    )
    for i in ids:
        if i not in states:
            raise NotQuarantined(f"no article with id {i}; nothing replayed")
        if states[i] != ArticleState.quarantined:
            raise NotQuarantined(
                f"article {i} is not quarantined (state {states[i]}); nothing replayed"
            )


def replay(session: Session, ids: list[int] | None = None, archive: Archive | None = None) -> int:
    """Put quarantined articles back into the state whose step failed, with a fresh
    attempt count, and old enough that the next sweep sends them at once.

    Explicit ``ids`` must all be quarantined articles: otherwise :class:`NotQuarantined`
    is raised before anything changes.

    An article quarantined in extraction whose archived page is missing or unreadable
    goes back to ``discovered`` instead, so that the page is fetched again."""
    if archive is None:
        from worker.pipeline import resources

        archive = resources.archive()
    query = select(Article).where(Article.state == ArticleState.quarantined)
    if ids:
        _check_ids(session, ids)
        query = query.where(col(Article.id).in_(ids))
    n = 0
    pending = {s.value for s in PENDING_ARTICLE_STATES}
    for article in session.exec(query).all():
        back = article.failed_state if article.failed_state in pending else "discovered"
        if back == ArticleState.fetched and not _page_readable(session, article, archive):
            back = ArticleState.discovered
        article.state = back
        article.attempts = 0
        article.step_starts = 0
        article.failed_state = None
        article.state_changed_at = utcnow().replace(year=2000)
        n += 1
    return n
