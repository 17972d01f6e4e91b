"""Article fetching: one discovered article's page, downloaded politely and safely,
archived, and the article moved to ``fetched`` (or ended with a recorded reason)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import load_only
from sqlmodel import Session, col

from schemas.models import Article, ArticleState, RawPage
from schemas.types import utcnow
from worker.core.db import is_postgres
from worker.core.settings import Settings
from worker.core.states import set_state
from worker.network.http import (
    FetchError,
    HttpClient,
    RedirectHeld,
    UnknownHost,
    classify_status,
)
from worker.network.politeness import HostBusy, HostLimiter
from worker.network.robots import RobotsCopy, keeping, robots_allows
from worker.network.urls import host_of
from worker.pages.archive import Archive

HTML_TYPES = ("text/html", "application/xhtml+xml")
"""Media types taken as HTML without looking at the bytes."""
SNIFFED_TYPES = ("", "application/octet-stream", "text/plain")
"""Media types servers send for anything: the body is downloaded and sniffed."""


def html_like(content_type: str) -> bool:
    """Whether a response of this media type may be HTML (so worth downloading)."""
    return content_type in HTML_TYPES or content_type in SNIFFED_TYPES


@dataclass
class FetchOutcome:
    advanced: bool  # the article moved on to ``fetched``
    state: str
    reason: str | None = None


def _sniff_html(body: bytes) -> bool:
    head = body[:2048].lstrip().lower()
    return head.startswith(
        (
            b"<!doctype html",
            b"<html",
            b"<head",
            b"<body",
            b"<meta",
            b"<!--",
            b"<div",
            b"<p",
            b"<title",
            b"<article",
        )
    )


def is_html(content_type: str, body: bytes) -> bool:
    if content_type in HTML_TYPES:
        return True
    if content_type in SNIFFED_TYPES:
        return _sniff_html(body)
    return False


HTML_ACCEPT = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"}

PageFetch = Callable[[str], tuple[bytes, str | None, str]]
"""``fetch(url) -> (body, content_type_header, final_url)``; raises :class:`FetchError`."""


def page_fetcher(settings: Settings) -> PageFetch:
    """A page fetched outside the pipeline (``claimwire extract URL``) as the pipeline
    fetches it: the same guarded client and headers, the same statuses as errors, and a
    body that is not HTML an error naming its type (not an empty text)."""
    client = HttpClient(settings)

    def fetch(url: str) -> tuple[bytes, str | None, str]:
        resp = client.get(url, HTML_ACCEPT, accept_type=html_like)
        error = classify_status(resp.status, resp.headers)
        if error is not None:
            raise error
        if resp.body_skipped or not is_html(resp.content_type, resp.body):
            raise FetchError(
                f"not HTML: content type {resp.content_type or 'unknown'}", transient=False
            )
        return resp.body, resp.headers.get("content-type"), resp.url

    return fetch


@cache
def _insert_raw_page(postgres: bool) -> Any:
    """``INSERT INTO rawpage ... ON CONFLICT (sha256) DO NOTHING`` with its values as
    parameters: one statement, compiled once (built with ``.values(row)``, as
    ``worker.core.db.insert_ignore`` builds it, it was compiled again for every page)."""
    if postgres:
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    table: Any = RawPage.__table__  # type: ignore[attr-defined]
    return insert(table).on_conflict_do_nothing(index_elements=["sha256"])


def turn_key(article_id: int) -> str:
    """The key of an article's fetch turn on its host's timeline."""
    return f"article:{article_id}"


class RedirectWaits(HostBusy):
    """A redirect hop of an article's fetch whose host is not free: the hop is a request
    of its own, made at the turn its host gave it (``retry_after`` seconds ahead, kept
    under the article's key), from ``url``. Raised by :func:`fetch_article`, which made
    the requests before it; :meth:`keep` records where the fetch goes on, with the hold
    of the article's sweep mark (the step's own transaction rolls back). As Scrapy's
    redirect middleware hands a redirect back to the scheduler as a new request, which
    then waits for its domain's download slot like any other."""

    def __init__(
        self, held: HostBusy, article_id: int, url: str, redirected: int, status: int
    ) -> None:
        super().__init__(held.host, held.retry_after)
        self.article_id = article_id
        self.url = url
        self.redirected = redirected
        self.status = status

    def keep(self, session: Session) -> None:
        """Record the hop the fetch goes on from (only while it is still to do)."""
        session.execute(
            update(Article)
            .where(
                col(Article.id) == self.article_id,
                col(Article.state) == ArticleState.discovered.value,
            )
            .values(final_url=self.url, redirects=self.redirected, http_status=self.status)
        )


