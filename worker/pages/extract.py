"""Archived pages to articles: the extraction step of the pipeline, and reprocessing.

Reads the raw page from the archive (never the network), decodes it, extracts text and
metadata, and moves the article from ``fetched`` to ``extracted``.
"""

from __future__ import annotations

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from schemas.models import Article, ArticleState, RawPage
from schemas.records import ExtractedPage
from schemas.types import utcnow
from worker.core.settings import Settings
from worker.core.states import set_state
from worker.pages.archive import Archive
from worker.pages.charset import decode_html
from worker.pages.extractor import extract_page
from worker.pages.published import sort_time

NO_TEXT_REASON = "no text extracted (page and feed entry give no text)"

# The archived page's key, one column built once: loading the whole ``RawPage`` row as an
# object for it was CPU of every extraction step.
_STORAGE_KEY = select(RawPage.storage_key).where(col(RawPage.sha256) == bindparam("sha"))


def apply_extraction(article: Article, page: ExtractedPage) -> None:
    article.title = page.title or article.entry_title
    article.author = page.author
    # the page's time with its precision, the feed entry's where the page gives only
    # the day or nothing (extract_page was given it: worker.pages.published)
    article.published_at = page.published_at
    article.published_precision = page.published_precision
    article.published_offset = page.published_offset
    article.published_sort_at = sort_time(page.published_at, page.published_precision)
    article.language = page.language
    article.sitename = page.sitename
    article.description = page.description
    article.categories = list(page.categories)
    article.tags = list(page.tags)
    article.image = page.image
    article.page_canonical_url = page.page_canonical_url
    article.text = page.text
    article.text_source = page.text_source
    article.extractor = page.extractor
    article.extractor_version = page.extractor_version
    article.extracted_at = utcnow()


def extract_stored_article(
    session: Session, article_id: int, archive: Archive, settings: Settings
) -> bool:
    """Extract a fetched article from its archived page. Returns whether it advanced."""
    article = session.get(Article, article_id)
    if article is None or article.state != ArticleState.fetched:
        return False
    key = (
        session.execute(_STORAGE_KEY, {"sha": article.raw_sha256}).scalar()
        if article.raw_sha256
        else None
    )
    if key is None:
        # The page never reached the archive: fetch it again.
        set_state(article, ArticleState.discovered, "archived page missing; refetching")
        return False
    body = archive.get(key)
    html, encoding = decode_html(body, article.content_type)
    page = extract_page(
        html,
        article.final_url or article.url,
        fallback_content=article.entry_content,
        fallback_summary=article.entry_summary,
        min_text_chars=settings.min_text_chars,
        feed_published_at=article.entry_published_at,
    )
    article.encoding = encoding
    apply_extraction(article, page)
    if page.failure and not page.text:
        # The page cannot be read (its markup nests too deep even once flattened) and the
        # feed entry gives no text: the same on every retry, so a failure with its reason.
        set_state(article, ArticleState.failed, page.failure)
        return False
    # An empty text is not an error of the step (retrying gives the same result): the
    # article goes on, with the reason visible on it (export, database).
    article.failure_reason = None if page.text else NO_TEXT_REASON
    set_state(article, ArticleState.extracted)
    return True
