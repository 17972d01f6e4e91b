"""Article fetching: one discovered article's page, downloaded politely and safely,
archived, and the article moved to ``fetched`` (or ended with a recorded reason)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlmodel import Session, col

from schemas.models import Article, ArticleState, RawPage
from schemas.tables import article as article_table
from schemas.types import utcnow
from worker.core.db import is_postgres
from worker.core.settings import Settings
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


_READ = select(
    article_table.c.state,
    article_table.c.url,
    article_table.c.host,
    article_table.c.redirects,
    article_table.c.final_url,
).where(article_table.c.id == bindparam("article_id"))
"""What :func:`fetch_article` reads of its article: five columns over Core (no ORM
entity loaded, tracked and flushed)."""


@cache
def _write(columns: tuple[str, ...]) -> Any:
    """``UPDATE article SET <columns> WHERE id = :article_id``, built once per set of
    columns (a fetch ends in one of four)."""
    return (
        update(article_table)
        .where(article_table.c.id == bindparam("article_id"))
        .values({name: bindparam(name) for name in columns})
    )


def _end(
    session: Session,
    article_id: int,
    state: ArticleState,
    reason: str | None = None,
    columns: dict[str, object] | None = None,
) -> FetchOutcome:
    """Write the article's end of the fetch in one ``UPDATE``: ``state`` now (its sweep
    mark with it, as :func:`worker.core.states.set_state` sets them), ``reason`` when
    one is given, and ``columns``; the outcome it makes."""
    values: dict[str, object] = dict(columns or {})
    values["state"] = state.value
    values["state_changed_at"] = utcnow()
    if reason is not None:
        values["failure_reason"] = reason
    session.connection().execute(_write(tuple(values)), {**values, "article_id": article_id})
    loaded = _loaded(session, article_id)
    if loaded is not None:
        session.expire(loaded)  # read again as written when next used
    return FetchOutcome(state == ArticleState.fetched, state.value, reason)


def _loaded(session: Session, article_id: int) -> Article | None:
    """The article's ORM object when the session holds it already (a caller that loaded
    it before the fetch: tests, scripts); the pipeline's step loads none."""
    found = session.identity_map.get(session.identity_key(Article, article_id))
    return found if isinstance(found, Article) else None


def _response(status: int, url: str, content_type: str | None) -> dict[str, object]:
    """The response's columns on the article (a fetch that got one)."""
    return dict(redirects=0, http_status=status, final_url=url, content_type=content_type)


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

    The article is read and written with SQLAlchemy Core on the session's connection:
    the five columns the fetch reads, then one ``UPDATE`` of the columns its end sets
    (issue 16: loading the ORM entity, tracking its changes and flushing them were about
    a fifth of a fetch's CPU). Nothing of the article is in the session afterwards; code
    later in the same transaction that loads it (a job's ``on_end``) reads it as
    written."""
    if _loaded(session, article_id) is not None:
        session.flush()  # its pending changes first, as the ORM's own write did
    article = session.connection().execute(_READ, {"article_id": article_id}).first()
    if article is None:
        return FetchOutcome(False, "missing")
    if article.state != ArticleState.discovered:
        return FetchOutcome(False, str(article.state))
    # A fetch whose redirect hop had to wait for its host goes on from that hop.
    resumed = article.final_url if article.redirects and article.final_url else None
    key = turn_key(article_id)

    own_host = host_of(article.url)

    def host(url: str) -> str:
        """The limiter's name of ``url``'s host (the article's own as it was stored)."""
        other = host_of(url)
        return str(article.host) if other == own_host else other

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
        return _end(session, article_id, ArticleState.skipped, "robots.txt disallows this URL")
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
        if exc.transient or isinstance(exc, UnknownHost):
            # the step's transaction rolls back: nothing of it is written; retried, or
            # (a host that does not exist) quarantined at once: replayable
            raise
        return _end(
            session,
            article_id,
            ArticleState.failed,
            exc.reason,
            {"http_status": exc.status, "redirects": 0},
        )

    content_type = resp.headers.get("content-type")
    if resp.body_skipped or not is_html(resp.content_type, resp.body):
        return _end(
            session,
            article_id,
            ArticleState.skipped,
            f"not HTML: content type {resp.content_type or 'unknown'}",
            _response(resp.status, resp.url, content_type),
        )
    sha, key, stored = archive.put(resp.body)
    session.connection().execute(
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
    return _end(
        session,
        article_id,
        ArticleState.fetched,
        None,
        {
            **_response(resp.status, resp.url, content_type),
            "raw_sha256": sha,
            "fetched_at": utcnow(),
            "failure_reason": None,
        },
    )