_FETCH_COLUMNS = load_only(
    # what fetch_article reads (the id always comes with them); any other column read
    # later in the step's transaction (a job's ``on_end``) is loaded then
    *(
        getattr(Article, name)
        for name in ("state", "url", "host", "redirects", "final_url", "failure_reason")
    )
)


def _fetched_as(article: Article, status: int, url: str, content_type: str | None) -> None:
    """The response's columns on the article (a fetch that got one)."""
    article.redirects = 0
    article.http_status = status
    article.final_url = url
    article.content_type = content_type


def fetch_article(
    session: Session,
    article_id: int,
    http: HttpClient,
    limiter: HostLimiter,
    archive: Archive,
    settings: Settings,
) -> FetchOutcome:
    """Fetch a discovered article. Transient errors raise :class:`FetchError` (the task
    retries), and so does a host that does not exist (:class:`UnknownHost`: quarantined
    at once, so ``claimwire replay`` can send it back); permanent ones end the article
    as ``failed`` or ``skipped`` with a reason.
    Pages are archived before the article is marked fetched.

    The article is loaded with the columns the fetch reads only (not its entry's text,
    JSON lists and times: the columns it sets are written whether loaded or not), and
    its columns are set once the raw page's row is inserted, so that they are written
    in one ``UPDATE`` when the step's transaction flushes (set before the ``INSERT``,
    they were flushed by it, and the state in a second ``UPDATE``)."""
    article = session.get(Article, article_id, options=[_FETCH_COLUMNS])
    if article is None or article.state != ArticleState.discovered:
        return FetchOutcome(False, article.state if article else "missing")
    # A fetch whose redirect hop had to wait for its host goes on from that hop.
    resumed = article.final_url if article.redirects and article.final_url else None
    key = turn_key(article_id)

    own_host = host_of(article.url)

    def host(url: str) -> str:
        """The limiter's name of ``url``'s host (the article's own as it was stored)."""
        other = host_of(url)
        return article.host if other == own_host else other

    def slot(url: str) -> AbstractContextManager[None]:
        # Every request of the fetch, the first and each redirect hop, takes its host's
        # slot: the turn kept under the article's key when it has one there
        # (worker.network.politeness), else the host's next free place.
        return limiter.slot(host(url), key)

    # robots.txt, when it must be downloaded, is a request of its own in the host's slot
    # (it takes the article's turn); the page then waits for the host's next turn, and
    # the robots.txt downloaded is kept when the fetch is sent back for it (keeping).
    fresh: list[RobotsCopy] = []
    if not robots_allows(session, http, article.url, settings, slot=slot, downloaded=fresh):
        set_state(article, ArticleState.skipped, "robots.txt disallows this URL")
        return FetchOutcome(False, article.state, article.failure_reason)
    try:
        try:
            resp = http.get(
                resumed or article.url,
                HTML_ACCEPT,
                accept_type=html_like,
                slot=slot,
                redirected=article.redirects if resumed else 0,
                seen=(article.url,) if resumed else (),
            )
        except RedirectHeld as held:
            if not isinstance(held.cause, HostBusy):
                raise held.cause from held
            waits = RedirectWaits(held.cause, article_id, held.url, held.redirected, held.status)
            raise keeping(waits, fresh) from held
        except HostBusy as busy:
            if fresh:
                raise keeping(busy, fresh) from busy
            raise
        error = classify_status(resp.status, resp.headers)
        if error is not None:
            if resp.status in (429, 503) and error.retry_after:
                limiter.back_off(host(resp.url), error.retry_after)
            raise error
    except FetchError as exc:
        article.http_status = exc.status
        if exc.transient or isinstance(exc, UnknownHost):
            raise  # retried, or (a host that does not exist) quarantined: replayable
        article.redirects = 0
        set_state(article, ArticleState.failed, exc.reason)
        return FetchOutcome(False, article.state, exc.reason)

    content_type = resp.headers.get("content-type")
    if resp.body_skipped or not is_html(resp.content_type, resp.body):
        _fetched_as(article, resp.status, resp.url, content_type)
        set_state(
            article,
            ArticleState.skipped,
            f"not HTML: content type {resp.content_type or 'unknown'}",
        )
        return FetchOutcome(False, article.state, article.failure_reason)
    sha, key, stored = archive.put(resp.body)
    session.execute(
        _insert_raw_page(is_postgres(session)),
        dict(
            sha256=sha,
            size=len(resp.body),
            stored_size=stored,
            content_type=content_type,
            storage_key=key,
            created_at=utcnow(),
        ),
    )
    _fetched_as(article, resp.status, resp.url, content_type)
    article.raw_sha256 = sha
    article.fetched_at = utcnow()
    article.failure_reason = None
    set_state(article, ArticleState.fetched)
    return FetchOutcome(True, article.state)
